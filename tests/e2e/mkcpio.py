#!/usr/bin/env python3
"""Write a directory tree as a cpio "newc" archive (an initramfs) on stdout.

Usage: mkcpio.py ROOT [--owner-from-fs] > archive.cpio

Standard library only (no cpio on the host needed) and no root needed:
/dev/console is added as a character device (5,1) because the kernel opens it
for init's stdio before /init can mount devtmpfs.

Deterministic: entries sorted by path, mtime 0, uid/gid 0 unless
--owner-from-fs (then the files' own uid/gid, e.g. a debootstrap'd rootfs
built as root). Hard links are kept as hard links (same inode number, data
stored once, in the first entry: the kernel's unpacker links the later names
to it), which matters for Mesa's megadriver (one 25 MB file, a dozen names).
Character/block devices and FIFOs are kept; sockets are skipped.
"""
import os
import stat
import sys


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    root = argv[1]
    owner_from_fs = "--owner-from-fs" in argv[2:]
    out = sys.stdout.buffer
    next_ino = [1000]
    links = {}  # (st_dev, st_ino) -> archive inode number

    def entry(name, mode, data=b"", rdev=(0, 0), nlink=1, uid=0, gid=0, ino=None):
        if ino is None:
            next_ino[0] += 1
            ino = next_ino[0]
        nm = name.encode() + b"\0"
        hdr = "070701" + "".join("%08X" % v for v in (
            ino, mode, uid, gid, nlink, 0, len(data), 0, 0, rdev[0], rdev[1], len(nm), 0))
        out.write(hdr.encode() + nm + b"\0" * ((4 - (110 + len(nm)) % 4) % 4))
        out.write(data)
        out.write(b"\0" * ((4 - len(data) % 4) % 4))

    paths = []
    for dp, dirs, files in os.walk(root):
        dirs.sort()
        for n in sorted(dirs + files):
            paths.append(os.path.join(dp, n))
    have_console = False
    for p in sorted(paths):
        rel = os.path.relpath(p, root)
        st = os.lstat(p)
        perm = stat.S_IMODE(st.st_mode)
        ids = dict(uid=st.st_uid, gid=st.st_gid) if owner_from_fs else {}
        if stat.S_ISLNK(st.st_mode):
            entry(rel, stat.S_IFLNK | 0o777, os.readlink(p).encode(), **ids)
        elif stat.S_ISDIR(st.st_mode):
            entry(rel, stat.S_IFDIR | perm, nlink=2, **ids)
        elif stat.S_ISREG(st.st_mode):
            if st.st_nlink > 1:
                key = (st.st_dev, st.st_ino)
                if key in links:  # a later name of a file already written
                    entry(rel, stat.S_IFREG | perm, nlink=st.st_nlink, ino=links[key], **ids)
                    continue
                next_ino[0] += 1
                links[key] = next_ino[0]
                with open(p, "rb") as f:
                    entry(rel, stat.S_IFREG | perm, f.read(), nlink=st.st_nlink,
                          ino=links[key], **ids)
                continue
            with open(p, "rb") as f:
                entry(rel, stat.S_IFREG | perm, f.read(), **ids)
        elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            kind = stat.S_IFCHR if stat.S_ISCHR(st.st_mode) else stat.S_IFBLK
            entry(rel, kind | perm, rdev=(os.major(st.st_rdev), os.minor(st.st_rdev)), **ids)
            have_console = have_console or rel == "dev/console"
        elif stat.S_ISFIFO(st.st_mode):
            entry(rel, stat.S_IFIFO | perm, **ids)
    if not have_console:
        entry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1))
    entry("TRAILER!!!", 0)
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
