#!/usr/bin/env bash
# Build (and cache) the 3D e2e guest (issue #4): the 6.1 kernel and the
# virtio-gpu module set of build-guest.sh, plus a Debian 12 (bookworm) rootfs
# made with
#   debootstrap --variant=minbase --include=libgl1-mesa-dri,libegl-mesa0,
#       libgles2,kmscube,glmark2-es2-drm,libdrm-tests,busybox,kmod bookworm DIR MIRROR
# stripped (docs, man pages, locales, apt lists and caches, perl, unused Mesa
# driver names) and packed whole as the initramfs (cpio newc by mkcpio.py,
# zstd). Its /init loads virtio-gpu, prints `dmesg | grep -i drm`, E2E-READY
# and runs what `vgpu.test=` asks (see below) with markers on the serial port.
#
# Usage: build-guest-3d.sh [--force]
# Prints the guest directory (vmlinuz, initrd.img, versions.txt, packages.txt)
# as the last line of stdout; progress goes to stderr.
# Exit: 0 ok, 1 error, 77 (skip) when the image is not cached and cannot be
# built: not root (debootstrap needs root) or debootstrap cannot be installed.
#
# MIRROR is read at run time from the URIs: line of the stanza with suite
# bookworm in /etc/apt/sources.list.d/debian.sources (or a "deb URI bookworm"
# line of /etc/apt/sources.list); no host name is written in this repository.
# As root, debootstrap and zstd are installed with apt-get when missing.
#
# Cache: tests/e2e/cache/guest3d-<key>/ (git-ignored; debootstrap's .debs in
# cache/debs3d/). The key hashes the bookworm versions (apt-cache madison) of
# the included packages and of the biggest dependencies (libllvm15, libc6,
# libdrm2, libgbm1), the build-guest.sh guest (kernel and modules), this
# script, and mkcpio.py. A point release that changes only some other
# dependency does not invalidate the cache: use --force.
#
# Guest kernel command line parameters understood by /init:
#   vgpu.test=idle      (default) sleep vgpu.hold s (default 5), power off
#   vgpu.test=kmscube   run kmscube (stdin a FIFO; -c vgpu.frames, default 10^6);
#                       once debugfs shows kmscube's framebuffer on a plane
#                       (E2E-KMSCUBE-RUNNING): sleep 1 s, print E2E-SHOT
#                       kmscube-1, sleep vgpu.gap s (default 1), print E2E-SHOT
#                       kmscube-2, hold vgpu.hold s (default 1) for the host's
#                       screendumps, stop kmscube vgpu.seconds (default 10) after
#                       its first frame; then its output (every 2 s "Rendered N
#                       frames in T sec (F fps)", counted from its first frame),
#                       E2E-KMSCUBE-EXIT rc, E2E-KMSCUBE-TIME ms=T
#   vgpu.test=glmark2   glmark2-es2-drm --validate (E2E-GLMARK2-VALIDATE-EXIT rc;
#                       not with vgpu.novalidate=1), then glmark2-es2-drm with
#                       vgpu.bench (comma-separated -b specs, default
#                       build:duration=2,texture:duration=2,shading:shading=phong:duration=2)
#                       printing its score (E2E-GLMARK2-BENCH-EXIT rc); both with
#                       vgpu.glargs (comma-separated words, default
#                       --visual-config,a=0: virtio-gpu scans out no ARGB8888)
#   vgpu.test=all       kmscube, then glmark2 (what e2e_3d.sh runs: one boot)
#   vgpu.test=hold      never power off;  vgpu.test=shell  shell on ttyS0
#   vgpu.test=script    run /e2e-script.sh (append a cpio with it to initrd.img:
#                       the kernel unpacks concatenated archives; for experiments)
# Serial markers: E2E-INIT, E2E-MODULES-LOADED, E2E-READY, E2E-TEST <name>,
# E2E-DRI <ls /dev/dri>, E2E-KMSCUBE-START, E2E-KMSCUBE-RUNNING, E2E-SHOT <what>,
# E2E-KMSCUBE-EXIT, E2E-KMSCUBE-TIME, E2E-GLMARK2-VALIDATE-START/-EXIT,
# E2E-GLMARK2-BENCH-START/-EXIT, E2E-DONE, E2E-POWEROFF, E2E-ERROR <what>.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${VGPU_E2E_CACHE:-$HERE/cache}
FORCE=0
[ "${1:-}" = "--force" ] && FORCE=1

log() { printf 'build-guest-3d: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
skip() { log "SKIP: $*"; exit 77; }

INCLUDE=libgl1-mesa-dri,libegl-mesa0,libgles2,kmscube,glmark2-es2-drm,libdrm-tests,busybox,kmod
# Versions in the key: the included packages and the biggest dependencies.
KEYPKGS="${INCLUDE//,/ } libllvm15 libc6 libdrm2 libgbm1"
SUITE=bookworm

for tool in apt-cache python3 sha256sum; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found"
done

# ---- kernel and modules: the 2D guest's ---------------------------------------
BASE=$("$HERE/build-guest.sh" | tail -n1) || die "build-guest.sh failed"
if [ ! -s "$BASE/vmlinuz" ] || [ ! -s "$BASE/modules/load-order" ]; then
    die "$BASE has no vmlinuz or modules/load-order (build-guest.sh too old?)"
fi

# ---- the versions debootstrap will install (suite bookworm only) ---------------
# One apt-cache call; madison lists every suite (backports, security, ...):
# keep the lines of "bookworm/main", which is what debootstrap reads.
# shellcheck disable=SC2086 # KEYPKGS: words on purpose
madison() { apt-cache madison $KEYPKGS 2>/dev/null | awk -F' [|] ' -v s=" $SUITE/main " '
    index($3, s) { gsub(/ /, "", $1); gsub(/ /, "", $2); print $1 "=" $2 }' | sort -u; }
VERSIONS=$(madison)
if ! echo "$VERSIONS" | grep -q '^kmscube='; then
    if [ "$(id -u)" = 0 ]; then
        log "apt lists know no kmscube in $SUITE: running apt-get update"
        apt-get update -q >&2
        VERSIONS=$(madison)
    fi
    echo "$VERSIONS" | grep -q '^kmscube=' ||
        die "apt-cache madison knows no kmscube in $SUITE/main: run apt-get update as root"
fi
KEY=$( { printf '%s\n' "$VERSIONS" "base=$(basename "$BASE")"
         cat "${BASH_SOURCE[0]}" "$HERE/mkcpio.py" | sha256sum | cut -d' ' -f1; } |
       sha256sum | cut -c1-12)
OUT=$CACHE/guest3d-$KEY

cached() { [ "$FORCE" = 0 ] && [ -s "$OUT/vmlinuz" ] && [ -s "$OUT/initrd.img" ]; }
# A cached image needs no lock (nor write access to the cache).
if cached; then
    log "cached: $OUT"
    echo "$OUT"
    exit 0
fi
# One builder at a time (parallel test runs share the cache); the first may
# have built it while we waited.
mkdir -p "$CACHE"
exec 8>"$CACHE/.lock3d"
command -v flock >/dev/null 2>&1 && flock 8
if cached; then
    log "cached (built meanwhile): $OUT"
    echo "$OUT"
    exit 0
fi

# ---- what building needs: root, debootstrap, zstd -------------------------------
[ "$(id -u)" = 0 ] ||
    skip "the 3D guest ($OUT) is not cached and debootstrap needs root: run as root, e.g. sudo $0"
need=()
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
command -v zstd >/dev/null 2>&1 || need+=(zstd)
if [ "${#need[@]}" -gt 0 ]; then
    log "installing ${need[*]} with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >&2 ||
        skip "cannot install ${need[*]} (apt-get install failed)"
fi
command -v debootstrap >/dev/null 2>&1 || skip "debootstrap not available"

# The mirror: the URIs: line of the deb822 stanza listing suite bookworm, else a
# one-line "deb URI bookworm ..." entry.
MIRROR=
if [ -r /etc/apt/sources.list.d/debian.sources ]; then
    MIRROR=$(awk -v suite="$SUITE" '
        function flush() {
            if (mirror == "" && uri != "" && (" " suites " ") ~ (" " suite " ")) mirror = uri
            uri = ""; suites = ""
        }
        /^[ \t]*$/ { flush(); next }
        /^[ \t]*#/ { next }
        tolower($1) == "uris:"   { uri = $2 }
        tolower($1) == "suites:" { $1 = ""; suites = $0 }
        END { flush(); print mirror }' /etc/apt/sources.list.d/debian.sources)
fi
if [ -z "$MIRROR" ] && [ -r /etc/apt/sources.list ]; then
    MIRROR=$(awk -v suite="$SUITE" '$1 == "deb" && $0 !~ /\[/ && $3 == suite { print $2; exit }' \
             /etc/apt/sources.list)
fi
[ -n "$MIRROR" ] || die "no $SUITE mirror in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list"

T0=$(date +%s%N)
ms() { echo $(( ($(date +%s%N) - T0) / 1000000 )); }
log "building 3D guest $KEY (mirror $MIRROR):"
printf '%s\n' "$VERSIONS" | sed 's/^/    /' >&2

WORK=$(mktemp -d "$CACHE/work3d.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
R=$WORK/root
DEBS=$CACHE/debs3d
mkdir -p "$DEBS"

# ---- debootstrap ----------------------------------------------------------------
if ! debootstrap --variant=minbase --include="$INCLUDE" --cache-dir="$DEBS" \
        "$SUITE" "$R" "$MIRROR" >"$WORK/debootstrap.log" 2>&1; then
    tail -n 30 "$WORK/debootstrap.log" >&2
    [ -f "$R/debootstrap/debootstrap.log" ] && tail -n 30 "$R/debootstrap/debootstrap.log" >&2
    die "debootstrap failed"
fi
log "debootstrap done at $(ms) ms: $(du -sm "$R" | cut -f1) MB"
# What went in, for versions.txt/packages.txt.
# shellcheck disable=SC2016 # dpkg-query's ${...} fields
dpkg-query --admindir="$R/var/lib/dpkg" -W -f '${Package}=${Version}\n' >"$WORK/packages.txt"

# ---- strip what a test run never reads ------------------------------------------
rm -rf "${R:?}"/var/cache/apt/* "$R"/var/lib/apt/lists/* "$R"/var/cache/debconf/*-old \
       "$R"/var/log/* "$R"/debootstrap \
       "$R"/usr/share/{doc,man,info,locale,lintian,zoneinfo,i18n,bash-completion,common-licenses} \
       "$R"/usr/lib/locale/* "$R"/usr/lib/x86_64-linux-gnu/gconv \
       "$R"/usr/bin/perl* "$R"/usr/lib/x86_64-linux-gnu/perl-base "$R"/usr/share/perl5 \
       "$R"/var/lib/dpkg/info/*.md5sums
# Mesa's megadriver is one file with a dozen names: keep the ones a virtio-gpu
# guest can load (virgl, software rendering on dumb buffers, swrast).
for f in "$R"/usr/lib/x86_64-linux-gnu/dri/*_dri.so; do
    case $(basename "$f") in virtio_gpu_dri.so|kms_swrast_dri.so|swrast_dri.so) ;; *) rm -f "$f" ;; esac
done
rm -rf "${R:?}"/dev/*   # devtmpfs is mounted there; mkcpio.py adds /dev/console

# ---- the kernel modules ----------------------------------------------------------
mkdir -p "$R/lib/modules/e2e"
cp "$BASE"/modules/*.ko "$BASE/modules/load-order" "$R/lib/modules/e2e/"

# ---- /init ----------------------------------------------------------------------------
cat >"$R/init" <<'INIT'
#!/bin/sh
# vhost-gpu e2e 3D guest init (generated by tests/e2e/build-guest-3d.sh)
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
up() { cut -d' ' -f1 /proc/uptime; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
echo "E2E-INIT uptime=$(up)"

TEST=idle HOLD= FRAMES=1000000 SECS=10 GAP=1 VALIDATE=1
# glmark2 picks an ARGB8888 EGL config by default, which virtio-gpu's plane
# refuses (every mode set fails with EINVAL): ask for no alpha.
GLARGS="--visual-config a=0"
BENCH=build:duration=2,texture:duration=2,shading:shading=phong:duration=2
for arg in $(cat /proc/cmdline); do
    case $arg in
        vgpu.test=*) TEST=${arg#*=} ;;
        vgpu.hold=*) HOLD=${arg#*=} ;;
        vgpu.frames=*) FRAMES=${arg#*=} ;;
        vgpu.seconds=*) SECS=${arg#*=} ;;
        vgpu.gap=*) GAP=${arg#*=} ;;
        vgpu.bench=*) BENCH=${arg#*=} ;;
        vgpu.glargs=*) GLARGS=$(echo "${arg#*=}" | tr ',' ' ') ;;
        vgpu.novalidate=*) VALIDATE=0 ;;
    esac
done

# insmod does not read /proc/cmdline as modprobe does: pass each module its
# "module.param=value" words (e.g. drm.edid_firmware=edid/800x600.bin).
while read -r m; do
    name=$(basename "$m" .ko | tr - _)
    set --
    for arg in $(cat /proc/cmdline); do
        case $arg in "$name".*=*) set -- "$@" "${arg#"$name".}" ;; esac
    done
    insmod "/lib/modules/e2e/$m" "$@" || echo "E2E-ERROR insmod $m $*"
done </lib/modules/e2e/load-order
echo "E2E-MODULES-LOADED uptime=$(up)"

i=0
while [ ! -e /dev/dri/card0 ]; do
    i=$((i + 1))
    if [ $i -gt 100 ]; then echo "E2E-ERROR no /dev/dri/card0"; break; fi
    sleep 0.1
done
dmesg | grep -i drm
echo "E2E-DRI $(ls /dev/dri | tr '\n' ' ')"
# The connector's modes (glmark2 2023.01 takes the largest, kmscube the first).
modetest -M virtio_gpu -c 2>/dev/null | awk '$3 == "connected" { c = 1 } c && /^  #[0-9]/ { n++; if (n <= 3) m = m " " $2 }
    END { printf "E2E-MODES %d:%s%s\n", n, m, (n > 3 ? " ..." : "") }'

mount -t debugfs debugfs /sys/kernel/debug
echo "E2E-READY uptime=$(up)"

kmscube_test() {
    echo "E2E-KMSCUBE-START seconds=$SECS uptime=$(up)"
    # kmscube stops at the first byte readable on stdin ("user interrupted!"),
    # and a background job's stdin would be /dev/null: give it a FIFO, write
    # to it after vgpu.seconds. Every 2 s kmscube prints "Rendered N frames in
    # T sec (F fps)", counted from its first frame.
    rm -f /tmp/kmscube.in
    mkfifo /tmp/kmscube.in
    exec 3<>/tmp/kmscube.in
    t0=$(now_ms)
    kmscube -c "$FRAMES" <&3 >/tmp/kmscube.log 2>&1 &
    pid=$!
    # Frames are on screen once the committed atomic state (debugfs) shows a
    # framebuffer created by kmscube on a plane.
    i=0
    until grep -q 'allocated by = kmscube' /sys/kernel/debug/dri/0/state 2>/dev/null; do
        i=$((i + 1))
        if ! kill -0 $pid 2>/dev/null; then echo "E2E-ERROR kmscube exited before showing a frame"; break; fi
        if [ $i -gt 1200 ]; then echo "E2E-ERROR kmscube showed no frame in 120 s"; break; fi
        sleep 0.1
    done
    if kill -0 $pid 2>/dev/null; then
        t1=$(now_ms)
        echo "E2E-KMSCUBE-RUNNING after=$((t1 - t0))ms"
        sleep 1
        echo "E2E-SHOT kmscube-1"
        sleep "$GAP"
        echo "E2E-SHOT kmscube-2"
        sleep "${HOLD:-1}"
        left=$(( SECS * 1000 - ($(now_ms) - t1) ))
        [ $left -gt 0 ] && sleep $((left / 1000)).$(printf '%03d' $((left % 1000)))
        kill -0 $pid 2>/dev/null || echo "E2E-ERROR kmscube had finished before the end of the run"
    fi
    echo q >&3
    wait $pid
    rc=$?
    exec 3>&-
    cat /tmp/kmscube.log
    echo "E2E-KMSCUBE-EXIT $rc"
    echo "E2E-KMSCUBE-TIME ms=$(( $(now_ms) - t0 ))"
}

glmark2_test() {
    if [ "$VALIDATE" = 1 ]; then
        echo "E2E-GLMARK2-VALIDATE-START uptime=$(up)"
        # shellcheck disable=SC2086 # GLARGS: words on purpose
        glmark2-es2-drm $GLARGS --validate 2>&1
        echo "E2E-GLMARK2-VALIDATE-EXIT $?"
    fi
    set --
    for b in $(echo "$BENCH" | tr ',' ' '); do set -- "$@" -b "$b"; done
    echo "E2E-GLMARK2-BENCH-START $* uptime=$(up)"
    # shellcheck disable=SC2086
    glmark2-es2-drm $GLARGS "$@" 2>&1
    echo "E2E-GLMARK2-BENCH-EXIT $?"
}

echo "E2E-TEST $TEST"
case $TEST in
    idle) sleep "${HOLD:-5}" ;;
    hold) while :; do sleep 3600; done ;;
    kmscube) kmscube_test ;;
    glmark2) glmark2_test ;;
    all) kmscube_test; glmark2_test ;;
    shell) setsid sh -c 'exec sh </dev/ttyS0 >/dev/ttyS0 2>&1' ;;
    script) sh /e2e-script.sh ;;
    *) echo "E2E-ERROR unknown vgpu.test=$TEST" ;;
esac
echo "E2E-DONE uptime=$(up)"
echo "E2E-POWEROFF"
sync
busybox poweroff -f
while :; do sleep 3600; done
INIT
chmod 755 "$R/init"

# ---- pack: cpio newc (mkcpio.py keeps owners and hard links), zstd ---------------
SIZE_MB=$(du -sm "$R" | cut -f1)
python3 "$HERE/mkcpio.py" "$R" --owner-from-fs | zstd -q -T0 -"${VGPU_E2E_ZSTD_LEVEL:-9}" >"$WORK/initrd.img"

# ---- publish ---------------------------------------------------------------------
mkdir -p "$WORK/out"
cp "$BASE/vmlinuz" "$WORK/out/vmlinuz"
mv "$WORK/initrd.img" "$WORK/out/initrd.img"
cp "$WORK/packages.txt" "$WORK/out/packages.txt"
{ printf '%s\n' "$VERSIONS"; echo "mirror=$MIRROR"; echo "base=$BASE"
  echo "rootfs-mb=$SIZE_MB"; } >"$WORK/out/versions.txt"
rm -rf "$OUT"
mv "$WORK/out" "$OUT"
for d in "$CACHE"/guest3d-*; do
    [ "$d" = "$OUT" ] || rm -rf "$d"
done
log "built $OUT in $(ms) ms: rootfs $SIZE_MB MB, initrd $(du -m "$OUT/initrd.img" | cut -f1) MB," \
    "vmlinuz $(du -k "$OUT/vmlinuz" | cut -f1) KiB"
echo "$OUT"
