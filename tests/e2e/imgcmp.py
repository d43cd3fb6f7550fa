#!/usr/bin/env python3
"""Compare and inspect screendumps (PPM P6 or PNG), standard library only.

Usage:
  imgcmp.py compare A B [--diff OUT.png]
      Exit 0 when A and B have the same size and identical RGB pixels.
      Otherwise print the size mismatch, or the number of differing pixels and
      their bounding box, write OUT.png (A dimmed to grey, differing pixels red,
      the bounding box outlined in yellow) and exit 1. Exit 2 on a read error.
  imgcmp.py stats FILE [--min-colours N] [--min-foreground N] [--max-x0 N] [--max-y0 N]
      Print "WxH colours=C background=#rrggbb foreground=F bbox=x0,y0-x1,y1"
      (background = the most frequent colour, foreground = pixels of any other
      colour, bbox = their bounding box). Exit 1 when fewer than N distinct
      colours or fewer than N foreground pixels (e.g. a uniform screen), or
      when the foreground starts right of x N or below y N (text expected at
      the top left).
  imgcmp.py topng IN OUT.png
      Convert (to look at a PPM screendump).

QMP's screendump writes PPM by default (P6, maxval 255) or PNG with
"format": "png"; both are read here (PNG: 8-bit grey/RGB/RGBA, non-interlaced).
"""
import struct
import sys
import zlib
from collections import Counter


class Image:
    def __init__(self, width, height, rgb):
        self.width, self.height, self.rgb = width, height, bytes(rgb)
        assert len(self.rgb) == width * height * 3

    def row(self, y):
        stride = self.width * 3
        return self.rgb[y * stride:(y + 1) * stride]


def _ppm_tokens(data, count):
    """The first `count` header tokens of a PNM file and the body offset."""
    tokens, i = [], 0
    while len(tokens) < count:
        while i < len(data) and data[i:i + 1].isspace():
            i += 1
        if data[i:i + 1] == b"#":
            while i < len(data) and data[i:i + 1] not in (b"\n", b"\r"):
                i += 1
            continue
        j = i
        while j < len(data) and not data[j:j + 1].isspace():
            j += 1
        if j == i:
            raise ValueError("truncated PPM header")
        tokens.append(data[i:j])
        i = j
    return tokens, i + 1  # exactly one whitespace byte after maxval


def read_ppm(data):
    (magic, w, h, maxval), off = _ppm_tokens(data, 4)
    if magic != b"P6":
        raise ValueError(f"unsupported PNM type {magic!r} (want P6)")
    w, h, maxval = int(w), int(h), int(maxval)
    if maxval != 255:
        raise ValueError(f"unsupported PPM maxval {maxval}")
    body = data[off:off + w * h * 3]
    if len(body) != w * h * 3:
        raise ValueError("truncated PPM body")
    return Image(w, h, body)


def read_png(data):
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    i, idat, ihdr = 8, [], None
    while i < len(data):
        length, ctype = struct.unpack(">I4s", data[i:i + 8])
        chunk = data[i + 8:i + 8 + length]
        i += 12 + length
        if ctype == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", chunk)
        elif ctype == b"IDAT":
            idat.append(chunk)
        elif ctype == b"IEND":
            break
    if ihdr is None:
        raise ValueError("PNG without IHDR")
    w, h, depth, ctype, _, _, interlace = ihdr
    channels = {0: 1, 2: 3, 6: 4, 4: 2}.get(ctype)
    if depth != 8 or channels is None or interlace:
        raise ValueError(f"unsupported PNG (depth {depth}, colour type {ctype}, interlace {interlace})")
    raw = zlib.decompress(b"".join(idat))
    bpp, stride = channels, w * channels
    out, prev, pos = bytearray(), bytearray(stride), 0
    for _ in range(h):
        ftype, line = raw[pos], bytearray(raw[pos + 1:pos + 1 + stride])
        pos += 1 + stride
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            if ftype == 1:
                line[x] = (line[x] + a) & 255
            elif ftype == 2:
                line[x] = (line[x] + b) & 255
            elif ftype == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif ftype == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[x] = (line[x] + pred) & 255
            elif ftype != 0:
                raise ValueError(f"bad PNG filter {ftype}")
        prev = line
        if channels == 3:
            out += line
        else:
            for x in range(w):
                px = line[x * channels:(x + 1) * channels]
                out += bytes((px[0],) * 3) if channels <= 2 else px[:3]
    return Image(w, h, out)


def read_image(path):
    with open(path, "rb") as f:
        data = f.read()
    return read_png(data) if data[:4] == b"\x89PNG" else read_ppm(data)


def write_png(path, img):
    stride = img.width * 3
    raw = b"".join(b"\0" + img.rgb[y * stride:(y + 1) * stride] for y in range(img.height))

    def chunk(ctype, body):
        return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body))

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", img.width, img.height, 8, 2, 0, 0, 0)))
        f.write(chunk(b"IDAT", zlib.compress(raw, 6)))
        f.write(chunk(b"IEND", b""))


def pixels(img):
    rgb = img.rgb
    return (rgb[i:i + 3] for i in range(0, len(rgb), 3))


def stats(img):
    counts = Counter(pixels(img))
    bg, _ = counts.most_common(1)[0]
    fg = img.width * img.height - counts[bg]
    x0, y0, x1, y1 = img.width, img.height, -1, -1
    if fg:
        bgrow = bg * img.width
        for y in range(img.height):
            row = img.row(y)
            if row == bgrow:
                continue
            y0, y1 = min(y0, y), y
            xs = [x for x in range(img.width) if row[x * 3:x * 3 + 3] != bg]
            x0, x1 = min(x0, xs[0]), max(x1, xs[-1])
    return len(counts), bg, fg, (x0, y0, x1, y1)


def compare(a, b, diff_path):
    if (a.width, a.height) != (b.width, b.height):
        print(f"size differs: {a.width}x{a.height} vs {b.width}x{b.height}")
        return 1
    if a.rgb == b.rgb:
        print(f"identical: {a.width}x{a.height}")
        return 0
    count, diff = 0, set()
    x0, y0, x1, y1 = a.width, a.height, -1, -1
    for y in range(a.height):
        ra, rb = a.row(y), b.row(y)
        if ra == rb:
            continue
        for x in range(a.width):
            if ra[x * 3:x * 3 + 3] != rb[x * 3:x * 3 + 3]:
                count += 1
                diff.add((x, y))
                x0, y0, x1, y1 = min(x0, x), min(y0, y), max(x1, x), max(y1, y)
    print(f"{count} of {a.width * a.height} pixels differ; bounding box "
          f"x {x0}..{x1}, y {y0}..{y1} ({x1 - x0 + 1}x{y1 - y0 + 1})")
    if diff_path:
        out = bytearray()
        for y in range(a.height):
            for x in range(a.width):
                if (x, y) in diff:
                    out += b"\xff\x00\x00"
                elif (x in (x0, x1) and y0 <= y <= y1) or (y in (y0, y1) and x0 <= x <= x1):
                    out += b"\xff\xff\x00"
                else:
                    r, g, bb = a.rgb[(y * a.width + x) * 3:(y * a.width + x) * 3 + 3]
                    v = (r * 3 + g * 6 + bb) // 40  # dimmed luminance
                    out += bytes((v, v, v))
        write_png(diff_path, Image(a.width, a.height, out))
        print(f"diff image: {diff_path}")
    return 1


def main(argv):
    args = argv[1:]
    try:
        if len(args) >= 3 and args[0] == "compare":
            diff = None
            if len(args) == 5 and args[3] == "--diff":
                diff = args[4]
            elif len(args) != 3:
                raise SystemExit(__doc__)
            return compare(read_image(args[1]), read_image(args[2]), diff)
        if len(args) >= 2 and args[0] == "stats":
            img = read_image(args[1])
            opts = dict(zip(args[2::2], map(int, args[3::2])))
            colours, bg, fg, (x0, y0, x1, y1) = stats(img)
            bbox = f"{x0},{y0}-{x1},{y1}" if fg else "none"
            print(f"{img.width}x{img.height} colours={colours} background=#{bg.hex()} "
                  f"foreground={fg} bbox={bbox}")
            ok = (colours >= opts.get("--min-colours", 0) and fg >= opts.get("--min-foreground", 0)
                  and x0 <= opts.get("--max-x0", img.width) and y0 <= opts.get("--max-y0", img.height))
            return 0 if ok else 1
        if len(args) == 3 and args[0] == "topng":
            write_png(args[2], read_image(args[1]))
            return 0
    except (OSError, ValueError) as exc:
        print(f"imgcmp.py: {exc}", file=sys.stderr)
        return 2
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
