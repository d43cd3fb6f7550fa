#!/usr/bin/env bash
# Installs everything vhost-gpu needs to build, run and test on Debian 12, as root:
# the build tools and -dev libraries from Debian 12, and QEMU 10 from bookworm-backports
# (Debian 12's QEMU 7.2 refuses vhost-user devices without KVM; see tests/e2e/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    exec sudo "$0" "$@"
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# Build: compilers and the libraries of the design card. Tests: cmocka (a well-kept unit
# test framework that CTest and CI parsers understand, rather than a home-made one).
apt-get install -y -q --no-install-recommends \
    build-essential clang cmake pkg-config git ca-certificates python3 \
    libuv1-dev libvirglrenderer-dev libepoxy-dev libgbm-dev libdrm-dev libsdl2-dev \
    libcmocka-dev libclang-rt-14-dev
# --virgl without a GPU: Mesa's EGL (surfaceless platform) and its software rasteriser,
# llvmpipe. Named here because the -dev packages above need not pull them in (Debian 12
# main ships llvmpipe in libgl1-mesa-dri, which nothing above depends on).
apt-get install -y -q --no-install-recommends libegl-mesa0 libgl1-mesa-dri
bash tests/e2e/install-qemu10.sh
