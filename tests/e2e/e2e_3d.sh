#!/usr/bin/env bash
# e2e test of the 3D path (issue #4): a Debian 12 guest with Mesa, kmscube and
# glmark2-es2-drm (build-guest-3d.sh) boots in QEMU 10 (TCG, shared memfd
# memory, -device vhost-user-gpu-pci, -display none, QMP) against
# `vhost-gpu --virgl`, once, and /init runs (vgpu.test=all):
#   1. kmscube for E2E_KMSCUBE_SECONDS: once its framebuffer is on the plane the
#      guest prints E2E-SHOT kmscube-1, and E2E_SHOT_GAP s later E2E-SHOT
#      kmscube-2: a QMP screendump is taken at each; both must be non-uniform
#      (>= 64 colours, the size of the guest's mode, not QEMU's 640x480
#      placeholder) and differ from each other (the cube turns); kmscube's own
#      "Rendered N frames in T sec (F fps)" gives the frame rate;
#   2. glmark2-es2-drm --validate: no scene may fail except the ones known to
#      fail at any mode but 800x600 (see below); glmark2 must exit 0;
#   3. a short glmark2-es2-drm benchmark (E2E_GLMARK2_BENCH): its score.
# Checked too: the guest's "[drm] features:" line shows +virgl (+context_init
# and +resource_blob are reported, not required), kmscube's and glmark2's GL
# renderer is virgl, the guest reaches E2E-POWEROFF without E2E-ERROR, QEMU
# exits 0, vhost-gpu is still alive after the guest and exits 0 on SIGTERM
# (removing its socket). A summary table ends the run.
#
# Display mode: the guest boots with drm.edid_firmware=edid/1024x768.bin (one
# of the kernel's built-in EDIDs, applied by the guest's drm module instead of
# the EDID the device sends). glmark2 2023.01's DRM back-end renders at the
# connector's largest mode, and the EDID QEMU 10 generates lists modes up to
# 5120x2160 (slow under TCG, and every position-dependent validation fails);
# 1024x768 is the virtio-gpu driver's default size, valid whatever size the
# device reports. glmark2 --validate always asks for 800x600, and its DRM
# back-end cannot run at an 800x600 mode at all ("glwindow has never been
# initialized": it skips creating its window when the mode already has the
# requested size), so at 1024x768 the scenes whose check reads a pixel at a
# position computed for 800x600 fail whatever the renderer: texture (3),
# effect2d (2), pulsar, desktop (2), buffer (3). The same 11 fail with the
# guest's own llvmpipe (E2E_3D_REQUIRE_VIRGL=0). E2E_GLMARK2_STRICT=1 makes them
# count. glmark2 runs with --visual-config a=0: its default EGL config is
# ARGB8888, which virtio-gpu's plane refuses (every mode set fails with EINVAL
# and nothing reaches the screen).
#
# Usage: e2e_3d.sh [VHOST_GPU_BINARY]
# Environment:
#   E2E_3D_REQUIRE_VIRGL=0  development mode: start vhost-gpu without --virgl
#                  (E2E_3D_DAEMON_ARGS) and do not require +virgl or a virgl
#                  renderer: the guest's Mesa falls back to llvmpipe on dumb
#                  buffers (kms_swrast), which proves the guest side; slow
#                  (glmark2 --validate takes minutes under TCG)
#   E2E_3D_DAEMON_ARGS  vhost-gpu arguments (default --virgl, or none when
#                  E2E_3D_REQUIRE_VIRGL=0)
#   E2E_KMSCUBE_SECONDS  kmscube run time after its first frame (default 10)
#   E2E_SHOT_GAP   seconds between the two screendumps (default 1)
#   E2E_GLMARK2_BENCH  comma-separated glmark2 -b specs for the score (default
#                  build:duration=2,texture:duration=2,shading:shading=phong:duration=2)
#   E2E_GLMARK2_VALIDATE=0  skip glmark2 --validate
#   E2E_GLMARK2_STRICT=1  any validation failure fails the test
#   E2E_EDID       guest drm.edid_firmware (default edid/1024x768.bin; empty:
#                  the device's EDID)
#   E2E_CPU, E2E_SMP, E2E_MEM  QEMU -cpu (default max,vendor=GenuineIntel,
#                  family=6,model=158: with -cpu max's TCG identity LLVM picks a
#                  32-bit CPU and the guest's llvmpipe aborts), -smp (2), -m (2G)
#   E2E_LOG_LEVEL  vhost-gpu --log-level (default info)
#   E2E_GUEST_TIMEOUT  seconds the guest may run (default 600, 1800 without virgl)
#   E2E_OUT=DIR    where images and logs go (default ./e2e_3d-out; kept on
#                  failure or with VGPU_E2E_KEEP=1)
#   VGPU_TIMEOUT_MULTIPLIER  scales every wait (default 1)
# Exit: 0 pass, 1 fail, 77 skip (no QEMU 10, or no 3D guest image and it
# cannot be built: not root).

# Functions called through traps and wait_until look unreachable to shellcheck.
# shellcheck disable=SC2317
set -u

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
QMP="$HERE/qmp.py"
IMGCMP="$HERE/imgcmp.py"
MULT=${VGPU_TIMEOUT_MULTIPLIER:-1}
REQUIRE_VIRGL=${E2E_3D_REQUIRE_VIRGL:-1}
if [ "$REQUIRE_VIRGL" = 1 ]; then
    DAEMON_ARGS=${E2E_3D_DAEMON_ARGS---virgl}
    GUEST_TIMEOUT=${E2E_GUEST_TIMEOUT:-600}
else
    DAEMON_ARGS=${E2E_3D_DAEMON_ARGS-}
    GUEST_TIMEOUT=${E2E_GUEST_TIMEOUT:-1800}
fi
KMSCUBE_SECONDS=${E2E_KMSCUBE_SECONDS:-10}
SHOT_GAP=${E2E_SHOT_GAP:-1}
BENCH=${E2E_GLMARK2_BENCH:-build:duration=2,texture:duration=2,shading:shading=phong:duration=2}
VALIDATE=${E2E_GLMARK2_VALIDATE:-1}
STRICT=${E2E_GLMARK2_STRICT:-0}
EDID=${E2E_EDID-edid/1024x768.bin}
CPU=${E2E_CPU:-max,vendor=GenuineIntel,family=6,model=158}
SMP=${E2E_SMP:-2}
MEM=${E2E_MEM:-2G}
LOG_LEVEL=${E2E_LOG_LEVEL:-info}
BIN=${1:-${VGPU_BINARY:-}}
OUT=${E2E_OUT:-$PWD/e2e_3d-out}
# Scenes whose validation reads a pixel placed for an 800x600 canvas (see above).
KNOWN_GEOMETRY_FAILURES="texture effect2d pulsar desktop buffer"

START_NS=$(date +%s%N)
elapsed() { local ms=$(( ($(date +%s%N) - START_NS) / 1000000 )); printf '%d.%d' $((ms / 1000)) $((ms % 1000 / 100)); }
say() { printf '[e2e_3d %5ss] %s\n' "$(elapsed)" "$*"; }
skip() { echo "SKIP: $*"; exit 77; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# ---- preconditions -------------------------------------------------------------
command -v qemu-system-x86_64 >/dev/null 2>&1 ||
    skip "qemu-system-x86_64 not installed (run tests/e2e/install-qemu10.sh)"
QVER=$(qemu-system-x86_64 --version 2>/dev/null | head -n1)
echo "$QVER" | grep -Eq 'version (1[0-9]|[2-9][0-9])\.' ||
    skip "need QEMU >= 10 (have: $QVER); run tests/e2e/install-qemu10.sh"
qemu-system-x86_64 -device help 2>/dev/null | grep -q '"vhost-user-gpu-pci"' ||
    skip "this QEMU has no vhost-user-gpu-pci device"
command -v python3 >/dev/null 2>&1 || skip "python3 not installed"
if [ -z "$BIN" ] || [ ! -x "$BIN" ]; then
    echo "FAIL: vhost-gpu binary not given or not executable: '$BIN'" >&2
    exit 1
fi

T_IMG0=$(now_ms)
GUEST=$("$HERE/build-guest-3d.sh" | tail -n1)
rc=${PIPESTATUS[0]}
T_IMG=$(( $(now_ms) - T_IMG0 ))
[ "$rc" = 77 ] && skip "no 3D guest image (build-guest-3d.sh needs root to build it)"
if [ "$rc" != 0 ] || [ ! -s "$GUEST/initrd.img" ]; then
    echo "FAIL: build-guest-3d.sh failed (status $rc)" >&2
    exit 1
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/vgpu-e2e3d.XXXXXX")
BPID='' QPID=''
FAILURES=() NOTES=()
cleanup() {
    [ -n "$QPID" ] && kill -0 "$QPID" 2>/dev/null && kill -KILL "$QPID" 2>/dev/null
    [ -n "$BPID" ] && kill -0 "$BPID" 2>/dev/null && kill -KILL "$BPID" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT
failure() { say "FAIL: $*"; FAILURES+=("$*"); }
note() { say "note: $*"; NOTES+=("$*"); }

wait_until() { # wait_until SECONDS CMD...: poll CMD every 100 ms; scaled by MULT
    local limit=$(( $1 * MULT * 10 )) i=0
    shift
    while ! "$@"; do
        i=$((i + 1))
        [ "$i" -ge "$limit" ] && return 1
        sleep 0.1
    done
}
alive() { kill -0 "$1" 2>/dev/null; }
gone() { ! kill -0 "$1" 2>/dev/null; }

if [ -d "$OUT" ]; then rm -f "$OUT"/*.ppm "$OUT"/*.png "$OUT"/*.log "$OUT"/*.err; fi
say "QEMU: $QVER"
say "guest: $GUEST (image ready in $T_IMG ms)"
say "vhost-gpu: $BIN $DAEMON_ARGS"

# ---- the daemon ------------------------------------------------------------------
SOCK=$TMP/vgpu.sock QMPSOCK=$TMP/qmp.sock SERIAL=$TMP/serial.log BLOG=$TMP/vhost-gpu.log
# shellcheck disable=SC2086 # DAEMON_ARGS: words on purpose
"$BIN" --socket-path "$SOCK" --log-level "$LOG_LEVEL" $DAEMON_ARGS >"$BLOG" 2>&1 &
BPID=$!
sock_or_dead() { [ -S "$SOCK" ] || gone "$BPID"; }
wait_until 20 sock_or_dead
if ! alive "$BPID"; then
    wait "$BPID"; rc=$?
    echo "FAIL: vhost-gpu exited at start-up (status $rc):"; tail -n 20 "$BLOG"
    exit 1
fi
[ -S "$SOCK" ] || { echo "FAIL: vhost-gpu did not create $SOCK"; tail -n 20 "$BLOG"; exit 1; }
say "vhost-gpu listening (pid $BPID)"

# ---- the guest -------------------------------------------------------------------
ARGS="console=ttyS0 vt.global_cursor_default=0 panic=-1 vgpu.test=all"
ARGS="$ARGS vgpu.seconds=$KMSCUBE_SECONDS vgpu.gap=$SHOT_GAP vgpu.hold=$((MULT))"
ARGS="$ARGS vgpu.bench=$BENCH"
[ "$VALIDATE" = 1 ] || ARGS="$ARGS vgpu.novalidate=1"
[ -n "$EDID" ] && ARGS="$ARGS drm.edid_firmware=$EDID"
: >"$SERIAL"
T0=$(now_ms)
qemu-system-x86_64 \
    -machine q35,accel=tcg -cpu "$CPU" -smp "$SMP" -m "$MEM" \
    -object memory-backend-memfd,id=mem,size="$MEM",share=on -numa node,memdev=mem \
    -kernel "$GUEST/vmlinuz" -initrd "$GUEST/initrd.img" -append "$ARGS" \
    -serial file:"$SERIAL" \
    -chardev socket,id=vgpu,path="$SOCK" -device vhost-user-gpu-pci,chardev=vgpu \
    -display none -nodefaults -no-reboot \
    -qmp unix:"$QMPSOCK",server=on,wait=off \
    >"$TMP/qemu.out" 2>"$TMP/qemu.err" </dev/null &
QPID=$!
say "QEMU started (pid $QPID): -cpu $CPU -smp $SMP -m $MEM"

declare -A MARK   # first time (ms after QEMU start) each marker was seen
shots=0
deadline=$(( $(date +%s) + GUEST_TIMEOUT * MULT ))
marker_seen() { grep -aq "^$1" "$SERIAL"; }
while alive "$QPID"; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
        failure "guest still running after $((GUEST_TIMEOUT * MULT)) s"; break
    fi
    for m in E2E-READY E2E-KMSCUBE-START E2E-KMSCUBE-RUNNING E2E-KMSCUBE-EXIT \
             E2E-GLMARK2-VALIDATE-START E2E-GLMARK2-VALIDATE-EXIT \
             E2E-GLMARK2-BENCH-START E2E-GLMARK2-BENCH-EXIT E2E-POWEROFF; do
        if [ -z "${MARK[$m]:-}" ] && marker_seen "$m"; then
            MARK[$m]=$(( $(now_ms) - T0 ))
            say "guest: $(grep -a -m1 "^$m" "$SERIAL" | tr -d '\r')"
        fi
    done
    while read -r line; do
        what=${line#E2E-SHOT }
        shots=$((shots + 1))
        if python3 "$QMP" "$QMPSOCK" --timeout $((20 * MULT)) \
            "{\"execute\":\"screendump\",\"arguments\":{\"filename\":\"$TMP/$what.ppm\"}}" \
            </dev/null >/dev/null; then
            say "screendump '$what' at $(( $(now_ms) - T0 )) ms"
            marker_seen E2E-KMSCUBE-EXIT &&
                failure "screendump '$what' taken after kmscube had exited: raise E2E_KMSCUBE_SECONDS"
        else
            failure "QMP screendump '$what' failed"
        fi
    done < <(grep -a '^E2E-SHOT ' "$SERIAL" | tr -d '\r' | tail -n +$((shots + 1)))
    sleep 0.1
done
if alive "$QPID"; then kill -KILL "$QPID"; fi
wait "$QPID"; QRC=$?; QPID=
T_GUEST=$(( $(now_ms) - T0 ))
say "QEMU exited $QRC after $T_GUEST ms"
[ "$QRC" = 0 ] || failure "QEMU exit status $QRC"
tr -d '\r' <"$SERIAL" >"$TMP/serial.txt"
S=$TMP/serial.txt
grep -q '^E2E-POWEROFF' "$S" || failure "the guest did not reach E2E-POWEROFF"
while read -r line; do failure "guest: $line"; done < <(grep '^E2E-ERROR' "$S")
if [ -s "$TMP/qemu.err" ]; then
    note "QEMU stderr: $(head -n3 "$TMP/qemu.err" | tr '\n' ' ')"
fi

# ---- the daemon survived; SIGTERM ------------------------------------------------
DAEMON_STATE=
sleep 0.5
if alive "$BPID"; then
    say "vhost-gpu still alive after the guest run"
    kill -TERM "$BPID"
    if wait_until 10 gone "$BPID"; then
        wait "$BPID"; rc=$?; BPID=
        if [ "$rc" = 0 ]; then DAEMON_STATE="alive after the guest, exit 0 on SIGTERM"
        else DAEMON_STATE="exit $rc on SIGTERM"; failure "vhost-gpu exited with status $rc on SIGTERM (want 0)"; fi
        [ -e "$SOCK" ] && failure "vhost-gpu left its socket behind"
    else
        DAEMON_STATE="hung on SIGTERM"
        failure "vhost-gpu did not exit within $((10 * MULT)) s of SIGTERM"
        kill -KILL "$BPID"; wait "$BPID"; BPID=
    fi
else
    wait "$BPID"; rc=$?; BPID=
    DAEMON_STATE="died (status $rc)"
    failure "vhost-gpu died during/after the guest run (status $rc)"
fi
n=$(grep -ci 'error' "$BLOG")
if [ "${n:-0}" -gt 0 ]; then
    say "vhost-gpu log has $n line(s) with 'error' (first 10):"
    grep -i 'error' "$BLOG" | head -n 10 | sed 's/^/    /'
fi

# ---- features --------------------------------------------------------------------
FEAT=$(grep -m1 '\[drm\] features:' "$S" | sed 's/.*\[drm\] features: *//')
FEAT2=$(grep '\[drm\] features:' "$S" | sed -n 2p | sed 's/.*\[drm\] features: *//')
FEATURES="$FEAT${FEAT2:+ $FEAT2}"
CAPSETS=$(grep -m1 'number of cap sets:' "$S" | sed 's/.*cap sets: *//')
say "[drm] features: ${FEATURES:-(no line)}; cap sets: ${CAPSETS:-?}"
has_feature() { case " $FEATURES " in *" +$1 "*) return 0 ;; esac; return 1; }
FEAT_SUMMARY=
for f in virgl context_init resource_blob host_visible edid; do
    if has_feature "$f"; then FEAT_SUMMARY="$FEAT_SUMMARY +$f"; else FEAT_SUMMARY="$FEAT_SUMMARY -$f"; fi
done
if [ "$REQUIRE_VIRGL" = 1 ]; then
    has_feature virgl || failure "the guest's [drm] features line does not show +virgl: $FEATURES"
fi
say "offered: virgl $(has_feature virgl && echo yes || echo no), context_init $(has_feature context_init && echo yes || echo no), resource_blob $(has_feature resource_blob && echo yes || echo no)"
MODES=$(grep -m1 '^E2E-MODES' "$S" | sed 's/^E2E-MODES //')

# ---- kmscube ---------------------------------------------------------------------
KMS_RENDERER=$(grep -m1 '^ *renderer: ' "$S" | sed 's/^ *renderer: *//; s/"//g')
say "kmscube GL renderer: ${KMS_RENDERER:-?}"
if [ "$REQUIRE_VIRGL" = 1 ]; then
    case $KMS_RENDERER in virgl*) ;; *) failure "kmscube's renderer is not virgl: '${KMS_RENDERER:-none}'" ;; esac
fi
KMS_RC=$(sed -n 's/^E2E-KMSCUBE-EXIT //p' "$S" | head -n1)
[ "$KMS_RC" = 0 ] || failure "kmscube exit status ${KMS_RC:-(none)}"
# The last "Rendered N frames in T sec (F fps)" line counts from the first frame.
KMS_LINE=$(grep -E '^Rendered [1-9][0-9]* frames in' "$S" | tail -n1)
if [ -n "$KMS_LINE" ]; then
    KMS_FRAMES=$(echo "$KMS_LINE" | awk '{ print $2 }')
    KMS_SECS=$(echo "$KMS_LINE" | awk '{ printf "%.1f", $5 }')
    KMS_FPS=$(echo "$KMS_LINE" | sed 's/.*(\([0-9.]*\) fps).*/\1/' | awk '{ printf "%.1f", $1 }')
    say "kmscube: $KMS_FPS fps ($KMS_FRAMES frames in $KMS_SECS s)"
else
    KMS_FPS=
    failure "kmscube printed no 'Rendered N frames' line with N > 0"
fi
# Without virgl the guest renders with kms_swrast (llvmpipe into dumb buffers),
# and the screen then shows only kmscube's grey clear colour, with QEMU's own
# back-end as with vhost-gpu: in that mode the screendump checks are notes.
shot_failure() { if [ "$REQUIRE_VIRGL" = 1 ]; then failure "$@"; else note "$* (expected without virgl)"; fi; }
SHOT_INFO=()
for s in kmscube-1 kmscube-2; do
    f=$TMP/$s.ppm
    if [ ! -s "$f" ]; then failure "no screendump '$s'"; SHOT_INFO+=("$s: none"); continue; fi
    if st=$(python3 "$IMGCMP" stats "$f" --min-colours 64 --min-foreground 1000); then
        say "$s: $st"
        case $st in
            640x480*) failure "$s is QEMU's 640x480 placeholder, not the guest's screen: $st" ;;
        esac
    else
        shot_failure "$s is (nearly) uniform: $st"
    fi
    SHOT_INFO+=("$s: ${st%% bbox=*}")
done
SHOTS_DIFFER=n/a
if [ -s "$TMP/kmscube-1.ppm" ] && [ -s "$TMP/kmscube-2.ppm" ]; then
    res=$(python3 "$IMGCMP" compare "$TMP/kmscube-1.ppm" "$TMP/kmscube-2.ppm" --diff "$TMP/kmscube.diff.png")
    case $? in
        1) SHOTS_DIFFER="differ ($(echo "$res" | head -n1))"; say "kmscube-1 vs kmscube-2: $(echo "$res" | head -n1)" ;;
        0) SHOTS_DIFFER=IDENTICAL; shot_failure "the two kmscube screendumps are identical: no new frame in $SHOT_GAP s" ;;
        *) SHOTS_DIFFER=error; failure "cannot compare the kmscube screendumps: $res" ;;
    esac
fi

# ---- glmark2 ---------------------------------------------------------------------
GL_RENDERER=$(grep -m1 'GL_RENDERER:' "$S" | sed 's/.*GL_RENDERER: *//')
GL_SURFACE=$(grep -m1 'Surface Size:' "$S" | sed 's/.*Surface Size: *//')
say "glmark2 GL_RENDERER: ${GL_RENDERER:-?}; surface ${GL_SURFACE:-?}"
if [ "$REQUIRE_VIRGL" = 1 ]; then
    case $GL_RENDERER in virgl*) ;; *) failure "glmark2's renderer is not virgl: '${GL_RENDERER:-none}'" ;; esac
fi
VAL_SUMMARY=skipped
if [ "$VALIDATE" = 1 ]; then
    VRC=$(sed -n 's/^E2E-GLMARK2-VALIDATE-EXIT //p' "$S" | head -n1)
    sed -n '/^E2E-GLMARK2-VALIDATE-START/,/^E2E-GLMARK2-VALIDATE-EXIT/p' "$S" |
        grep -E '^\[[a-z0-9-]+\] .*: Validation: ' >"$TMP/validate.txt"
    nsucc=$(grep -c 'Validation: Success' "$TMP/validate.txt")
    nunk=$(grep -c 'Validation: Unknown' "$TMP/validate.txt")
    nknown=0 unexpected=()
    while read -r line; do
        scene=${line#[}; scene=${scene%%]*}
        case " $KNOWN_GEOMETRY_FAILURES " in
            *" $scene "*) [ "$STRICT" = 1 ] && unexpected+=("$line") || nknown=$((nknown + 1)) ;;
            *) unexpected+=("$line") ;;
        esac
    done < <(grep 'Validation: Failure' "$TMP/validate.txt")
    ntotal=$(wc -l <"$TMP/validate.txt")
    VAL_SUMMARY="$nsucc success, $nknown known failures (800x600 positions), $nunk unknown, ${#unexpected[@]} unexpected, of $ntotal"
    say "glmark2 --validate (exit ${VRC:-none}): $VAL_SUMMARY"
    [ "$VRC" = 0 ] || failure "glmark2-es2-drm --validate exit status ${VRC:-(none)}"
    [ "$ntotal" -gt 0 ] || failure "glmark2-es2-drm --validate validated no scene"
    [ "$nsucc" -gt 0 ] || failure "glmark2-es2-drm --validate: no scene succeeded"
    for line in "${unexpected[@]}"; do failure "glmark2 validation: $line"; done
    if [ "${#unexpected[@]}" = 0 ] && [ "$VRC" = 0 ] && [ "$nsucc" -gt 0 ]; then
        VAL_SUMMARY="PASS: $VAL_SUMMARY"
    else
        VAL_SUMMARY="FAIL: $VAL_SUMMARY"
    fi
fi
BRC=$(sed -n 's/^E2E-GLMARK2-BENCH-EXIT //p' "$S" | head -n1)
[ "$BRC" = 0 ] || failure "glmark2-es2-drm benchmark exit status ${BRC:-(none)}"
SCORE=$(sed -n 's/.*glmark2 Score: *\([0-9]*\).*/\1/p' "$S" | tail -n1)
SCENES=$(sed -n '/^E2E-GLMARK2-BENCH-START/,/^E2E-GLMARK2-BENCH-EXIT/p' "$S" |
         sed -n 's/^\[\([a-z0-9-]*\)\] .*FPS: *\([0-9]*\).*/\1 \2/p' | awk '{ printf "%s%s %s", (NR > 1 ? ", " : ""), $1, $2 }')
if [ -n "$SCORE" ] && [ "$SCORE" -gt 0 ]; then
    say "glmark2 score: $SCORE (fps: $SCENES)"
else
    failure "glmark2 printed no positive score (got '${SCORE:-none}')"
fi
grep -q 'Failed to set crtc' "$S" && note "glmark2 could not set its mode (Failed to set crtc): frames were not displayed"

# ---- timings -----------------------------------------------------------------------
span() { # span FROM TO -> seconds between two markers
    if [ -n "${MARK[$1]:-}" ] && [ -n "${MARK[$2]:-}" ]; then
        awk -v a="${MARK[$1]}" -v b="${MARK[$2]}" 'BEGIN { printf "%.1f s", (b - a) / 1000 }'
    else echo "n/a"; fi
}
READY_S=$( [ -n "${MARK[E2E-READY]:-}" ] && awk -v a="${MARK[E2E-READY]}" 'BEGIN { printf "%.1f s", a / 1000 }' || echo n/a)
GUEST_UPTIME=$(sed -n 's/^E2E-READY uptime=//p' "$S" | head -n1)

# ---- summary ---------------------------------------------------------------------
mkdir -p "$OUT"
echo
printf '%-18s %s\n' "check" "result"
printf '%-18s %s\n' "features" "$FEATURES"
printf '%-18s %s\n' "" "(virgl, context_init, resource_blob, host_visible, edid:$FEAT_SUMMARY); cap sets: ${CAPSETS:-?}"
printf '%-18s %s\n' "modes" "${MODES:-?} (drm.edid_firmware=${EDID:-none})"
printf '%-18s %s\n' "kmscube renderer" "${KMS_RENDERER:-?}"
printf '%-18s %s\n' "kmscube" "${KMS_FPS:-n/a} fps${KMS_FRAMES:+ ($KMS_FRAMES frames in $KMS_SECS s)}, exit ${KMS_RC:-?}"
for i in "${SHOT_INFO[@]}"; do printf '%-18s %s\n' "screendump" "$i"; done
printf '%-18s %s\n' "shots 1 vs 2" "$SHOTS_DIFFER"
printf '%-18s %s\n' "glmark2 renderer" "${GL_RENDERER:-?} (${GL_SURFACE:-?})"
printf '%-18s %s\n' "glmark2 validate" "$VAL_SUMMARY"
printf '%-18s %s\n' "glmark2 score" "${SCORE:-n/a}${SCENES:+ ($SCENES fps)}"
printf '%-18s %s\n' "vhost-gpu" "${DAEMON_STATE:-?} ($(basename "$BIN") $DAEMON_ARGS)"
printf '%-18s %s\n' "time" "image $((T_IMG / 1000)) s, E2E-READY $READY_S after QEMU start (guest uptime ${GUEST_UPTIME:-?} s), kmscube $(span E2E-KMSCUBE-START E2E-KMSCUBE-EXIT), validate $(span E2E-GLMARK2-VALIDATE-START E2E-GLMARK2-VALIDATE-EXIT), benchmark $(span E2E-GLMARK2-BENCH-START E2E-GLMARK2-BENCH-EXIT), guest total $((T_GUEST / 1000)) s, run $(elapsed) s"
echo

if [ "${#FAILURES[@]}" -gt 0 ] || [ "${VGPU_E2E_KEEP:-0}" = 1 ]; then
    cp "$TMP"/*.ppm "$TMP"/*.png "$OUT"/ 2>/dev/null
    cp "$SERIAL" "$OUT/serial.log"; cp "$BLOG" "$OUT/vhost-gpu.log"; cp "$TMP/qemu.err" "$OUT/qemu.err"
    for f in "$OUT"/kmscube-*.ppm; do
        [ -s "$f" ] && python3 "$IMGCMP" topng "$f" "${f%.ppm}.png"
    done
fi
if [ "${#FAILURES[@]}" -gt 0 ]; then
    echo "FAIL (${#FAILURES[@]}), after $(elapsed) s; logs and images in $OUT:"
    printf '  - %s\n' "${FAILURES[@]}"
    echo "----- serial.log (last 30 lines)"; tail -n 30 "$S"
    exit 1
fi
[ "${VGPU_E2E_KEEP:-0}" = 1 ] || rmdir "$OUT" 2>/dev/null
echo "PASS after $(elapsed) s"
exit 0
