#!/usr/bin/env python3
"""Minimal QMP client for the e2e scripts (standard library only).

Usage: qmp.py SOCKET [--timeout S] COMMAND [COMMAND...]

Each COMMAND is either a bare QMP command name ("quit", "query-status") or a
JSON object ('{"execute":"screendump","arguments":{"filename":"/tmp/x.ppm"}}').
qmp_capabilities is sent first automatically. Each command's "return" value is
printed as one JSON line on stdout; events are ignored. Exit status: 0 on
success, 1 on a QMP error, 2 on timeout or connection failure. After "quit",
EOF from QEMU counts as success (QEMU may close before replying).
"""
import json
import socket
import sys
import time


def main(argv):
    args = argv[1:]
    if not args:
        print(__doc__, file=sys.stderr)
        return 2
    path = args.pop(0)
    timeout = 20.0
    if len(args) >= 2 and args[0] == "--timeout":
        timeout = float(args[1])
        args = args[2:]
    deadline = time.monotonic() + timeout

    sock = None
    while True:
        try:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(path)
            break
        except OSError as exc:
            sock.close()
            if time.monotonic() > deadline:
                print(f"qmp.py: cannot connect to {path}: {exc}", file=sys.stderr)
                return 2
            time.sleep(0.1)

    buf = b""

    def read_msg():
        nonlocal buf
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            sock.settimeout(left)
            chunk = sock.recv(65536)
            if not chunk:
                return None
            buf += chunk
        line, buf = buf.split(b"\n", 1)
        return json.loads(line)

    def execute(cmd):
        sock.sendall(json.dumps(cmd).encode() + b"\n")
        while True:
            msg = read_msg()
            if msg is None:
                return None, True
            if "return" in msg or "error" in msg:
                return msg, False

    try:
        greeting = read_msg()
        if greeting is None or "QMP" not in greeting:
            print(f"qmp.py: bad greeting {greeting!r}", file=sys.stderr)
            return 2
        reply, eof = execute({"execute": "qmp_capabilities"})
        if eof or "error" in reply:
            print(f"qmp.py: qmp_capabilities failed: {reply!r}", file=sys.stderr)
            return 1
        for arg in args:
            cmd = json.loads(arg) if arg.lstrip().startswith("{") else {"execute": arg}
            reply, eof = execute(cmd)
            if eof:
                if cmd.get("execute") == "quit":
                    return 0
                print(f"qmp.py: EOF during {cmd!r}", file=sys.stderr)
                return 2
            if "error" in reply:
                print(f"qmp.py: {cmd.get('execute')}: {reply['error']}", file=sys.stderr)
                return 1
            print(json.dumps(reply["return"]))
            sys.stdout.flush()
    except TimeoutError:
        print("qmp.py: timed out waiting for QEMU", file=sys.stderr)
        return 2
    finally:
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
