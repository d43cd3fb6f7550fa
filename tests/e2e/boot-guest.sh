#!/usr/bin/env bash
# Boot the e2e guest (build-guest.sh) in QEMU 10 under TCG with a
# vhost-user-gpu-pci device served by a back-end, wait for E2E-READY on the
# serial port, optionally take a QMP screendump, and wait for the guest to
# power off.
#
# Usage: boot-guest.sh [--reference | --backend PATH] [--test NAME] [--hold N]
#                      [--screendump FILE.png] [--shot-delay S] [--out DIR]
#                      [--timeout S] [--append "EXTRA KERNEL ARGS"]
#   --reference        use QEMU's own /usr/lib/qemu/vhost-user-gpu (default)
#   --backend PATH     use PATH with `--socket-path SOCK --log-level debug`
#   --test NAME        guest vgpu.test= (idle, modetest, modetest-vsync, hold, shell)
#   --screendump FILE  PNG screendump taken --shot-delay (default 2) s after E2E-READY
#   --out DIR          keep serial.log, backend.log, qemu.err there (else a temp dir)
# Prints "boot: E2E-READY after N ms" and exits 0 when E2E-READY was seen and QEMU
# exited 0; 77 when QEMU 10 is missing; 1 otherwise.
set -u

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BACKEND=/usr/lib/qemu/vhost-user-gpu
REFERENCE=1
TEST=idle HOLD='' SHOT='' SHOT_DELAY=2 OUT='' TIMEOUT=120 APPEND=''
while [ $# -gt 0 ]; do
    case $1 in
        --reference) REFERENCE=1 ;;
        --backend) BACKEND=$2; REFERENCE=0; shift ;;
        --test) TEST=$2; shift ;;
        --hold) HOLD=$2; shift ;;
        --screendump) SHOT=$2; shift ;;
        --shot-delay) SHOT_DELAY=$2; shift ;;
        --out) OUT=$2; shift ;;
        --timeout) TIMEOUT=$2; shift ;;
        --append) APPEND=$2; shift ;;
        *) echo "boot-guest: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

qemu-system-x86_64 --version 2>/dev/null | head -n1 | grep -Eq 'version (1[0-9]|[2-9][0-9])\.' ||
    { echo "SKIP: QEMU >= 10 not installed (tests/e2e/install-qemu10.sh)"; exit 77; }
[ -x "$BACKEND" ] || { echo "boot-guest: back-end $BACKEND not executable" >&2; exit 1; }

GUEST=$("$HERE/build-guest.sh" | tail -n1) || { echo "boot-guest: build-guest.sh failed" >&2; exit 1; }
if [ -n "$OUT" ]; then
    mkdir -p "$OUT"; DIR=$(cd "$OUT" && pwd); KEEP=1
else
    DIR=$(mktemp -d "${TMPDIR:-/tmp}/vgpu-boot.XXXXXX"); KEEP=0
fi
SOCK=$DIR/vgpu.sock QMPSOCK=$DIR/qmp.sock
rm -f "$SOCK" "$QMPSOCK" "$DIR/serial.log"
BPID='' QPID=''
cleanup() {
    [ -n "$QPID" ] && kill -0 "$QPID" 2>/dev/null && kill -KILL "$QPID"
    [ -n "$BPID" ] && kill -0 "$BPID" 2>/dev/null && kill -TERM "$BPID"
    [ "$KEEP" = 1 ] || rm -rf "$DIR"
}
trap cleanup EXIT
fail() {
    echo "boot-guest: FAIL: $*" >&2
    for f in serial.log backend.log qemu.err; do
        [ -s "$DIR/$f" ] && { echo "----- $f (last 40 lines)"; tail -n 40 "$DIR/$f"; }
    done
    exit 1
}
ms() { echo $(( ($(date +%s%N) - T0) / 1000000 )); }

if [ "$REFERENCE" = 1 ]; then
    "$BACKEND" --socket-path="$SOCK" >"$DIR/backend.log" 2>&1 &
else
    "$BACKEND" --socket-path "$SOCK" --log-level debug >"$DIR/backend.log" 2>&1 &
fi
BPID=$!
for _ in $(seq 100); do [ -S "$SOCK" ] && break; sleep 0.05; done
[ -S "$SOCK" ] || fail "back-end did not create $SOCK"

ARGS="console=ttyS0 panic=-1 vgpu.test=$TEST${HOLD:+ vgpu.hold=$HOLD}${APPEND:+ $APPEND}"
T0=$(date +%s%N)
qemu-system-x86_64 \
    -machine q35,accel=tcg -cpu max -m 512 \
    -object memory-backend-memfd,id=mem,size=512M,share=on -numa node,memdev=mem \
    -kernel "$GUEST/vmlinuz" -initrd "$GUEST/initrd.gz" -append "$ARGS" \
    -serial file:"$DIR/serial.log" \
    -chardev socket,id=vgpu,path="$SOCK" -device vhost-user-gpu-pci,chardev=vgpu \
    -display none -nodefaults -no-reboot \
    -qmp unix:"$QMPSOCK",server=on,wait=off \
    >"$DIR/qemu.out" 2>"$DIR/qemu.err" </dev/null &
QPID=$!

until grep -q '^E2E-READY' "$DIR/serial.log" 2>/dev/null; do
    kill -0 "$QPID" 2>/dev/null || fail "QEMU exited before E2E-READY"
    [ "$(ms)" -lt $((TIMEOUT * 1000)) ] || fail "no E2E-READY within $TIMEOUT s"
    sleep 0.1
done
echo "boot: E2E-READY after $(ms) ms (guest $(sed -n 's/^E2E-READY uptime=//p' "$DIR/serial.log") s uptime)"
grep -m1 '\[drm\] features:' "$DIR/serial.log" || echo "boot: note, no [drm] features line"

if [ -n "$SHOT" ]; then
    sleep "$SHOT_DELAY"
    case $SHOT in /*) ;; *) SHOT=$PWD/$SHOT ;; esac
    kill -0 "$QPID" 2>/dev/null ||
        fail "guest powered off before the screendump: raise --hold above --shot-delay"
    python3 "$HERE/qmp.py" "$QMPSOCK" \
        "{\"execute\":\"screendump\",\"arguments\":{\"filename\":\"$SHOT\",\"format\":\"png\"}}" \
        >/dev/null || fail "screendump failed"
    echo "boot: screendump $SHOT"
fi

if [ "$TEST" = hold ] || [ "$TEST" = shell ]; then
    python3 "$HERE/qmp.py" "$QMPSOCK" quit >/dev/null
fi
while kill -0 "$QPID" 2>/dev/null; do
    [ "$(ms)" -lt $((TIMEOUT * 1000)) ] || fail "guest did not power off within $TIMEOUT s"
    sleep 0.2
done
wait "$QPID"; rc=$?; QPID=
echo "boot: QEMU exited $rc after $(ms) ms"
[ "$rc" = 0 ] || fail "QEMU exit status $rc"
grep -q '^E2E-ERROR' "$DIR/serial.log" && fail "guest reported $(grep '^E2E-ERROR' "$DIR/serial.log")"
[ "$KEEP" = 1 ] && echo "boot: logs in $DIR"
exit 0
