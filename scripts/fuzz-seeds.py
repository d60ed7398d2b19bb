#!/usr/bin/python3
"""Writes the committed seed corpora of the text and image fuzzers into
tests/fuzz/seeds/<harness>/ (small files; model-file seeds are generated at
fuzz time by tests/fuzz/make_seeds.c). Run from the repository root:
/usr/bin/python3 scripts/fuzz-seeds.py"""
import io
import os

from PIL import Image

ROOT = "tests/fuzz/seeds"
SEP = b"\0IMCAP\0\0"


def put(harness, name, data):
    d = os.path.join(ROOT, harness)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def image(w, h, mode):
    img = Image.new(mode, (w, h))
    px = img.load()
    for y in range(h):
        for x in range(w):
            v = ((x * 37 + y * 11) % 256, (x * 5 + y * 53) % 256, (x * y) % 256, 200)
            px[x, y] = v[0] if mode in ("L", "P", "1") else v[: len(mode)]
    return img


def save(img, fmt, **kw):
    b = io.BytesIO()
    img.save(b, fmt, **kw)
    return b.getvalue()


put("image_jpeg", "rgb.jpg", save(image(9, 7, "RGB"), "JPEG", quality=80))
put("image_jpeg", "gray.jpg", save(image(8, 8, "L"), "JPEG"))
put("image_jpeg", "progressive.jpg", save(image(16, 5, "RGB"), "JPEG", progressive=True, subsampling=2))
put("image_jpeg", "cmyk.jpg", save(image(4, 4, "CMYK"), "JPEG"))
put("image_png", "rgb.png", save(image(9, 7, "RGB"), "PNG"))
put("image_png", "rgba.png", save(image(5, 6, "RGBA"), "PNG"))
put("image_png", "gray.png", save(image(7, 3, "L"), "PNG"))
put("image_png", "palette.png", save(image(6, 6, "RGB").convert("P", palette=Image.ADAPTIVE, colors=4), "PNG"))
put("image_png", "interlaced.png", save(image(10, 9, "RGB"), "PNG", interlace=1))
put("image_bmp", "rgb24.bmp", save(image(5, 4, "RGB"), "BMP"))
put("image_bmp", "gray8.bmp", save(image(6, 3, "L"), "BMP"))
put("image_bmp", "mono.bmp", save(image(9, 2, "1"), "BMP"))
put("image_bmp", "rgba32.bmp", save(image(3, 3, "RGBA"), "BMP"))
put("image_bmp", "pal4.bmp", save(image(7, 5, "RGB").convert("P", palette=Image.ADAPTIVE, colors=16), "BMP"))

put("captions", "flickr.csv", "\x00image,caption\n"
    "a.jpg,A dog runs .\n"
    "a.jpg,\"A dog, \"\"brown\"\", runs\"\r\n"
    "b.jpg,\"two\nlines\"\n")
put("captions", "tokens.txt", "\x01a.jpg#0\tA dog runs .\na.jpg#1\tThe dog\nb.jpg#0\tcafé au lait\n")
put("captions", "coco.json", "\x02" '{"images":[{"id":1,"file_name":"a.jpg"},{"id":"2","file_name":"b.jpg"}],'
    '"annotations":[{"image_id":1,"caption":"A dog runs."},{"image_id":"2","caption":"two\\u00e9"}]}')
put("split_vocab", "split.txt", "\x00a.jpg\n  b.jpg \r\n\n# c.jpg\n")
put("split_vocab", "vocab.txt", "\x01#END#\n#PAD#\n#START#\n#UNK#\na\ndog\n")

results = b'[{"image_id":1,"caption":"a dog runs"},{"image_id":"x2","caption":"A cat, sitting."}]'
refs = (b'{"annotations":[{"image_id":1,"caption":"A dog runs on grass."},{"image_id":1,"caption":"dog"},'
        b'{"image_id":"x2","caption":"a cat sits"},{"image_id":3,"caption":"unused"}]}')
put("score", "pair.json", results + SEP + refs)

with open("tests/data/tfjs_seq/model.json", "rb") as m, open("tests/data/tfjs_seq/weights.bin", "rb") as w:
    put("tfjs", "seq.json", m.read() + SEP + w.read())
