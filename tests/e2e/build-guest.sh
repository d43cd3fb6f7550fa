#!/usr/bin/env bash
# Build (and cache) a minimal Linux guest for the e2e tests: Debian 12's 6.1
# kernel plus a small initramfs (busybox-static, the virtio-pci/virtio-gpu/DRM
# modules, libdrm's modetest) whose /init loads the GPU driver, writes a marker
# on the framebuffer console, prints E2E-READY on the serial port and then runs
# the test chosen with `vgpu.test=` on the kernel command line.
#
# Usage: build-guest.sh [--force]
# Prints the guest directory (containing vmlinuz, initrd.gz, modules.txt,
# versions.txt, and modules/: the .ko files plus load-order, the names in load
# order) as the last line of stdout; progress goes to stderr.
#
# Cache: tests/e2e/cache/guest-<key>/ (git-ignored). The key hashes the exact
# Debian package versions used (kernel, busybox-static, libdrm-tests, libdrm2,
# the host's libc6) and this script's own content, so a new kernel upload or an
# edit of /init yields a new guest; downloaded .debs are kept in cache/debs/.
# Needs: apt-get (download only, no root needed for that), dpkg-deb, python3,
# gzip. Nothing is installed on the host.
#
# Guest kernel command line parameters understood by /init:
#   vgpu.test=idle            (default) sleep vgpu.hold seconds, power off
#   vgpu.test=modetest        list connectors, set vgpu.mode (default 1024x768)
#                             with modetest's test pattern, hold, power off
#   vgpu.test=modetest-vsync  as modetest with page flipping (-v)
#   vgpu.test=fbcon           print E2E-SHOT 1 s after the fbcon text, hold
#                             vgpu.hold s (default 3), power off (e2e_2d.sh)
#   vgpu.test=modetest-2d     mode set with the test pattern, E2E-SHOT 1 s after
#                             it, hold vgpu.hold s (default 2), then modetest -v
#                             page flips for vgpu.flips s (default 5) (e2e_2d.sh)
#   vgpu.test=hold            never power off (the host quits QEMU)
#   vgpu.test=shell           interactive busybox shell on the serial console
#   vgpu.hold=N               seconds to hold (default 5; modetest modes 10)
#   vgpu.mode=WxH             mode for the modetest modes
# Serial markers: E2E-INIT, E2E-MODULES-LOADED, E2E-READY, E2E-TEST <name>,
# E2E-DONE, E2E-POWEROFF, E2E-ERROR <what>; E2E-SHOT <what> when the screen is
# final for a screendump (fbcon, modetest-2d). The fbcon shows VHOST-GPU-E2E-MARKER.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${VGPU_E2E_CACHE:-$HERE/cache}
FORCE=0
[ "${1:-}" = "--force" ] && FORCE=1

log() { printf 'build-guest: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

for tool in apt-get apt-cache dpkg-deb python3 gzip; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found"
done

# One apt-cache call (each costs ~0.5 s here: apt keeps no pkgcache.bin):
# the candidate stanzas of the three packages we start from.
show_candidates() {
    apt-cache show --no-all-versions linux-image-amd64 busybox-static libdrm-tests 2>/dev/null || true
}
STANZAS=$(show_candidates)
if ! echo "$STANZAS" | grep -q '^Package: busybox-static'; then
    if [ "$(id -u)" = 0 ]; then
        log "apt lists look empty: running apt-get update"
        apt-get update -q >&2
        STANZAS=$(show_candidates)
    else
        die "apt-cache knows no busybox-static: run apt-get update as root"
    fi
fi
field() { # field PACKAGE FIELD -> value from that package's stanza
    echo "$STANZAS" | awk -v p="$1" -v f="$2:" '
        /^Package: / { cur = $2 } cur == p && $1 == f { sub(/^[^ ]+ /, ""); print; exit }'
}

# ---- resolve the exact package versions --------------------------------------
# linux-image-amd64 depends on exactly one versioned image package, e.g.
# "linux-image-6.1.0-56-amd64 (= 6.1.192-2)".
KDEP=$(field linux-image-amd64 Depends | tr ',' '\n' | grep -E 'linux-image-6\.1\.[^ ]*-amd64 \(= ' | head -n1)
KPKG=$(echo "$KDEP" | grep -o 'linux-image-6\.1\.[^ ]*-amd64')
KVER=$(echo "$KDEP" | sed -n 's/.*(= \(.*\)).*/\1/p')
[ -n "$KPKG" ] || die "linux-image-amd64's candidate does not depend on a 6.1 kernel"
BBVER=$(field busybox-static Version)
DTVER=$(field libdrm-tests Version)
# modetest wants exactly its own libdrm2 (Depends: libdrm2 (= ...)); the host may
# have a newer one (QEMU 10 from backports pulls one in), so take the matching one.
DRMVER=$(field libdrm-tests Depends | tr ',' '\n' | sed -n 's/^ *libdrm2 (= \(.*\))$/\1/p' | head -n1)
[ -n "$DRMVER" ] || DRMVER=$DTVER
LIBCVER=$(dpkg-query -W -f '${Version}' libc6 2>/dev/null || echo unknown)
for v in KVER BBVER DTVER; do [ -n "${!v}" ] || die "could not resolve a version ($v)"; done

VERSIONS="$KPKG=$KVER
busybox-static=$BBVER
libdrm-tests=$DTVER
libdrm2=$DRMVER
libc6(host)=$LIBCVER"
KEY=$( { printf '%s\n' "$VERSIONS"; cat "${BASH_SOURCE[0]}" "$HERE/mkcpio.py" | sha256sum | cut -d' ' -f1; } |
       sha256sum | cut -c1-12)
OUT=$CACHE/guest-$KEY

# One builder at a time (parallel test runs share the cache).
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
command -v flock >/dev/null 2>&1 && flock 9

if [ "$FORCE" = 0 ] && [ -s "$OUT/vmlinuz" ] && [ -s "$OUT/initrd.gz" ]; then
    log "cached: $OUT"
    echo "$OUT"
    exit 0
fi

T0=$(date +%s%N)
log "building guest $KEY:"
printf '%s\n' "$VERSIONS" | sed 's/^/    /' >&2

# ---- download ------------------------------------------------------------------
DEBS=$CACHE/debs
mkdir -p "$DEBS"
find_deb() { # find_deb PKG VERSION -> cached .deb of exactly that version, if any
    local p
    for p in "$DEBS/${1}_"*"_amd64.deb"; do
        [ -f "$p" ] && [ "$(dpkg-deb -f "$p" Version)" = "$2" ] && { echo "$p"; return 0; }
    done
    return 0
}
fetch() { # fetch PKG VERSION -> path of the .deb (downloaded once into cache/debs)
    local f
    f=$(find_deb "$1" "$2")
    if [ -z "$f" ]; then
        (cd "$DEBS" && apt-get download -q -o APT::Sandbox::User=root "$1=$2" >&2) ||
            die "apt-get download $1=$2 failed"
        f=$(find_deb "$1" "$2")
    fi
    [ -n "$f" ] || die "no .deb for $1=$2"
    echo "$f"
}
KDEB=$(fetch "$KPKG" "$KVER")
BBDEB=$(fetch busybox-static "$BBVER")
DTDEB=$(fetch libdrm-tests "$DTVER")
DRMDEB=$(fetch libdrm2 "$DRMVER")

WORK=$(mktemp -d "$CACHE/work.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# ---- unpack ----------------------------------------------------------------------
log "unpacking $(basename "$KDEB")"
dpkg -x "$KDEB" "$WORK/kernel"
dpkg -x "$BBDEB" "$WORK/busybox"
dpkg -x "$DTDEB" "$WORK/drmtests"
dpkg -x "$DRMDEB" "$WORK/libdrm"
UNAME=${KPKG#linux-image-}
MODDIR=$WORK/kernel/lib/modules/$UNAME
[ -d "$MODDIR" ] || die "no $MODDIR in $KPKG"

# ---- modules: resolve dependencies from each .ko's .modinfo --------------------
# (the .deb carries no modules.dep: depmod runs at install time, and kmod is not
# necessarily on the host; the "depends=" field is what depmod reads anyway).
python3 - "$MODDIR" virtio_pci virtio_gpu >"$WORK/modules.txt" <<'PY'
import os, struct, sys

def modinfo(path):
    d = open(path, "rb").read()
    if d[:4] != b"\x7fELF" or d[4] != 2:
        raise SystemExit(f"{path}: not an ELF64 module")
    shoff, = struct.unpack_from("<Q", d, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", d, 0x3A)
    secs = [struct.unpack_from("<IIQQQQIIQQ", d, shoff + i * shentsize) for i in range(shnum)]
    stroff = secs[shstrndx][4]
    for s in secs:
        name = d[stroff + s[0]:d.index(b"\0", stroff + s[0])]
        if name == b".modinfo":
            info = {}
            for kv in d[s[4]:s[4] + s[5]].split(b"\0"):
                if b"=" in kv:
                    k, v = kv.decode(errors="replace").split("=", 1)
                    info.setdefault(k, []).append(v)
            return info
    return {}

moddir = sys.argv[1]
index = {}
for dp, _, files in os.walk(moddir):
    for f in files:
        for ext in (".ko", ".ko.xz", ".ko.zst", ".ko.gz"):
            if f.endswith(ext):
                index[f[: -len(ext)].replace("-", "_")] = os.path.relpath(os.path.join(dp, f), moddir)
order, seen = [], set()

def visit(name):
    if name in seen:
        return
    seen.add(name)
    if name not in index:
        raise SystemExit(f"module {name} not found (built in?)")
    path = os.path.join(moddir, index[name])
    if not path.endswith(".ko"):
        raise SystemExit(f"{path}: compressed modules: decompress before resolving")
    for v in modinfo(path).get("depends", []):
        for dep in filter(None, v.split(",")):
            visit(dep)
    order.append(index[name])  # post-order: dependencies first

for m in sys.argv[2:]:
    visit(m)
print("\n".join(order))
PY
log "modules (load order): $(tr '\n' ' ' <"$WORK/modules.txt")"

# ---- the initramfs tree ---------------------------------------------------------
R=$WORK/root
mkdir -p "$R"/{bin,sbin,etc,proc,sys,dev,tmp,run,root} "$R/usr/bin" "$R/lib64" \
         "$R/lib/x86_64-linux-gnu" "$R/lib/modules"
cp "$WORK/busybox/bin/busybox" "$R/bin/busybox"
for applet in $("$R/bin/busybox" --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$R/bin/$applet"
done

while read -r m; do
    dst=$R/lib/modules/$(basename "$m" | sed 's/\.\(xz\|zst\|gz\)$//')
    case $m in
        *.ko)     cp "$MODDIR/$m" "$dst" ;;
        *.ko.xz)  xz -dc "$MODDIR/$m" >"$dst" ;;
        *.ko.zst) zstd -qdc "$MODDIR/$m" >"$dst" ;;
        *.ko.gz)  gzip -dc "$MODDIR/$m" >"$dst" ;;
    esac
    basename "$dst" >>"$R/etc/e2e-modules"
done <"$WORK/modules.txt"

# modetest and its shared libraries (resolved with ldd against the unpacked
# libdrm2 first, then the host), plus the dynamic loader.
cp "$WORK/drmtests/usr/bin/modetest" "$R/usr/bin/modetest"
LIBPATH=$WORK/libdrm/usr/lib/x86_64-linux-gnu:$WORK/libdrm/lib/x86_64-linux-gnu
ldd_out=$(LD_LIBRARY_PATH=$LIBPATH ldd "$R/usr/bin/modetest")
if echo "$ldd_out" | grep -q 'not found'; then
    die "modetest needs libraries that are missing: $(echo "$ldd_out" | grep 'not found')"
fi
echo "$ldd_out" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' |
while read -r lib; do
    cp -L "$lib" "$R/lib/x86_64-linux-gnu/$(basename "$lib")"
done
cp -L /lib64/ld-linux-x86-64.so.2 "$R/lib64/ld-linux-x86-64.so.2"

cat >"$R/init" <<'INIT'
#!/bin/sh
# vhost-gpu e2e guest init (generated by tests/e2e/build-guest.sh)
export PATH=/bin:/usr/bin HOME=/root LD_LIBRARY_PATH=/lib/x86_64-linux-gnu
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
up() { cut -d' ' -f1 /proc/uptime; }
echo "E2E-INIT uptime=$(up)"

TEST=idle HOLD= MODE=1024x768 FLIPS=5
for arg in $(cat /proc/cmdline); do
    case $arg in
        vgpu.test=*) TEST=${arg#*=} ;;
        vgpu.hold=*) HOLD=${arg#*=} ;;
        vgpu.mode=*) MODE=${arg#*=} ;;
        vgpu.flips=*) FLIPS=${arg#*=} ;;
    esac
done

while read -r m; do
    insmod "/lib/modules/$m" || echo "E2E-ERROR insmod $m"
done </etc/e2e-modules
echo "E2E-MODULES-LOADED uptime=$(up)"

i=0
while [ ! -e /dev/dri/card0 ] || [ ! -e /dev/fb0 ]; do
    i=$((i + 1))
    if [ $i -gt 100 ]; then echo "E2E-ERROR no /dev/dri/card0 or /dev/fb0"; break; fi
    sleep 0.1
done
dmesg | grep -i drm

# Text on the framebuffer console (VT 1 is the foreground VT): clear, hide the
# cursor (no blink traffic), write the marker.
printf '\033[2J\033[H\033[?25l' >/dev/tty1
printf 'VHOST-GPU-E2E-MARKER\n\nvhost-gpu e2e guest: test=%s\n' "$TEST" >/dev/tty1
echo "E2E-READY uptime=$(up)"

connector() { modetest -M virtio_gpu -c | awk '$3 == "connected" { print $1; exit }'; }
echo "E2E-TEST $TEST"
case $TEST in
    idle)
        sleep "${HOLD:-5}" ;;
    hold)
        while :; do sleep 3600; done ;;
    fbcon)
        # The text above is on screen once the fbdev damage worker has flushed
        # it (milliseconds); E2E-SHOT tells the host the screen is final.
        sleep 1
        echo "E2E-SHOT fbcon"
        sleep "${HOLD:-3}" ;;
    modetest-2d)
        # 1. mode set with modetest's test pattern, held until vgpu.hold s after
        #    E2E-SHOT; 2. page flips (-v) for vgpu.flips s ("freq: N Hz" lines).
        modetest -M virtio_gpu -c
        C=$(connector)
        if [ -z "$C" ]; then
            echo "E2E-ERROR no connected connector"
        else
            rm -f /tmp/mt.release
            (while [ ! -e /tmp/mt.release ]; do sleep 0.1; done; echo) |
                modetest -M virtio_gpu -s "$C:$MODE" >/tmp/mt.log 2>&1 &
            # modetest's stdout is a file here (fully buffered, nothing to read
            # until it exits): the mode is set once the committed atomic state
            # (debugfs) shows a framebuffer created by modetest on a plane.
            mountpoint -q /sys/kernel/debug || mount -t debugfs debugfs /sys/kernel/debug
            i=0
            until grep -q 'allocated by = modetest' /sys/kernel/debug/dri/0/state 2>/dev/null; do
                i=$((i + 1))
                if [ $i -gt 200 ]; then
                    echo "E2E-ERROR modetest set no mode"
                    cat /sys/kernel/debug/dri/0/state
                    break
                fi
                sleep 0.1
            done
            if [ $i -le 200 ]; then
                sleep 1
                echo "E2E-SHOT modetest"
                sleep "${HOLD:-2}"
            fi
            touch /tmp/mt.release
            wait $!
            rc=$?
            cat /tmp/mt.log
            echo "E2E-MODETEST-EXIT $rc"
            echo "E2E-FLIPS $FLIPS"
            (sleep "$FLIPS"; echo) | modetest -M virtio_gpu -v -s "$C:$MODE" 2>&1
            echo "E2E-MODETEST-VSYNC-EXIT $?"
        fi ;;
    modetest|modetest-vsync)
        modetest -M virtio_gpu -c
        C=$(connector)
        if [ -z "$C" ]; then
            echo "E2E-ERROR no connected connector"
        else
            V=; [ "$TEST" = modetest-vsync ] && V=-v
            # modetest holds the mode until a key arrives on stdin.
            (sleep "${HOLD:-10}"; echo) | modetest -M virtio_gpu $V -s "$C:$MODE" 2>&1
            echo "E2E-MODETEST-EXIT $?"
        fi ;;
    shell)
        setsid cttyhack sh ;;
    *)
        echo "E2E-ERROR unknown vgpu.test=$TEST" ;;
esac
echo "E2E-DONE uptime=$(up)"
echo "E2E-POWEROFF"
sync
poweroff -f
while :; do sleep 3600; done
INIT
chmod 755 "$R/init"

# ---- pack: cpio newc (mkcpio.py: no cpio on the host, no root needed for
# /dev/console, deterministic: sorted, uid/gid 0, mtime 0), gzip -n ------------
python3 "$HERE/mkcpio.py" "$R" | gzip -9 -n >"$WORK/initrd.gz"

# ---- publish ---------------------------------------------------------------------
mkdir -p "$WORK/out"
cp "$WORK/kernel/boot/vmlinuz-$UNAME" "$WORK/out/vmlinuz"
cp "$WORK/initrd.gz" "$WORK/out/initrd.gz"
cp "$WORK/modules.txt" "$WORK/out/modules.txt"
# The modules on their own too (build-guest-3d.sh puts them in its rootfs).
cp -r "$R/lib/modules" "$WORK/out/modules"
cp "$R/etc/e2e-modules" "$WORK/out/modules/load-order"
printf '%s\nkernel-release=%s\n' "$VERSIONS" "$UNAME" >"$WORK/out/versions.txt"
rm -rf "$OUT"
mv "$WORK/out" "$OUT"
# Prune guests and .debs of older versions: each kernel .deb is ~70 MB.
for d in "$CACHE"/guest-*; do
    [ "$d" = "$OUT" ] || rm -rf "$d"
done
for p in "$DEBS"/*.deb; do
    case $p in "$KDEB"|"$BBDEB"|"$DTDEB"|"$DRMDEB") ;; *) rm -f "$p" ;; esac
done
T1=$(date +%s%N)
log "built $OUT in $(( (T1 - T0) / 1000000 )) ms: initrd $(du -k "$OUT/initrd.gz" | cut -f1) KiB," \
    "vmlinuz $(du -k "$OUT/vmlinuz" | cut -f1) KiB"
echo "$OUT"
