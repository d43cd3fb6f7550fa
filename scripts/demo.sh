#!/usr/bin/env bash
# The main job, out of the box: builds vhost-gpu, builds (once, cached) a small Linux guest,
# and boots it in QEMU 10 with its GPU served by vhost-gpu. The guest writes to its console
# and then runs modetest (a mode set with the test pattern, then page flips); what QEMU
# displays is saved as PNG screendumps in demo-out/, and the guest's and the backend's logs
# are kept there too.
#
# Usage: scripts/demo.sh              boot the demo guest (needs scripts/install-deps.sh)
#        scripts/demo.sh --serve ...  only run vhost-gpu with the given options, e.g.
#                                     scripts/demo.sh --serve --socket-path /tmp/vgpu.sock
set -euo pipefail
cd "$(dirname "$0")/.."

cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc 2>/dev/null || echo 2)" --target vhost-gpu

if [ "${1:-}" = --serve ]; then
    shift
    [ $# -gt 0 ] || set -- --socket-path /tmp/vhost-gpu.sock
    echo "Attach QEMU 10 with guest RAM in shared memory, e.g.:"
    echo "  qemu-system-x86_64 -machine q35,accel=tcg -m 1G \\"
    echo "    -object memory-backend-memfd,id=mem,size=1G,share=on -numa node,memdev=mem \\"
    echo "    -chardev socket,id=vgpu,path=/tmp/vhost-gpu.sock -device vhost-user-gpu-pci,chardev=vgpu ..."
    exec build/vhost-gpu "$@"
fi

out=$PWD/demo-out
mkdir -p "$out"
echo "== booting the demo guest with its GPU served by vhost-gpu (QEMU 10, TCG) =="
tests/e2e/boot-guest.sh --backend build/vhost-gpu --test fbcon --hold 3 \
    --screendump "$out/console.png" --out "$out/console"
tests/e2e/boot-guest.sh --backend build/vhost-gpu --test modetest --hold 6 \
    --screendump "$out/modetest.png" --out "$out/modetest"
echo
grep -h '\[drm\] features' "$out/console/serial.log" | head -n 1
grep -h 'freq:' "$out/modetest/serial.log" | tail -n 1 || true
echo "Screens the guest showed through vhost-gpu: $out/console.png, $out/modetest.png"
echo "Logs: $out/*/serial.log (guest), $out/*/backend.log (vhost-gpu)"
