"""ctypes declarations of the libimcap functions the binding calls (include/imcap.h).

ctypes releases the GIL around every foreign call, so captioning and embedding on several Python
threads run in parallel in C (the library is safe for concurrent calls on one loaded model).
"""
import ctypes
import os
from ctypes import (POINTER, Structure, c_char_p, c_double, c_float, c_int, c_int32, c_size_t,
                    c_uint8, c_uint64, c_void_p)
from pathlib import Path

SONAME = "libimcap.so.0"


def _candidates():
    env = os.environ.get("IMCAP_LIBRARY")
    if env:
        return [env]
    # A checkout: python/imcap/_lib.py -> <repo>/build/libimcap.so.0 (make).
    build = Path(__file__).resolve().parents[2] / "build" / SONAME
    out = [str(build)] if build.exists() else []
    return out + [SONAME]  # the dynamic loader's search (make install; LD_LIBRARY_PATH)


def _load():
    errors = []
    for name in _candidates():
        try:
            return ctypes.CDLL(name)
        except OSError as e:
            errors.append(str(e))
    raise ImportError("imcap: cannot load the shared library (%s); build it with `make` in the "
                      "repository, install it with `make install`, or set IMCAP_LIBRARY"
                      % "; ".join(errors))


lib = _load()
libc = ctypes.CDLL(None)
libc.free.argtypes = [c_void_p]
libc.free.restype = None

lib.imcap_abi_sizeof.argtypes = [c_char_p]
lib.imcap_abi_sizeof.restype = c_size_t


def _struct(c_name, *layouts):
    """The ctypes mirror of public struct c_name: the first of the known layouts (field lists,
    oldest first) whose size is the library's sizeof; ImportError when none fits (a binding out of
    date with its library must not read garbage)."""
    want = lib.imcap_abi_sizeof(c_name.encode())
    for fields in layouts:
        cls = type(c_name, (Structure,), {"_fields_": fields})
        if ctypes.sizeof(cls) == want:
            return cls
    raise ImportError("imcap: this binding does not know the library's layout of %s (%d bytes; the binding's "
                      "are %s): update python/imcap with include/imcap.h"
                      % (c_name, want, [ctypes.sizeof(type("t", (Structure,), {"_fields_": f})) for f in layouts]))


Image = _struct("imcap_image", [("w", c_int), ("h", c_int), ("rgb", POINTER(c_uint8))])
# The model's settings are copied whole from imcap_captioner_gen_params and only these fields are
# changed, so fields a newer library adds in the tail padding keep the model's values.
GenParams = _struct("imcap_gen_params", [("beam", c_int), ("temperature", c_float), ("seed", c_uint64),
                                          ("max_len", c_int), ("n_best", c_int), ("length_alpha", c_float)])
_ALT = [("text", c_char_p), ("logprob", c_double), ("score", c_double), ("n_words", c_int), ("ended", c_int)]
# Attention decoders add per-word weights over the grid (alt.attention [n_words][grid_rows * grid_cols],
# NULL for other models; caption.grid_rows, grid_cols).
CaptionAlt = _struct("imcap_caption_alt", _ALT, _ALT + [("attention", POINTER(c_float))])
_CAP = [("n_alt", c_int), ("alt", POINTER(CaptionAlt)), ("t_decode", c_double), ("t_encode", c_double),
        ("t_generate", c_double)]
Caption = _struct("imcap_caption", _CAP, _CAP + [("grid_rows", c_int), ("grid_cols", c_int)])
ScoreItem = _struct("imcap_score_item", [("candidate", c_char_p), ("refs", POINTER(c_char_p)),
                                          ("n_refs", c_size_t)])
Scores = _struct("imcap_scores", [("bleu", c_double * 4), ("rouge_l", c_double), ("cider_d", c_double),
                                  ("n_images", c_size_t), ("bleu_testlen", c_uint64),
                                  ("bleu_reflen", c_uint64), ("bleu_guess", c_uint64 * 4),
                                  ("bleu_correct", c_uint64 * 4)])
HAS_ATTENTION = any(f == "attention" for f, _ in CaptionAlt._fields_)

_P = c_void_p  # opaque objects
_S = c_int     # imcap_status

_SIGNATURES = {
    "imcap_version": ([], c_char_p),
    "imcap_last_error": ([], c_char_p),
    "imcap_status_str": ([c_int], c_char_p),
    "imcap_default_model_path": ([c_char_p, c_size_t], _S),
    "imcap_captioner_load": ([c_char_p, c_char_p, POINTER(_P)], _S),
    "imcap_captioner_free": ([_P], None),
    "imcap_captioner_gen_params": ([_P], GenParams),
    "imcap_captioner_encoder_name": ([_P], c_char_p),
    "imcap_captioner_encoder_path": ([_P], c_char_p),
    "imcap_captioner_vocab": ([_P], _P),
    "imcap_captioner_embedding_size": ([_P], c_int),
    "imcap_captioner_embed": ([_P, POINTER(Image), POINTER(c_float)], _S),
    "imcap_gen_params_check": ([POINTER(GenParams)], _S),
    "imcap_caption_file": ([_P, c_char_p, POINTER(GenParams), POINTER(POINTER(Caption))], _S),
    "imcap_caption_memory": ([_P, c_void_p, c_size_t, c_char_p, POINTER(GenParams),
                              POINTER(POINTER(Caption))], _S),
    "imcap_caption_image": ([_P, POINTER(Image), POINTER(GenParams), POINTER(POINTER(Caption))], _S),
    "imcap_caption_free": ([POINTER(Caption)], None),
    "imcap_image_load": ([c_char_p, POINTER(Image)], _S),
    "imcap_image_decode": ([c_void_p, c_size_t, c_char_p, POINTER(Image)], _S),
    "imcap_image_free": ([POINTER(Image)], None),
    "imcap_encoder_load": ([c_char_p, POINTER(_P)], _S),
    "imcap_encoder_free": ([_P], None),
    "imcap_encoder_name": ([_P], c_char_p),
    "imcap_encoder_input_size": ([_P, POINTER(c_int), POINTER(c_int)], None),
    "imcap_encoder_n_outputs": ([_P], c_int),
    "imcap_encoder_output_name": ([_P, c_int], c_char_p),
    "imcap_encoder_output_size": ([_P, c_char_p], c_size_t),
    "imcap_encoder_embed": ([_P, POINTER(Image), c_size_t, c_char_p, POINTER(c_float)], _S),
    "imcap_score": ([POINTER(ScoreItem), c_size_t, c_int, POINTER(Scores), POINTER(c_double),
                     POINTER(c_double)], _S),
    "imcap_metric_name": ([c_int], c_char_p),
    "imcap_captions_load": ([c_char_p, POINTER(_P)], _S),
    "imcap_captions_free": ([_P], None),
    "imcap_captions_n_images": ([_P], c_size_t),
    "imcap_captions_image": ([_P, c_size_t], c_char_p),
    "imcap_captions_count": ([_P, c_size_t], c_size_t),
    "imcap_captions_text": ([_P, c_size_t, c_size_t], c_char_p),
    "imcap_captions_restrict": ([_P, c_char_p, POINTER(_P)], _S),
    "imcap_vocab_build": ([_P, c_int, POINTER(_P)], _S),
    "imcap_vocab_free": ([_P], None),
    "imcap_vocab_size": ([_P], c_size_t),
    "imcap_vocab_word": ([_P, c_int32], c_char_p),
    "imcap_tokenize": ([c_char_p, POINTER(POINTER(c_char_p)), POINTER(c_size_t)], _S),
}
for _name, (_args, _res) in _SIGNATURES.items():
    _f = getattr(lib, _name)
    _f.argtypes = _args
    _f.restype = _res

IMCAP_N_METRICS = 6
IMCAP_E_ARG = 1
