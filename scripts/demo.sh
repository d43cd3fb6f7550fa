#!/usr/bin/env bash
# Builds vhost-gpu and runs it on a unix socket, printing how to attach QEMU.
# Usage: scripts/demo.sh [vhost-gpu options...]   (default: --socket-path /tmp/vhost-gpu.sock)
set -euo pipefail
cd "$(dirname "$0")/.."

cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc 2>/dev/null || echo 2)" --target vhost-gpu

args=("$@")
[ ${#args[@]} -gt 0 ] || args=(--socket-path /tmp/vhost-gpu.sock --log-level debug)
cat <<MSG
vhost-gpu is starting: ${args[*]}
Attach QEMU 10 (installed by scripts/install-deps.sh) from another terminal, e.g.:
  qemu-system-x86_64 -machine q35,accel=tcg -m 1G \\
    -object memory-backend-memfd,id=mem,size=1G,share=on -numa node,memdev=mem \\
    -chardev socket,id=vgpu,path=/tmp/vhost-gpu.sock -device vhost-user-gpu-pci,chardev=vgpu \\
    -display none -kernel YOUR_KERNEL ...
Stop with Ctrl-C.
MSG
exec build/vhost-gpu "${args[@]}"
