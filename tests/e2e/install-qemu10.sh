#!/usr/bin/env bash
# Install QEMU 10 (qemu-system-x86 + qemu-system-gui, which ships
# /usr/lib/qemu/vhost-user-gpu) from Debian's bookworm-backports suite.
#
# Why: Debian 12's QEMU 7.2 refuses vhost-user devices without KVM
# ("vhost initialization failed: requires kvm"), and this project's machines
# have no usable KVM. QEMU 10 from bookworm-backports runs vhost-user-gpu-pci
# under TCG, and its contrib back-end is the reference peer for comparisons.
#
# The mirror is never hard-coded: it is read at run time from the `URIs:` line
# of the machine's own /etc/apt/sources.list.d/debian.sources (the first
# stanza whose URI ends in /debian, i.e. not the security archive).
#
# Idempotent: exits early when `qemu-system-x86_64 --version` already reports
# 10.x and the back-end exists; rewrites the .sources file only if it changed.
# Needs root. Waits for other apt/dpkg processes to finish before running apt.
set -euo pipefail

BACKEND=/usr/lib/qemu/vhost-user-gpu
SRC_FILE=/etc/apt/sources.list.d/debian.sources
DST_FILE=/etc/apt/sources.list.d/vgpu-backports.sources

log() { printf 'install-qemu10: %s\n' "$*" >&2; }

qemu_is_10() {
    command -v qemu-system-x86_64 >/dev/null 2>&1 || return 1
    qemu-system-x86_64 --version 2>/dev/null | head -n1 |
        grep -Eq 'version (1[0-9]|[2-9][0-9])\.'
}

if qemu_is_10 && [ -x "$BACKEND" ]; then
    log "already installed: $(qemu-system-x86_64 --version | head -n1)"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    log "must run as root"
    exit 1
fi

if [ ! -r "$SRC_FILE" ]; then
    log "$SRC_FILE not found: cannot derive the Debian mirror URI"
    exit 1
fi

# Parse the deb822 file stanza by stanza; take the URI (and Signed-By) of the
# first stanza that lists suite "bookworm" (the main archive, not -security).
read -r URI SIGNED_BY < <(awk '
    function flush() {
        if (!found && uri != "" && suites ~ /(^| )bookworm( |$)/) {
            print uri, (sb == "" ? "-" : sb); found = 1
        }
        uri = ""; suites = ""; sb = ""
    }
    /^[ \t]*$/ { flush(); next }
    /^[ \t]*#/ { next }
    tolower($1) == "uris:"      { uri = $2 }
    tolower($1) == "suites:"    { $1 = ""; suites = $0; sub(/^ +/, "", suites) }
    tolower($1) == "signed-by:" { sb = $2 }
    END { flush() }
' "$SRC_FILE")

if [ -z "${URI:-}" ]; then
    log "no stanza with suite bookworm and a URIs: line in $SRC_FILE"
    exit 1
fi
[ "$SIGNED_BY" = "-" ] && SIGNED_BY=/usr/share/keyrings/debian-archive-keyring.gpg

want="Types: deb
URIs: $URI
Suites: bookworm-backports
Components: main
Signed-By: $SIGNED_BY"

wait_for_apt() {
    local i
    for i in $(seq 1 180); do
        if ! pgrep -x apt-get >/dev/null && ! pgrep -x apt >/dev/null &&
           ! pgrep -x dpkg >/dev/null; then
            return 0
        fi
        [ "$i" = 1 ] && log "waiting for another apt/dpkg process to finish"
        sleep 5
    done
    log "apt/dpkg still busy after 15 minutes"
    return 1
}

if [ ! -f "$DST_FILE" ] || [ "$(cat "$DST_FILE")" != "$want" ]; then
    log "writing $DST_FILE (URI from $SRC_FILE)"
    printf '%s\n' "$want" > "$DST_FILE"
fi

export DEBIAN_FRONTEND=noninteractive
wait_for_apt
apt-get update -q
wait_for_apt
apt-get install -y -q -t bookworm-backports \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    qemu-system-x86 qemu-system-gui

if ! qemu_is_10; then
    log "qemu-system-x86_64 is not 10.x after install: $(qemu-system-x86_64 --version 2>&1 | head -n1)"
    exit 1
fi
if [ ! -x "$BACKEND" ]; then
    log "$BACKEND missing after install"
    exit 1
fi
log "installed: $(qemu-system-x86_64 --version | head -n1)"
