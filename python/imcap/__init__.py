"""imcap: automatic image captions, a binding of libimcap (the C library of this project).

    import imcap
    cap = imcap.Captioner()                    # default model, its encoder found beside it
    cap.caption("photo.jpg")                   # -> "a brown dog runs through the grass"
    cap.describe(image, beam=5, n_best=3)      # -> [{"caption", "logprob", "score", "words", ...}]
    imcap.Encoder(path).embed(images)          # -> numpy float32 [n, dim]
    imcap.score(results, refs)                 # -> {"Bleu_1": .., "Bleu_4": .., "ROUGE_L": .., "CIDEr": ..}

An image is a path (str or os.PathLike), encoded bytes (JPEG, PNG, BMP) or a numpy uint8 array of
shape (height, width, 3) holding RGB pixels. Library failures raise imcap.Error carrying the library's
message (naming the file and the problem). Objects may be used from several threads at once: every
call into the library releases the GIL.
"""
import ctypes
import os
from ctypes import byref, c_char_p, c_float, c_int, c_size_t, c_void_p

import numpy as np

from . import _lib
from ._lib import lib

__all__ = ["Error", "Captioner", "Encoder", "score", "tokenize", "load_captions", "build_vocabulary",
           "default_model_path", "__version__"]

__version__ = lib.imcap_version().decode()


class Error(Exception):
    """A libimcap failure: .status is the imcap_status code, .status_name its name ("io error", ...),
    str(error) the library's message."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.status_name = lib.imcap_status_str(status).decode()


def _check(status):
    if status != 0:
        raise Error(status, lib.imcap_last_error().decode("utf-8", "replace"))


def _fs(path):
    return None if path is None else os.fsencode(path)


def _text(b):
    return b.decode("utf-8", "replace") if b is not None else None


def default_model_path():
    """The model Captioner() loads: $IMCAP_MODEL, ./models/default.imcap, or the one beside the
    library (the checkout's models/, or an installed share/imcap/models/)."""
    buf = ctypes.create_string_buffer(4096)
    _check(lib.imcap_default_model_path(buf, len(buf)))
    return os.fsdecode(buf.value)


# ------------------------------------------------------------------ images

def _array_image(a):
    """(imcap_image over the pixels of a, the contiguous array to keep alive)."""
    if a.dtype != np.uint8:
        raise TypeError("imcap: an image array must be uint8 RGB, not %s" % a.dtype)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError("imcap: an image array must have shape (height, width, 3), not %s" % (a.shape,))
    if a.shape[0] < 1 or a.shape[1] < 1 or a.shape[0] * a.shape[1] > 100000000:
        raise ValueError("imcap: image array of %d x %d pixels" % (a.shape[1], a.shape[0]))
    a = np.ascontiguousarray(a)
    img = _lib.Image(int(a.shape[1]), int(a.shape[0]),
                     a.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8)))
    return img, a


def _kind(image):
    if isinstance(image, (str, os.PathLike)):
        return "path"
    if isinstance(image, (bytes, bytearray, memoryview)):
        return "bytes"
    if isinstance(image, np.ndarray):
        return "array"
    raise TypeError("imcap: an image is a path, encoded bytes or a uint8 array of shape (h, w, 3), "
                    "not %s" % type(image).__name__)


class _Decoded:
    """Images decoded (or wrapped) as imcap_image structs; frees what the library allocated."""

    def __init__(self, images):
        self.structs = (_lib.Image * max(len(images), 1))()
        self._owned = []
        self._keep = []
        try:
            for i, image in enumerate(images):
                kind = _kind(image)
                if kind == "array":
                    img, keep = _array_image(image)
                    self.structs[i] = img
                    self._keep.append(keep)
                elif kind == "path":
                    _check(lib.imcap_image_load(_fs(image), byref(self.structs[i])))
                    self._owned.append(i)
                else:
                    data = bytes(image)
                    name = b"(bytes of image %d)" % i
                    _check(lib.imcap_image_decode(data, len(data), name, byref(self.structs[i])))
                    self._owned.append(i)
        except BaseException:
            self.close()
            raise

    def close(self):
        for i in self._owned:
            lib.imcap_image_free(byref(self.structs[i]))
        self._owned = []
        self._keep = []


# --------------------------------------------------------------- captioner

class _Object:
    """A library object: closed by close(), by the end of a with block or when collected. Calls may
    run on several threads at once, but close() must not race with them."""
    _h = None

    def close(self):
        if self._h is not None:
            self._free(self._h)
            self._h = None

    def __del__(self):
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _handle(self):
        if self._h is None:
            raise ValueError("imcap: the %s is closed" % self._what)
        return self._h


class Captioner(_Object):
    """A captioning model (docs/FORMATS.md "Captioner file") and its encoder.

    model: captioner file (None: default_model_path()); encoder: its encoder file (None: the file
    the model names, looked for in <model dir>/encoders/, <model dir>/ and models/encoders/)."""

    _what = "captioner"
    _free = staticmethod(lib.imcap_captioner_free)

    def __init__(self, model=None, encoder=None):
        handle = c_void_p()
        _check(lib.imcap_captioner_load(_fs(model), _fs(encoder), byref(handle)))
        self._h = handle
        self.model = os.fspath(model) if model is not None else default_model_path()
        self._vocab = None

    @property
    def encoder_name(self):
        return _text(lib.imcap_captioner_encoder_name(self._handle()))

    @property
    def encoder_path(self):
        return _text(lib.imcap_captioner_encoder_path(self._handle()))

    @property
    def embedding_size(self):
        return lib.imcap_captioner_embedding_size(self._handle())

    @property
    def gen_params(self):
        """The generation settings stored in the model (beam, temperature, seed, max_len, n_best,
        length_alpha)."""
        p = lib.imcap_captioner_gen_params(self._handle())
        return {f: getattr(p, f) for f, _ in _lib.GenParams._fields_}

    @property
    def vocabulary(self):
        """The model's words in index order (the four special tokens #END#, #PAD#, #START#, #UNK#
        included)."""
        if self._vocab is None:
            v = lib.imcap_captioner_vocab(self._handle())
            self._vocab = [lib.imcap_vocab_word(v, i).decode() for i in range(lib.imcap_vocab_size(v))]
        return list(self._vocab)

    def _params(self, beam, n_best, temperature, seed, max_len, length_alpha):
        """The model's settings with the given ones changed, as `imcap caption` does: sampling
        (temperature > 0) defaults to beam 1; n_best widens a default beam."""
        p = lib.imcap_captioner_gen_params(self._handle())
        if temperature is not None:
            p.temperature = float(temperature)
        if seed is not None:
            p.seed = int(seed)
        if max_len is not None:
            p.max_len = int(max_len)
        if length_alpha is not None:
            p.length_alpha = float(length_alpha)
        if beam is not None:
            p.beam = int(beam)
        elif p.temperature > 0:
            p.beam = 1
        p.n_best = 1 if n_best is None else int(n_best)
        if p.temperature == 0 and p.n_best > p.beam >= 1:
            if beam is not None and p.beam > 1:
                raise ValueError("imcap: n_best %d is more than beam %d" % (p.n_best, p.beam))
            p.beam = p.n_best
        _check(lib.imcap_gen_params_check(byref(p)))
        return p

    def describe(self, image, beam=None, n_best=None, temperature=None, seed=None, max_len=None,
                 length_alpha=None):
        """Captions of image, best first: a list of n_best dicts with "caption" (text), "logprob"
        (model log-probability), "score" (ranking score), "words" (list of words), "ended" (False
        when cut at max_len), and for attention models "attention": float32 [words, grid rows,
        grid cols], each word's weights over the image grid (summing to 1). Unset settings are the model's (greedy or beam search as it was made)."""
        p = self._params(beam, n_best, temperature, seed, max_len, length_alpha)
        h = self._handle()
        out = ctypes.POINTER(_lib.Caption)()
        kind = _kind(image)
        if kind == "path":
            _check(lib.imcap_caption_file(h, _fs(image), byref(p), byref(out)))
        elif kind == "bytes":
            data = bytes(image)
            _check(lib.imcap_caption_memory(h, data, len(data), b"(bytes)", byref(p), byref(out)))
        else:
            img, keep = _array_image(image)
            _check(lib.imcap_caption_image(h, byref(img), byref(p), byref(out)))
            del keep
        try:
            return [_alt_dict(out.contents, i) for i in range(out.contents.n_alt)]
        finally:
            lib.imcap_caption_free(out)

    def caption(self, image):
        """The best caption of image with the model's own settings."""
        return self.describe(image)[0]["caption"]

    def embed(self, image):
        """The embedding the decoder reads for image (numpy float32 [embedding_size])."""
        out = np.empty(self.embedding_size, dtype=np.float32)
        dec = _Decoded([image])
        try:
            _check(lib.imcap_captioner_embed(self._handle(), dec.structs, _floats(out)))
        finally:
            dec.close()
        return out


def _alt_dict(cap, i):
    a = cap.alt[i]
    text = _text(a.text)
    d = {"caption": text, "logprob": a.logprob, "score": a.score, "words": text.split(),
         "ended": bool(a.ended)}
    if _lib.HAS_ATTENTION and a.attention:
        rows, cols = cap.grid_rows, cap.grid_cols
        att = np.ctypeslib.as_array(a.attention, shape=(a.n_words * rows * cols,))
        d["attention"] = att.reshape(a.n_words, rows, cols).copy()
    return d


def _floats(arr):
    return arr.ctypes.data_as(ctypes.POINTER(c_float))


# ----------------------------------------------------------------- encoder

_EMBED_CHUNK = 32  # images decoded at a time by Encoder.embed

class Encoder(_Object):
    """An encoder model file (models/encoders/NAME.gguf): a CNN whose named outputs ("embedding",
    "logits", "mixed5", ...) are image features."""

    _what = "encoder"
    _free = staticmethod(lib.imcap_encoder_free)

    def __init__(self, path):
        handle = c_void_p()
        _check(lib.imcap_encoder_load(_fs(path), byref(handle)))
        self._h = handle
        self.path = os.fspath(path)

    @property
    def name(self):
        return _text(lib.imcap_encoder_name(self._handle()))

    @property
    def input_size(self):
        """(height, width) of the network input."""
        h, w = c_int(), c_int()
        lib.imcap_encoder_input_size(self._handle(), byref(h), byref(w))
        return h.value, w.value

    @property
    def outputs(self):
        h = self._handle()
        return [_text(lib.imcap_encoder_output_name(h, i)) for i in range(lib.imcap_encoder_n_outputs(h))]

    def output_size(self, output="embedding"):
        n = lib.imcap_encoder_output_size(self._handle(), output.encode())
        if n == 0:
            raise Error(_lib.IMCAP_E_ARG, lib.imcap_last_error().decode("utf-8", "replace"))
        return n

    def embed(self, images, output="embedding"):
        """Features of images (the rows `imcap extract` writes): one image gives a float32 array
        [dim]; a list of images (or an array [n, h, w, 3]) gives [n, dim]."""
        single = isinstance(images, (str, os.PathLike, bytes, bytearray, memoryview)) or (
            isinstance(images, np.ndarray) and images.ndim == 3)
        items = [images] if single else list(images)
        dim = self.output_size(output)
        out = np.empty((len(items), dim), dtype=np.float32)
        for first in range(0, len(items), _EMBED_CHUNK):  # bounded memory for decoded photos
            chunk = items[first:first + _EMBED_CHUNK]
            dec = _Decoded(chunk)
            try:
                _check(lib.imcap_encoder_embed(self._handle(), dec.structs, len(chunk), output.encode(),
                                               _floats(out[first:first + len(chunk)])))
            finally:
                dec.close()
        return out[0] if single else out


# ----------------------------------------------------------- text, metrics

def tokenize(text):
    """The recipe's tokenizer: lower-case words split on non-word characters."""
    toks = ctypes.POINTER(c_char_p)()
    n = c_size_t()
    _check(lib.imcap_tokenize(text.encode(), byref(toks), byref(n)))
    try:
        return [toks[i].decode() for i in range(n.value)]
    finally:
        _lib.libc.free(toks)


def _captions(path, split=None):
    h = c_void_p()
    _check(lib.imcap_captions_load(_fs(path), byref(h)))
    if split is None:
        return h
    sub = c_void_p()
    try:
        _check(lib.imcap_captions_restrict(h, _fs(split), byref(sub)))
    finally:
        lib.imcap_captions_free(h)
    return sub


def load_captions(path, split=None):
    """A caption file (Flickr8k CSV, token file or COCO JSON) as {image name: [captions]} in file
    order; with split (a split file), only its images, in split order."""
    h = _captions(path, split)
    try:
        out = {}
        for i in range(lib.imcap_captions_n_images(h)):
            out[lib.imcap_captions_image(h, i).decode()] = [
                lib.imcap_captions_text(h, i, k).decode() for k in range(lib.imcap_captions_count(h, i))]
        return out
    finally:
        lib.imcap_captions_free(h)


def build_vocabulary(path, split=None, min_count=5):
    """The words seen at least min_count times in the captions (of split), plus the four special
    tokens, in index order (the vocabulary `imcap train` builds)."""
    h = _captions(path, split)
    v = c_void_p()
    try:
        _check(lib.imcap_vocab_build(h, int(min_count), byref(v)))
    finally:
        lib.imcap_captions_free(h)
    try:
        return [lib.imcap_vocab_word(v, i).decode() for i in range(lib.imcap_vocab_size(v))]
    finally:
        lib.imcap_vocab_free(v)


def _result_pairs(results):
    if isinstance(results, dict):
        return list(results.items())
    pairs, seen = [], set()
    for r in results:
        if r["image_id"] in seen:
            raise ValueError("imcap.score: image %r has more than one result" % (r["image_id"],))
        seen.add(r["image_id"])
        pairs.append((r["image_id"], r["caption"]))
    return pairs


def _ref_map(refs):
    if isinstance(refs, dict) and "annotations" in refs:
        refs = refs["annotations"]
    if isinstance(refs, dict):
        return {k: [v] if isinstance(v, str) else list(v) for k, v in refs.items()}
    out = {}
    for a in refs:
        out.setdefault(a["image_id"], []).append(a["caption"])
    return out


def score(results, refs, tokenize=True):
    """COCO caption metrics (the toolkit's PTB tokenization, BLEU-1..4, ROUGE-L, CIDEr-D), no Java.

    results: {image_id: caption} or a COCO results list [{"image_id", "caption"}];
    refs: {image_id: [captions]}, a COCO annotation dict {"annotations": [...]} or its list.
    Every result image needs references. Returns {"Bleu_1", .., "Bleu_4", "ROUGE_L", "CIDEr"}."""
    pairs = _result_pairs(results)
    ref = _ref_map(refs)
    if not pairs:
        raise ValueError("imcap.score: no results")
    items = (_lib.ScoreItem * len(pairs))()
    keep = []
    for i, (image_id, caption) in enumerate(pairs):
        rs = ref.get(image_id)
        if not rs:
            raise ValueError("imcap.score: no reference captions for image %r" % (image_id,))
        arr = (c_char_p * len(rs))(*[r.encode() for r in rs])
        cand = caption.encode()
        keep += [arr, cand]
        items[i] = _lib.ScoreItem(cand, arr, len(rs))
    s = _lib.Scores()
    _check(lib.imcap_score(items, len(pairs), 1 if tokenize else 0, byref(s), None, None))
    values = list(s.bleu) + [s.rouge_l, s.cider_d]
    return {lib.imcap_metric_name(i).decode(): values[i] for i in range(_lib.IMCAP_N_METRICS)}
