"""Cost of the Python binding over the C library, same photos, same process, interleaved:
per photo, Captioner.describe(path) (whole binding call: argument checks, the C call, result dicts)
against the bare C call imcap_caption_file made through ctypes with the same settings; then
throughput of 1 and 2 Python threads captioning the same photos (the GIL is released in C).
    /usr/bin/python3 scripts/bench_python.py [N]     (run by scripts/bench-python.sh)"""
import ctypes
import os
import pathlib
import statistics
import sys
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))
import imcap  # noqa: E402
from imcap import _lib  # noqa: E402

n = int(sys.argv[1]) if len(sys.argv) > 1 else 50
photos = sorted((ROOT / "data/flickr8k/images").glob("*.jpg"))[:n]
cap = imcap.Captioner()
lib, h = _lib.lib, cap._handle()
for beam in (1, 3):
    p = cap._params(beam, None, None, None, None, None)
    cap.describe(photos[0], beam=beam)  # warm-up
    t_py, t_c = [], []
    for ph in photos:
        t0 = time.perf_counter()
        r = cap.describe(ph, beam=beam)
        t1 = time.perf_counter()
        out = ctypes.POINTER(_lib.Caption)()
        st = lib.imcap_caption_file(h, os.fsencode(ph), ctypes.byref(p), ctypes.byref(out))
        t2 = time.perf_counter()
        assert st == 0 and out.contents.alt[0].text.decode() == r[0]["caption"]
        lib.imcap_caption_free(out)
        t_py.append((t1 - t0) * 1e3)
        t_c.append((t2 - t1) * 1e3)
    d = [a - b for a, b in zip(t_py, t_c)]
    print("beam %d, %d photos: describe() min %.2f / median %.2f ms, bare C call min %.2f / median "
          "%.2f ms, difference per photo: median %.3f ms (%.1f%% of the C call)"
          % (beam, len(photos), min(t_py), statistics.median(t_py), min(t_c), statistics.median(t_c),
             statistics.median(d), 100 * statistics.median(d) / statistics.median(t_c)))

# The binding's own work per call without the captioning: settings, then result dicts from a result.
out = ctypes.POINTER(_lib.Caption)()
assert lib.imcap_caption_file(h, os.fsencode(photos[0]), ctypes.byref(p), ctypes.byref(out)) == 0
reps = 20000
t0 = time.perf_counter()
for _ in range(reps):
    cap._params(3, 3, None, None, None, None)
    [imcap._alt_dict(out.contents, i) for i in range(out.contents.n_alt)]
own_us = (time.perf_counter() - t0) / reps * 1e6
lib.imcap_caption_free(out)
print("binding's own Python work per describe() (settings + result dicts, no captioning): %.1f us" % own_us)


def run(threads):
    chunks = [photos[i::threads] for i in range(threads)]
    ts = [threading.Thread(target=lambda c=c: [cap.caption(x) for x in c]) for c in chunks]
    t0 = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return len(photos) / (time.perf_counter() - t0)


rates = {}
for rep in range(2):
    for k in (1, 2):
        rates.setdefault(k, []).append(run(k))
print("throughput (model's settings): 1 thread %.1f photos/s, 2 threads %.1f photos/s (x%.2f)"
      % (max(rates[1]), max(rates[2]), max(rates[2]) / max(rates[1])))
