#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz harnesses: spec/fuzz/corpus/<harness>/.

A handful of small valid files per reader, one per feature worth reaching
(each IDX dtype, gzip, CSV quoting and options, each image format, each
safetensors dtype), and a few edge cases. Run from the repository root:
    python3 spec/fuzz/gen_corpus.py
Only the standard library; the output is deterministic (gzip without a
timestamp), so re-running it changes nothing.
"""
import gzip
import json
import os
import shutil
import struct
import zlib

ROOT = os.path.join("spec", "fuzz", "corpus")
FIXTURES = os.path.join("spec", "fixtures")


def put(harness, name, data):
    d = os.path.join(ROOT, harness)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def gz(data):
    return gzip.compress(data, mtime=0)


# ---- IDX ----

def idx(code, shape, payload):
    return bytes([0, 0, code, len(shape)]) + b"".join(struct.pack(">I", n) for n in shape) + payload


def gen_idx():
    put("idx", "u8_labels", idx(0x08, [5], bytes([0, 1, 2, 9, 255])))
    put("idx", "u8_images", idx(0x08, [2, 3, 3], bytes(range(0, 180, 10))))
    put("idx", "u8_images.gz", gz(idx(0x08, [2, 3, 3], bytes(range(0, 180, 10)))))
    put("idx", "i8", idx(0x09, [4], struct.pack(">4b", -128, -1, 0, 127)))
    put("idx", "i16", idx(0x0B, [2, 2], struct.pack(">4h", -32768, -1, 1, 32767)))
    put("idx", "i32", idx(0x0C, [3], struct.pack(">3i", -2**31, 0, 2**31 - 1)))
    put("idx", "f32", idx(0x0D, [2, 1, 2], struct.pack(">4f", 1.5, -0.0, float("inf"), float("nan"))))
    put("idx", "f64", idx(0x0E, [2], struct.pack(">2d", 3.141592653589793, -1e300)))
    put("idx", "empty_dim", idx(0x08, [0, 28, 28], b""))
    put("idx", "eight_dims", idx(0x08, [1, 1, 1, 1, 1, 1, 2, 1], b"\x07\x08"))
    put("idx", "truncated", idx(0x08, [4, 4], bytes(10)))
    # The first two Fashion-MNIST test images when the dataset is installed.
    fm = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"
    if os.path.exists(fm):
        with gzip.open(fm) as f:
            f.read(16)
            put("idx", "fashion_2.gz", gz(idx(0x08, [2, 28, 28], f.read(2 * 28 * 28))))


# ---- CSV: a leading byte picks the options (see fuzz_csv.c) ----

def gen_csv():
    put("csv", "iris_defaults", b"\x00" + b"sepal_length,sepal_width,petal_length,petal_width,target\n"
        b"5.1,3.5,1.4,0.2,0\n4.9,3.0,1.4,0.2,0\n7.0,3.2,4.7,1.4,1\n6.3,3.3,6.0,2.5,2\n")
    with open(os.path.join(FIXTURES, "data", "quoting.csv"), "rb") as f:
        quoting = f.read()
    put("csv", "quoting_bom_crlf", b"\x00" + quoting)
    put("csv", "quoting.gz", b"\x00" + gz(quoting))
    put("csv", "string_labels_first", b"\x20" + b"x,y,kind\n1,2,cat\n3,4,dog\n5,6,cat\n7,8,emu\n")
    put("csv", "label_named_given", b"\x58" + b"label;a;b\r\na;1;2\r\nb;nan;-inf\r\n0;1e308;-1e-308\r\n")
    put("csv", "semicolon_first_col", b"\x09" + b"y;f1;f2\n1;0.5;0.25\n0;  7  ;\"8\"\n")
    put("csv", "tab_no_header", b"\x06" + b"1\t2\t3\n4\t5\t6\r7\t8\t9\r")
    put("csv", "pipe_no_label", b"\x13" + b"a|b\n1|2\n\n3|4\n")
    put("csv", "skip_line", b"\x80" + b"# a comment line\nf,label\n1,x\n2,y\n")
    put("csv", "quoted_newline", b"\x00" + b"\"a\nb\",\"c\"\"d\"\n1,2\n")
    put("csv", "ragged", b"\x00" + b"a,b,c\n1,2,3\n4,5\n")
    put("csv", "header_only", b"\x00" + b"a,b,c\n")


# ---- images ----

def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png(w, h, bits, ctype, rows):
    raw = b"".join(b"\x00" + r for r in rows)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bits, ctype, 0, 0, 0)) +
            png_chunk(b"IDAT", zlib.compress(raw, 9)) + png_chunk(b"IEND", b""))


def gen_image():
    src = os.path.join(FIXTURES, "images")
    for name in ["gray.png", "gray16.png", "rgb16.png", "rgba.png", "palette.png", "gray.jpg",
                 "progressive.jpg", "gray.bmp", "rgb.bmp", "rgb_rle.tga", "rgba.tga", "anim.gif"]:
        shutil.copyfile(os.path.join(src, name), os.path.join(ROOT, "image", name))
    put("image", "gray_1bit.png", png(3, 2, 1, 0, [b"\xa0", b"\x40"]))
    put("image", "gray_alpha_1x1.png", png(1, 1, 8, 4, [b"\x80\xff"]))
    put("image", "gray.pgm", b"P5\n3 2\n255\n" + bytes([0, 64, 128, 192, 255, 1]))
    put("image", "gray16.pgm", b"P5 2 1 65535 " + struct.pack(">2H", 0, 65535))
    put("image", "rgb.ppm", b"P6\n# comment\n2 1\n255\n" + bytes([255, 0, 0, 0, 0, 255]))
    put("image", "rgbe.hdr", b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 1 +X 2\n" + bytes([128, 64, 0, 129, 0, 0, 0, 0]))


# ---- safetensors ----

def safetensors(entries, meta=None, pad=0):
    """entries: (name, dtype, shape, raw bytes), stored in the order given."""
    header, data = {}, b""
    if meta is not None:
        header["__metadata__"] = meta
    for name, dt, shape, raw in entries:
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header, separators=(",", ":")).encode() + b" " * pad
    return struct.pack("<Q", len(h)) + h + data


def gen_safetensors():
    for name in ["torch_small.safetensors", "models_cnn.safetensors"]:
        shutil.copyfile(os.path.join(FIXTURES, name), os.path.join(ROOT, "safetensors", name))
    put("safetensors", "empty", safetensors([]))
    put("safetensors", "meta_only", safetensors([], {"format": "pt", "k\u00e9y": "v \\ \" \u263a"}))
    put("safetensors", "every_dtype", safetensors([
        ("a.bool", "BOOL", [3], b"\x00\x01\x01"),
        ("b.u8", "U8", [2], b"\x00\xff"),
        ("c.i8", "I8", [2], b"\x80\x7f"),
        ("d.u16", "U16", [1], struct.pack("<H", 65535)),
        ("e.i16", "I16", [1], struct.pack("<h", -32768)),
        ("f.u32", "U32", [1], struct.pack("<I", 2**32 - 1)),
        ("g.i32", "I32", [1], struct.pack("<i", -2**31)),
        ("h.f16", "F16", [4], struct.pack("<4H", 0x3C00, 0x7C00, 0x0001, 0xFE00)),
        ("i.bf16", "BF16", [2], struct.pack("<2H", 0x3F80, 0xFF80)),
        ("j.f32", "F32", [1, 2], struct.pack("<2f", 1.0, -2.5)),
        ("k.f64", "F64", [], struct.pack("<d", 0.1)),
        ("l.i64", "I64", [0, 4], b""),
    ]))
    put("safetensors", "padded_header", safetensors([("w", "F32", [2], struct.pack("<2f", 1, 2))], pad=6))
    # Escapes as the reference writer never makes them, and a surrogate pair.
    h = b'{"\\u00e9\\ud83d\\ude00\\n":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}'
    put("safetensors", "unicode_escape", struct.pack("<Q", len(h)) + h + b"\x05")


def main():
    if os.path.isdir(ROOT):
        shutil.rmtree(ROOT)
    for h in ["idx", "csv", "image", "safetensors"]:
        os.makedirs(os.path.join(ROOT, h), exist_ok=True)
    gen_idx()
    gen_csv()
    gen_image()
    gen_safetensors()


if __name__ == "__main__":
    main()
