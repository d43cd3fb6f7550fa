#!/usr/bin/env bash
# e2e smoke test: QEMU 10 (TCG) realizes a vhost-user-gpu-pci device against
# the vhost-gpu daemon, quits, and the daemon survives the disconnect, accepts
# a second QEMU, and exits cleanly on SIGTERM.
#
# Usage: qemu_negotiation.sh [DAEMON_BINARY]     (default: $VGPU_BINARY)
#        qemu_negotiation.sh --reference         (dry run against QEMU's own
#                                                 /usr/lib/qemu/vhost-user-gpu)
# Environment:
#   VGPU_TIMEOUT_MULTIPLIER  scales every wait (sanitizer lanes), default 1
#   VGPU_E2E_ROUNDS          QEMU connections to serve in a row, default 2
#   VGPU_E2E_KEEP=1          keep the temporary directory (logs) afterwards
#
# Exit: 0 pass, 1 fail, 77 skip (QEMU 10 not installed: see install-qemu10.sh).
#
# No guest runs (-S): this covers only the realize-time vhost-user sequence
# (GET_FEATURES ... SET_VRING_CALL/SET_VRING_ERR, see
# shared/reference/vhost-user-gpu-protocol.md 1.6 A) and the disconnect.
set -u

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
QMP="$HERE/qmp.py"
REF_BACKEND=/usr/lib/qemu/vhost-user-gpu
MULT=${VGPU_TIMEOUT_MULTIPLIER:-1}
ROUNDS=${VGPU_E2E_ROUNDS:-2}

REFERENCE=0
BIN=${1:-${VGPU_BINARY:-}}
if [ "$BIN" = "--reference" ]; then
    REFERENCE=1
    BIN=$REF_BACKEND
    ROUNDS=1 # QEMU's back-end exits when its front-end disconnects
fi

say() { printf '[e2e %6ss] %s\n' "$(elapsed)" "$*"; }
START_NS=$(date +%s%N)
elapsed() { local ms=$(( ($(date +%s%N) - START_NS) / 1000000 )); printf '%d.%02d' $((ms / 1000)) $((ms % 1000 / 10)); }
skip() { echo "SKIP: $*"; exit 77; }

# ---- preconditions -----------------------------------------------------------
command -v qemu-system-x86_64 >/dev/null 2>&1 ||
    skip "qemu-system-x86_64 not installed (run tests/e2e/install-qemu10.sh)"
QVER=$(qemu-system-x86_64 --version 2>/dev/null | head -n1)
echo "$QVER" | grep -Eq 'version (1[0-9]|[2-9][0-9])\.' ||
    skip "need QEMU >= 10 (have: $QVER); run tests/e2e/install-qemu10.sh"
qemu-system-x86_64 -device help 2>/dev/null | grep -q '"vhost-user-gpu-pci"' ||
    skip "this QEMU has no vhost-user-gpu-pci device"
command -v python3 >/dev/null 2>&1 || skip "python3 not installed (needed for QMP)"
if [ -z "$BIN" ] || [ ! -x "$BIN" ]; then
    echo "FAIL: daemon binary not given or not executable: '${BIN}'" >&2
    exit 1
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/vgpu-e2e.XXXXXX")
SOCK=$TMP/vgpu.sock
QMPSOCK=$TMP/qmp.sock
DLOG=$TMP/daemon.log
DPID=
QPID=

cleanup() {
    [ -n "$QPID" ] && kill -0 "$QPID" 2>/dev/null && kill -KILL "$QPID" 2>/dev/null
    [ -n "$DPID" ] && kill -0 "$DPID" 2>/dev/null && kill -KILL "$DPID" 2>/dev/null
    if [ "${VGPU_E2E_KEEP:-0}" = 1 ]; then
        echo "kept $TMP"
    else
        rm -rf "$TMP"
    fi
}
trap cleanup EXIT

dump_logs() {
    local f
    for f in "$DLOG" "$TMP"/qemu.*.err; do
        [ -s "$f" ] || continue
        echo "----- $(basename "$f") (last 60 lines) -----"
        tail -n 60 "$f"
    done
    echo "-----"
}
fail() { echo "FAIL: $*" >&2; dump_logs; exit 1; }

# wait_until SECONDS CMD...: poll CMD every 50 ms, scaled timeout.
wait_until() {
    local limit=$(( $1 * MULT * 20 )) i=0
    shift
    while ! "$@"; do
        i=$((i + 1))
        [ "$i" -ge "$limit" ] && return 1
        sleep 0.05
    done
}

# Matches a message name as a whole token, with or without a VHOST_USER_ prefix
# (so GET_FEATURES does not match GET_PROTOCOL_FEATURES or vice versa).
msg_re() { printf '(^|[^A-Z_])(VHOST_USER_)?%s([^A-Z_]|$)' "$1"; }
count_msgs() { # count_msgs NAME FROM_LINE
    tail -n +"$2" "$DLOG" | grep -Ec "$(msg_re "$1")"
}

# ---- start the daemon --------------------------------------------------------
say "QEMU: $QVER"
say "daemon: $BIN"
if [ "$REFERENCE" = 1 ]; then
    "$BIN" --socket-path="$SOCK" >"$DLOG" 2>&1 &
else
    "$BIN" --socket-path "$SOCK" --log-level debug >"$DLOG" 2>&1 &
fi
DPID=$!
daemon_ready() { [ -S "$SOCK" ] || ! kill -0 "$DPID" 2>/dev/null; }
wait_until 10 daemon_ready || fail "daemon did not create $SOCK within $((10 * MULT)) s"
kill -0 "$DPID" 2>/dev/null || { wait "$DPID"; rc=$?; DPID=; fail "daemon exited at start-up (status $rc)"; }
say "daemon listening on $SOCK (pid $DPID)"

# ---- one QEMU connection -----------------------------------------------------
run_round() {
    local n=$1 from qrc
    from=$(( $(wc -l <"$DLOG") + 1 ))
    rm -f "$QMPSOCK"
    qemu-system-x86_64 \
        -machine q35,accel=tcg -m 256 \
        -object memory-backend-memfd,id=mem,size=256M,share=on -numa node,memdev=mem \
        -chardev socket,id=vgpu,path="$SOCK" \
        -device vhost-user-gpu-pci,chardev=vgpu \
        -display none -nodefaults -S \
        -qmp unix:"$QMPSOCK",server=on,wait=off \
        >"$TMP/qemu.$n.out" 2>"$TMP/qemu.$n.err" </dev/null &
    QPID=$!
    say "round $n: QEMU started (pid $QPID)"

    if [ "$REFERENCE" = 0 ]; then
        # Realize ends with SET_VRING_CALL/SET_VRING_ERR for both queues.
        realized() {
            [ "$(count_msgs SET_VRING_ERR "$from")" -ge 2 ] || ! kill -0 "$QPID" 2>/dev/null
        }
        wait_until 30 realized ||
            fail "round $n: daemon log shows no 2x SET_VRING_ERR within $((30 * MULT)) s"
        kill -0 "$QPID" 2>/dev/null || {
            wait "$QPID"; qrc=$?; QPID=
            fail "round $n: QEMU exited early (status $qrc)"
        }
        local m
        for m in GET_FEATURES GET_PROTOCOL_FEATURES SET_PROTOCOL_FEATURES SET_OWNER \
                 SET_VRING_CALL SET_VRING_ERR; do
            [ "$(count_msgs "$m" "$from")" -ge 1 ] ||
                fail "round $n: daemon log has no $m during realize"
        done
        local first_gf first_err
        first_gf=$(tail -n +"$from" "$DLOG" | grep -Enm1 "$(msg_re GET_FEATURES)" | cut -d: -f1)
        first_err=$(tail -n +"$from" "$DLOG" | grep -Enm1 "$(msg_re SET_VRING_ERR)" | cut -d: -f1)
        [ "$first_gf" -lt "$first_err" ] ||
            fail "round $n: SET_VRING_ERR logged before GET_FEATURES"
        say "round $n: realize sequence seen in daemon log"
    fi

    # QMP answers only once QEMU is in its main loop, i.e. after realize.
    python3 "$QMP" "$QMPSOCK" --timeout $((20 * MULT)) quit >/dev/null ||
        fail "round $n: QMP quit failed"
    qemu_gone() { ! kill -0 "$QPID" 2>/dev/null; }
    wait_until 15 qemu_gone || fail "round $n: QEMU did not exit after quit"
    wait "$QPID"; qrc=$?; QPID=
    [ "$qrc" = 0 ] || fail "round $n: QEMU exited with status $qrc"
    # QEMU 10 reports "EDID requested but the backend doesn't support it." when
    # GET_FEATURES lacks VIRTIO_GPU_F_EDID; it is not fatal (QEMU just hides EDID
    # from the guest), and whether to offer EDID is the daemon's choice: note it.
    local edid_re="EDID requested but the backend doesn't support it"
    if grep -i vhost "$TMP/qemu.$n.err" | grep -qv "$edid_re"; then
        fail "round $n: QEMU printed vhost errors: $(grep -i vhost "$TMP/qemu.$n.err" | grep -v "$edid_re" | head -n5)"
    fi
    if [ -s "$TMP/qemu.$n.err" ]; then
        say "round $n: note, QEMU stderr: $(head -n3 "$TMP/qemu.$n.err")"
    fi
    say "round $n: QEMU quit cleanly"
}

for n in $(seq 1 "$ROUNDS"); do
    run_round "$n"
    [ "$REFERENCE" = 1 ] && break
    # The daemon must survive the disconnect and keep listening.
    sleep "$MULT"
    kill -0 "$DPID" 2>/dev/null || {
        wait "$DPID"; rc=$?; DPID=
        fail "daemon exited (status $rc) after QEMU disconnected (round $n)"
    }
    [ -S "$SOCK" ] || fail "daemon removed its socket after QEMU disconnected (round $n)"
    say "round $n: daemon still alive and listening"
done

if [ "$REFERENCE" = 1 ]; then
    be_gone() { ! kill -0 "$DPID" 2>/dev/null; }
    wait_until 10 be_gone || fail "reference back-end still running after QEMU quit"
    wait "$DPID"; rc=$?; DPID=
    say "reference back-end exited with status $rc"
    echo "PASS (reference back-end dry run)"
    exit 0
fi

# ---- SIGTERM -----------------------------------------------------------------
if grep -q ': error:' "$DLOG"; then
    say "note, daemon logged errors: $(grep ': error:' "$DLOG" | head -n3)"
fi
kill -TERM "$DPID"
daemon_gone() { ! kill -0 "$DPID" 2>/dev/null; }
wait_until 10 daemon_gone || fail "daemon did not exit within $((10 * MULT)) s of SIGTERM"
wait "$DPID"; rc=$?; DPID=
[ "$rc" = 0 ] || fail "daemon exited with status $rc on SIGTERM (want 0)"
[ -e "$SOCK" ] && fail "daemon left its socket $SOCK behind"
say "daemon exited 0 on SIGTERM and removed its socket"
echo "PASS"
exit 0
