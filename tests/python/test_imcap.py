"""pytest tests of the Python binding (python/imcap) on the checkout's build/libimcap.so.0:
the same captions as the CLI, every input kind, the encoder, the COCO metrics against the toolkit's
published values, errors, threads (GIL released), and `pip install ./python` offline.
Run from the repository root by tests/suites/python.sh (Debian's /usr/bin/python3 -m pytest)."""
import ctypes
import io
import json
import os
import pathlib
import shutil
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "python"))
import imcap  # noqa: E402

CLI = ROOT / "build" / "imcap"
PHOTOS = [ROOT / "data/images" / n for n in ("owl.jpg", "parrot.jpg", "hot_dog.jpg", "pets.jpg",
                                              "grace_hopper.bmp")]
MODEL = ROOT / "models/default.imcap"

needs_model = pytest.mark.skipif(
    not (MODEL.exists() and PHOTOS[0].exists() and any((ROOT / "models/encoders").glob("*.gguf"))),
    reason="default model, converted encoders or sample photos not set up (./setup.sh)")


@pytest.fixture(scope="module")
def cap():
    c = imcap.Captioner(str(MODEL))
    yield c
    c.close()


def cli_json(*args):
    out = subprocess.run([str(CLI), "caption", "--json", *args], check=True, capture_output=True,
                         text=True, cwd=ROOT).stdout
    return json.loads(out)


# ------------------------------------------------------------------ captions

@needs_model
def test_caption_same_as_cli(cap):
    out = subprocess.run([str(CLI), "caption", *map(str, PHOTOS)], check=True, capture_output=True,
                         text=True, cwd=ROOT).stdout.splitlines()
    cli = dict(line.split("\t", 1) for line in out)
    for p in PHOTOS:
        assert cap.caption(str(p)) == cli[str(p)]


@needs_model
@pytest.mark.parametrize("settings,args", [
    (dict(beam=4, n_best=2), ["--beam", "4", "--n-best", "2"]),
    (dict(temperature=0.8, seed=3, n_best=2), ["--temperature", "0.8", "--seed", "3", "--n-best", "2"]),
    (dict(max_len=4), ["--max-len", "4"]),
    (dict(beam=1), ["--beam", "1"]),
])
def test_describe_same_as_cli(cap, settings, args):
    cli = cli_json(*args, *map(str, PHOTOS[:2]))
    for p, c in zip(PHOTOS[:2], cli):
        alts = cap.describe(str(p), **settings)
        assert len(alts) == len(c["alternatives"])
        for a, b in zip(alts, c["alternatives"]):
            assert a["caption"] == b["caption"]
            assert a["logprob"] == pytest.approx(b["logprob"], abs=1e-9)
            assert a["score"] == pytest.approx(b["score"], abs=1e-9)
            assert a["words"] == b["caption"].split() and len(a["words"]) == b["words"]
            assert a["ended"] == b["ended"]
    if "max_len" in settings:
        assert all(len(a["words"]) <= 4 for a in cap.describe(str(PHOTOS[0]), **settings))


@needs_model
def test_describe_defaults_are_the_models(cap):
    g = cap.gen_params
    assert g["beam"] >= 1 and g["max_len"] >= 1
    alts = cap.describe(PHOTOS[1])
    assert len(alts) == 1 and alts[0]["caption"] == cap.caption(PHOTOS[1])
    # A different seed samples differently somewhere among a few draws; the same seed repeats.
    a = [x["caption"] for x in cap.describe(PHOTOS[0], temperature=1.5, seed=7, n_best=4)]
    assert a == [x["caption"] for x in cap.describe(PHOTOS[0], temperature=1.5, seed=7, n_best=4)]
    assert a != [x["caption"] for x in cap.describe(PHOTOS[0], temperature=1.5, seed=8, n_best=4)]


def pixels(path):
    from PIL import Image
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def same_alts(a, b):
    """describe() results equal, numpy arrays (attention maps) included."""
    return len(a) == len(b) and all(
        x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) if isinstance(x[k], np.ndarray) else x[k] == y[k]
                                     for k in x) for x, y in zip(a, b))


def decoder_output(cap, enc):
    """The encoder output the captioner's decoder reads: the pooled vector, or the grid (attention)."""
    return "embedding" if enc.output_size("embedding") == cap.embedding_size else "grid"


@needs_model
def test_every_input_kind_gives_the_same_caption(cap):
    bmp = PHOTOS[4]                       # lossless: PIL's pixels are the file's
    ref = cap.describe(str(bmp), beam=3, n_best=2)
    arr = pixels(bmp)
    png = io.BytesIO()
    from PIL import Image
    Image.fromarray(arr).save(png, format="PNG")
    kinds = [bmp, bmp.read_bytes(), bytearray(bmp.read_bytes()), memoryview(bmp.read_bytes()), arr,
             png.getvalue(), np.asfortranarray(arr), arr[::-1][::-1]]
    for k in kinds:
        got = cap.describe(k, beam=3, n_best=2)
        assert [g["caption"] for g in got] == [r["caption"] for r in ref], type(k)
        assert [g["logprob"] for g in got] == pytest.approx([r["logprob"] for r in ref], abs=1e-9)
    # A strided (non-contiguous) view is its own image: same as its copy.
    flipped = arr[:, ::-1]
    assert same_alts(cap.describe(flipped), cap.describe(np.ascontiguousarray(flipped)))
    # JPEG: the path and the encoded bytes agree.
    assert cap.caption(PHOTOS[0]) == cap.caption(PHOTOS[0].read_bytes())


@needs_model
def test_default_model_and_vocabulary(cap):
    assert pathlib.Path(imcap.default_model_path()).resolve() == MODEL.resolve()
    d = imcap.Captioner()
    assert d.caption(PHOTOS[2]) == cap.caption(PHOTOS[2])
    d.close()
    words = cap.vocabulary
    assert words[:4] == ["#END#", "#PAD#", "#START#", "#UNK#"] and "dog" in words
    assert words == sorted(words, key=lambda w: w.encode())
    for a in cap.describe(PHOTOS[0], beam=5, n_best=5):
        assert set(a["words"]) <= set(words[4:])


# ----------------------------------------------------------------- attention

ENC_EDGETPU = ROOT / "models/encoders/mobilenet_edgetpu_224_1.0_uint8.gguf"


def run_cli(*args):
    r = subprocess.run([str(CLI), *map(str, args)], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.fixture(scope="module")
def attention_model(tmp_path_factory):
    """A tiny attention captioner made with the CLI (grid embeddings of 24 training photos, a few
    batches), when this build has attention decoders (issue 10)."""
    from imcap import _lib
    if not _lib.HAS_ATTENTION:
        pytest.skip("this build's caption results have no attention maps (imcap_caption_alt.attention)")
    flickr = ROOT / "data/flickr8k"
    if not (ENC_EDGETPU.exists() and (flickr / "train.txt").exists()):
        pytest.skip("MobileNet-EdgeTPU encoder or Flickr8k not set up")
    d = tmp_path_factory.mktemp("attention")
    (d / "list.txt").write_text("\n".join((flickr / "train.txt").read_text().split()[:24]) + "\n")
    run_cli("extract", "--encoder", ENC_EDGETPU, "--images", flickr / "images", "--list", d / "list.txt",
            "--output", "grid", "--out", d / "grid.emb")
    run_cli("train", "--embeddings", d / "grid.emb", "--captions", flickr / "captions.csv", "--train-split",
            d / "list.txt", "--decoder", "attention", "--epochs", "1", "--batches", "3", "--batch", "8",
            "--min-count", "2", "--img-hidden", "8", "--hidden", "16", "--embed", "8", "--out-hidden", "8",
            "--att-size", "8", "--checkpoint", d / "dec.gguf", "--quiet")
    run_cli("export", "--checkpoint", d / "dec.gguf", "--encoder", ENC_EDGETPU, "--output", "grid",
            "--out", d / "att.imcap")
    return d / "att.imcap"


@needs_model
def test_attention_maps_exactly_for_attention_models(cap):
    """The default is an attention model (ResNet-50 grid): maps per word; pooled models give none."""
    attends = decoder_output(cap, imcap.Encoder(cap.encoder_path)) == "grid"
    for a in cap.describe(PHOTOS[0], beam=3, n_best=3):
        assert ("attention" in a) == attends
        if attends:
            assert a["attention"].shape[0] == len(a["words"])
            np.testing.assert_allclose(a["attention"].sum(axis=(1, 2)), 1, atol=1e-4)


def test_describe_gives_attention_maps(attention_model):
    c = imcap.Captioner(attention_model)
    alts = c.describe(PHOTOS[0], beam=2, n_best=2)
    cli = cli_json("--model", str(attention_model), "--beam", "2", "--n-best", "2", str(PHOTOS[0]))[0]
    rows, cols = cli["grid"]
    assert len(alts) == len(cli["alternatives"]) == 2
    for a, b in zip(alts, cli["alternatives"]):
        assert a["caption"] == b["caption"]
        att = a["attention"]
        assert att.dtype == np.float32 and att.shape == (len(a["words"]), rows, cols)
        np.testing.assert_allclose(att.sum(axis=(1, 2)), 1, atol=1e-4)
        assert [w["word"] for w in b["attention"]] == a["words"]
        np.testing.assert_allclose(att.reshape(len(a["words"]), -1), [w["weights"] for w in b["attention"]],
                                   rtol=0, atol=1e-6)


def test_struct_layouts_are_checked():
    from imcap import _lib
    for name, cls in [("imcap_caption_alt", _lib.CaptionAlt), ("imcap_caption", _lib.Caption),
                      ("imcap_gen_params", _lib.GenParams), ("imcap_image", _lib.Image),
                      ("imcap_scores", _lib.Scores), ("imcap_score_item", _lib.ScoreItem)]:
        assert ctypes.sizeof(cls) == _lib.lib.imcap_abi_sizeof(name.encode())
    with pytest.raises(ImportError, match="imcap_caption_alt"):
        _lib._struct("imcap_caption_alt", [("text", ctypes.c_char_p)])


# ------------------------------------------------------------------- encoder

@needs_model
def test_encoder_embed(cap):
    enc = imcap.Encoder(cap.encoder_path)
    out = decoder_output(cap, enc)
    assert "embedding" in enc.outputs and enc.output_size(out) == cap.embedding_size
    h, w = enc.input_size
    assert h > 0 and w > 0
    many = enc.embed([str(p) for p in PHOTOS], output=out).reshape(len(PHOTOS), -1)
    assert many.shape == (len(PHOTOS), cap.embedding_size) and many.dtype == np.float32
    assert np.isfinite(many).all()
    for i, p in enumerate(PHOTOS):
        one = enc.embed(p, output=out).reshape(-1)
        assert one.shape == (cap.embedding_size,)
        np.testing.assert_allclose(one, many[i], rtol=0, atol=1e-5)
        np.testing.assert_allclose(cap.embed(p), one, rtol=0, atol=1e-5)
    assert np.abs(many[0] - many[1]).max() > 1e-3
    arr = pixels(PHOTOS[4])
    batch = enc.embed(np.stack([arr, arr[::-1].copy()]), output=out).reshape(2, -1)
    np.testing.assert_allclose(batch[0], many[4], rtol=0, atol=1e-5)
    big = enc.embed([arr] * 33 + [PHOTOS[0]], output=out).reshape(34, -1)  # more than one chunk of decoded images
    np.testing.assert_allclose(big[:33], np.repeat(many[4:5], 33, axis=0), rtol=0, atol=1e-5)
    np.testing.assert_allclose(big[33], many[0], rtol=0, atol=1e-5)
    logits = enc.embed([PHOTOS[0].read_bytes()], output="logits")
    assert logits.shape == (1, enc.output_size("logits"))
    assert enc.embed([], output=out).shape == (0, cap.embedding_size)
    with pytest.raises(imcap.Error, match="no output 'mixed5'"):
        enc.embed(PHOTOS[0], output="mixed5")


# ------------------------------------------------------------------- metrics

FAKECAP = ROOT / "data/coco-fakecap/refs_tokenized.json"


@pytest.mark.skipif(not FAKECAP.exists(), reason="data/coco-fakecap not set up")
def test_score_reproduces_the_toolkit():
    items = json.loads(FAKECAP.read_text())
    results = {r["image_id"]: r["test"] for r in items}
    refs = {r["image_id"]: r["refs"] for r in items}
    published = {"Bleu_1": 0.5793996, "Bleu_2": 0.4043913, "Bleu_3": 0.2785364, "Bleu_4": 0.1908290,
                 "ROUGE_L": 0.3962527, "CIDEr": 0.5997905}  # data/coco-fakecap/EXPECTED.md
    s = imcap.score(results, refs, tokenize=False)
    assert set(s) == set(published)
    for k, v in published.items():
        assert s[k] == pytest.approx(v, abs=6e-8), k


@pytest.mark.skipif(not FAKECAP.exists(), reason="data/coco-fakecap not set up")
def test_score_same_as_cli(tmp_path):
    """Raw captions (PTB tokenization on): COCO-style lists and dicts give what `imcap score` prints."""
    raw = json.loads((FAKECAP.parent / "results.json").read_text())
    refs = {r["image_id"]: r["refs"] for r in json.loads(FAKECAP.read_text())}
    ann = {"annotations": [{"image_id": k, "caption": c} for k, v in refs.items() for c in v]}
    (tmp_path / "refs.json").write_text(json.dumps(ann))
    cli = json.loads(subprocess.run(
        [str(CLI), "score", "--results", str(FAKECAP.parent / "results.json"), "--refs",
         str(tmp_path / "refs.json"), "--json"], check=True, capture_output=True, text=True).stdout)
    got = imcap.score(raw, ann)
    assert got == imcap.score({r["image_id"]: r["caption"] for r in raw}, refs)
    for k, v in got.items():
        assert v == pytest.approx(cli[k], abs=1e-12), k


def test_score_errors():
    with pytest.raises(ValueError, match="no reference captions for image 'b'"):
        imcap.score({"a": "a dog", "b": "a cat"}, {"a": ["a dog runs"]})
    with pytest.raises(ValueError, match="more than one result"):
        imcap.score([{"image_id": 1, "caption": "x"}, {"image_id": 1, "caption": "y"}], {1: ["x"]})
    with pytest.raises(ValueError, match="no results"):
        imcap.score({}, {})


def test_tokenize_and_captions(tmp_path):
    assert imcap.tokenize("A Dog's  ball, RUNS!") == ["a", "dog", "s", "ball", "runs"]
    csv = tmp_path / "c.csv"
    csv.write_text('image,caption\n1.jpg,A dog runs\n1.jpg,"The dog, running"\n2.jpg,a cat\n')
    assert imcap.load_captions(csv) == {"1.jpg": ["A dog runs", "The dog, running"], "2.jpg": ["a cat"]}
    assert imcap.build_vocabulary(csv, min_count=2) == ["#END#", "#PAD#", "#START#", "#UNK#", "a", "dog"]
    split = tmp_path / "s.txt"
    split.write_text("2.jpg\n")
    assert imcap.load_captions(csv, split) == {"2.jpg": ["a cat"]}
    bad = tmp_path / "bad.csv"
    bad.write_text('image,caption\n1.jpg,"unterminated\n')
    with pytest.raises(imcap.Error, match="bad.csv"):
        imcap.load_captions(bad)


@needs_model
def test_vocabulary_as_cli(tmp_path, cap):
    caps, train = ROOT / "data/flickr8k/captions.csv", ROOT / "data/flickr8k/train.txt"
    if not caps.exists():
        pytest.skip("data/flickr8k not set up")
    out = tmp_path / "v.txt"
    subprocess.run([str(CLI), "vocab", "--captions", str(caps), "--split", str(train), "--out", str(out)],
                   check=True, capture_output=True)
    assert imcap.build_vocabulary(caps, train) == out.read_text().split("\n")[:-1]


# -------------------------------------------------------------------- errors

@needs_model
def test_errors_raise_with_the_librarys_message(cap, tmp_path):
    with pytest.raises(imcap.Error, match="nope.jpg") as e:
        cap.caption(tmp_path / "nope.jpg")
    assert e.value.status_name == "i/o error"
    with pytest.raises(imcap.Error, match="not a JPEG, PNG or BMP|unknown|format") as e:
        cap.caption(b"this is not an image")
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"\xff\xd8\xff\xe0" + b"\0" * 40)
    with pytest.raises(imcap.Error, match="junk.jpg"):
        cap.caption(junk)
    with pytest.raises(imcap.Error, match="beam"):
        cap.describe(PHOTOS[0], beam=0)
    with pytest.raises(imcap.Error, match="temperature"):
        cap.describe(PHOTOS[0], beam=3, temperature=0.5)
    with pytest.raises(ValueError, match="n_best 4 is more than beam 2"):
        cap.describe(PHOTOS[0], beam=2, n_best=4)
    with pytest.raises(TypeError, match="uint8"):
        cap.caption(np.zeros((8, 8, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="shape"):
        cap.caption(np.zeros((8, 8), dtype=np.uint8))
    with pytest.raises(ValueError, match="pixels"):
        cap.caption(np.zeros((0, 8, 3), dtype=np.uint8))
    with pytest.raises(TypeError, match="not int"):
        cap.caption(42)
    with pytest.raises(imcap.Error, match="missing.imcap"):
        imcap.Captioner(tmp_path / "missing.imcap")
    with pytest.raises(imcap.Error, match="missing.gguf"):
        imcap.Encoder(tmp_path / "missing.gguf")
    with pytest.raises(imcap.Error, match="x.gguf: cannot open"):
        imcap.Captioner(MODEL, tmp_path / "x.gguf")
    closed = imcap.Captioner(MODEL)
    closed.close()
    with pytest.raises(ValueError, match="closed"):
        closed.caption(PHOTOS[0])


def test_missing_default_model_is_an_error(tmp_path):
    env = dict(os.environ, IMCAP_MODEL=str(tmp_path / "none.imcap"))
    code = "import imcap\ntry:\n imcap.Captioner()\nexcept imcap.Error as e:\n print(e)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         cwd=ROOT / "python", check=True).stdout
    assert "none.imcap" in out


# ------------------------------------------------------------------- threads

@needs_model
def test_threads_give_the_serial_results(cap):
    serial = {p: cap.describe(p, beam=3, n_best=2) for p in PHOTOS}
    results, errors = {}, []

    def work(k):
        try:
            for p in PHOTOS[k:] + PHOTOS[:k]:
                results[(k, p)] = cap.describe(p, beam=3, n_best=2)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for (k, p), r in results.items():
        assert same_alts(r, serial[p])
    assert len(results) == 4 * len(PHOTOS)


@needs_model
def test_the_gil_is_released_during_work(cap):
    """While one thread is inside a long library call, another Python thread keeps running."""
    enc = imcap.Encoder(cap.encoder_path)
    imgs = [pixels(PHOTOS[4])] * 24
    span = []
    started = threading.Event()

    def work():
        started.set()
        t0 = time.monotonic()
        enc.embed(imgs)
        span.append((t0, time.monotonic()))

    t = threading.Thread(target=work)
    ticks = []
    t.start()
    started.wait()
    while t.is_alive():
        ticks.append(time.monotonic())
        sum(range(2000))  # pure Python work, needs the GIL
    t.join()
    t0, t1 = span[0]
    inner = [x for x in ticks if t0 + 0.1 * (t1 - t0) < x < t1 - 0.1 * (t1 - t0)]
    assert t1 - t0 > 0.05
    assert len(inner) >= 10, "main thread ran %d times during a %.2f s call" % (len(inner), t1 - t0)


# ------------------------------------------------------------- pip install

@needs_model
@pytest.mark.parametrize("where", ["target", "venv"])
def test_pip_install_offline_works(tmp_path, where):
    """`pip install --no-build-isolation --no-deps ./python` with no index (offline), into a --target
    folder or a virtual environment over Debian's packages; the installed copy captions."""
    src = tmp_path / "src"
    shutil.copytree(ROOT / "python", src, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
    py, env = sys.executable, dict(os.environ, LD_LIBRARY_PATH=str(ROOT / "build"))
    env.pop("IMCAP_LIBRARY", None)
    env.pop("PYTHONPATH", None)
    if where == "target":
        site = tmp_path / "site"
        extra = ["--target", str(site)]
        env["PYTHONPATH"] = str(site)
    else:
        venv = tmp_path / "venv"
        subprocess.run([py, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True)
        py, extra = str(venv / "bin" / "python"), []
        site = venv
    r = subprocess.run([py, "-m", "pip", "install", "--no-build-isolation", "--no-deps", "--no-index",
                        *extra, str(src)], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    code = ("import imcap, sys; print(imcap.__file__); print(imcap.__version__); "
            "print(imcap.Captioner(sys.argv[1]).caption(sys.argv[2]))")
    out = subprocess.run([py, "-c", code, str(MODEL), str(PHOTOS[0])], env=env,
                         capture_output=True, text=True, cwd=tmp_path, check=True).stdout.splitlines()
    assert out[0].startswith(str(site))
    assert out[1] == imcap.__version__
    assert out[2] == imcap.Captioner(MODEL).caption(PHOTOS[0])
