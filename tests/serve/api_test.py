#!/usr/bin/env python3
"""API tests of `imcap serve` (Python 3 stdlib only), against servers this
script starts on free loopback ports (--port 0). Usage:
    api_test.py IMCAP_BINARY
Prints one line per check and "N passed, N failed" last; exit status 1 if any
check failed. Every endpoint, every error status, multipart with several
images, truncated uploads, a body over the limit, a stalled client, 100
concurrent requests, a full queue (503), SIGTERM with requests in flight."""
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
import zlib

BIN = sys.argv[1] if len(sys.argv) > 1 else "build/imcap"
IMAGES = ["data/images/cat_720p.jpg", "data/images/face.jpg", "data/images/owl.jpg", "data/images/pets.jpg"]
passed = failed = 0


def png_bytes(w=48, h=32):
    """A small RGB gradient as a PNG file, written with zlib."""
    import struct
    rows = b"".join(b"\0" + bytes(v for x in range(w) for v in (x * 5 % 256, y * 7 % 256, 128)) for y in range(h))

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def check(name, cond, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print(f"ok   {name}")
    else:
        failed += 1
        print(f"FAIL {name} {detail}")
    sys.stdout.flush()


class Server:
    all = []

    def __init__(self, *args):
        Server.all.append(self)
        self.log = open(f"/tmp/imcap-serve-{os.getpid()}-{uuid.uuid4().hex[:6]}.log", "w+")
        env = dict(os.environ, IMCAP_QUIET="1")
        self.p = subprocess.Popen([BIN, "serve", "--port", "0", *args], stdout=subprocess.DEVNULL,
                                  stderr=self.log, env=env)
        self.port = None
        deadline = time.time() + 120
        while time.time() < deadline and self.port is None:
            time.sleep(0.1)
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)/", self.stderr())
            if m:
                self.port = int(m.group(1))
            if self.p.poll() is not None:
                break
        if self.port is None:
            raise RuntimeError("server did not start: " + self.stderr())

    def stderr(self):
        self.log.flush()
        with open(self.log.name) as f:
            return f.read()

    def stop(self, timeout=60):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
        try:
            return self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            return -999


def request(port, method, path, body=None, headers=None, timeout=60, chunked=False):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    c.request(method, path, body=body, headers=headers or {}, encode_chunked=chunked)
    r = c.getresponse()
    data = r.read()
    hdrs = {k.lower(): v for k, v in r.getheaders()}
    c.close()
    return r.status, hdrs, data


def jbody(data):
    try:
        return json.loads(data)
    except ValueError:
        return None


def multipart(fields):
    """fields: [(name, filename or None, bytes)] -> (body, content type)."""
    b = "imcapboundary" + uuid.uuid4().hex
    out = b""
    for name, fn, data in fields:
        out += f"--{b}\r\n".encode()
        if fn:
            out += f'Content-Disposition: form-data; name="{name}"; filename="{fn}"\r\n'.encode()
            out += b"Content-Type: application/octet-stream\r\n\r\n"
        else:
            out += f'Content-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        out += data + b"\r\n"
    out += f"--{b}--\r\n".encode()
    return out, "multipart/form-data; boundary=" + b


def raw_exchange(port, head, body=b"", read=True, timeout=20):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(head + body)
    data = b""
    if read:
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        except socket.timeout:
            pass
    s.close()
    return data


def status_of(raw):
    m = re.match(rb"HTTP/1\.[01] (\d{3})", raw)
    return int(m.group(1)) if m else None


def cli_captions(paths, *flags):
    out = subprocess.run([BIN, "caption", "--json", *flags, *paths], capture_output=True, text=True,
                         env=dict(os.environ, IMCAP_QUIET="1"))
    return {os.path.basename(o["path"]): o for o in json.loads(out.stdout)}


def main():
    img = {os.path.basename(p): open(p, "rb").read() for p in IMAGES}
    expect = cli_captions(IMAGES)
    expect3 = cli_captions(IMAGES[:1], "--beam", "3", "--n-best", "3")
    srv = Server("--threads", "2", "--queue", "128", "--max-body", "2M", "--timeout", "3",
                 "--request-timeout", "8", "--max-images", "4")
    port = srv.port

    # GET endpoints
    st, h, d = request(port, "GET", "/health")
    check("GET /health is 200 ok", st == 200 and jbody(d) == {"status": "ok"}, f"{st} {d[:200]}")
    st, h, d = request(port, "GET", "/v1/model")
    m = jbody(d) or {}
    check("GET /v1/model names model, encoder, vocabulary, defaults",
          st == 200 and m.get("vocab_size", 0) > 100 and m.get("encoder") and m.get("defaults", {}).get("beam", 0) >= 1
          and "max_len" in m.get("defaults", {}), f"{st} {d[:300]}")
    st, h, d = request(port, "GET", "/")
    page = d.decode("utf-8", "replace")
    check("GET / is the page (html, CSP, nothing fetched from elsewhere)",
          st == 200 and h.get("content-type", "").startswith("text/html") and "<title>imcap" in page
          and "content-security-policy" in h and not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", page),
          f"{st} {h}")
    st, h, d = request(port, "HEAD", "/health")
    check("HEAD /health is 200 without a body", st == 200 and d == b"", f"{st}")

    # captions: raw body, parameters, consistency with `imcap caption --json`
    name = os.path.basename(IMAGES[0])
    st, h, d = request(port, "POST", "/v1/caption", img[name], {"Content-Type": "image/jpeg"})
    r = jbody(d) or {}
    check("POST /v1/caption raw JPEG: the same caption as `imcap caption`",
          st == 200 and r.get("caption") == expect[name]["caption"] and h.get("content-type") == "application/json",
          f"{st} {d[:300]} vs {expect[name]['caption']}")
    check("caption answer has logprob, score, alternatives, timings_ms",
          all(k in r for k in ("logprob", "score", "alternatives", "timings_ms"))
          and all(k in r.get("timings_ms", {}) for k in ("decode", "encode", "generate", "total", "queue"))
          and abs(r.get("logprob", 0) - expect[name]["logprob"]) < 1e-6, str(r)[:300])
    st, h, d = request(port, "POST", "/v1/caption?beam=3&n_best=3", img[name], {"Content-Type": "application/octet-stream"})
    r = jbody(d) or {}
    alts = r.get("alternatives", [])
    check("beam=3&n_best=3 (octet-stream): 3 alternatives as `imcap caption --beam 3 --n-best 3`",
          st == 200 and [a["caption"] for a in alts] == [a["caption"] for a in expect3[name]["alternatives"]]
          and len(alts) == 3, f"{st} {d[:300]}")
    body, ct = multipart([("beam", None, b"3"), ("n_best", None, b"2"), ("image", name, img[name])])
    st, h, d = request(port, "POST", "/v1/caption", body, {"Content-Type": ct})
    r = jbody(d) or {}
    check("multipart form parameters beam / n_best", st == 200 and len(r.get("alternatives", [])) == 2, f"{st} {d[:200]}")
    st, h, d = request(port, "POST", "/v1/caption?temperature=0.8&seed=7&max_len=5", img[name], {"Content-Type": "image/jpeg"})
    r = jbody(d) or {}
    st2, h2, d2 = request(port, "POST", "/v1/caption?temperature=0.8&seed=7&max_len=5", img[name], {"Content-Type": "image/jpeg"})
    check("temperature + seed + max_len: sampled, reproducible, at most 5 words",
          st == 200 and st2 == 200 and r.get("caption") == (jbody(d2) or {}).get("caption")
          and 1 <= len(r.get("caption", "").split()) <= 5, f"{st} {d[:200]}")
    names = [os.path.basename(p) for p in IMAGES]
    body, ct = multipart([("image", n, img[n]) for n in names])
    st, h, d = request(port, "POST", "/v1/caption", body, {"Content-Type": ct})
    r = jbody(d)
    check("multipart with 4 image fields: an array of 4 results in order",
          st == 200 and isinstance(r, list) and [x.get("name") for x in r] == names
          and [x.get("caption") for x in r] == [expect[n]["caption"] for n in names], f"{st} {d[:300]}")
    st, h, d = request(port, "POST", "/v1/caption", png_bytes(), {"Content-Type": "image/png"})
    check("PNG body is captioned", st == 200 and (jbody(d) or {}).get("caption"), f"{st} {d[:200]}")

    # errors
    def err(name, st, d, want):
        j = jbody(d)
        check(name, st == want and isinstance(j, dict) and isinstance(j.get("error"), str) and j["error"],
              f"got {st} {d[:200]}")
    st, h, d = request(port, "POST", "/v1/caption", b"this is not an image", {"Content-Type": "image/jpeg"})
    err("400 for a body that is not an image", st, d, 400)
    st, h, d = request(port, "POST", "/v1/caption", img[name][: len(img[name]) // 2], {"Content-Type": "image/jpeg"})
    err("400 for a truncated JPEG", st, d, 400)
    st, h, d = request(port, "POST", "/v1/caption", b"", {"Content-Type": "image/jpeg"})
    err("400 for an empty body", st, d, 400)
    for q in ("beam=0", "beam=x", "n_best=5&beam=2", "temperature=-1", "max_len=1000", "seed=-3", "colour=red"):
        st, h, d = request(port, "POST", "/v1/caption?" + q, img[name], {"Content-Type": "image/jpeg"})
        err(f"400 for bad parameter {q}", st, d, 400)
    body, ct = multipart([("image", "a.jpg", img[name]), ("image", "b.jpg", b"garbage")])
    st, h, d = request(port, "POST", "/v1/caption", body, {"Content-Type": ct})
    err("400 when one image of several is bad, naming it", st, d, 400)
    check("... the error names image 2", b"image 2" in d, d[:200])
    body, ct = multipart([("photo", "a.jpg", img[name])])
    st, h, d = request(port, "POST", "/v1/caption", body, {"Content-Type": ct})
    err("400 for an unknown form field", st, d, 400)
    body, ct = multipart([("image", n, img[n]) for n in names] + [("image", "x.jpg", img[name])])
    st, h, d = request(port, "POST", "/v1/caption", body, {"Content-Type": ct})
    err("413 for more image fields than --max-images", st, d, 413)
    st, h, d = request(port, "GET", "/nope")
    err("404 for an unknown path", st, d, 404)
    st, h, d = request(port, "GET", "/v1/caption")
    err("405 for GET /v1/caption", st, d, 405)
    check("... with Allow: POST", h.get("allow") == "POST", str(h))
    st, h, d = request(port, "POST", "/health", b"x", {"Content-Type": "text/plain"})
    err("405 for POST /health", st, d, 405)
    st, h, d = request(port, "DELETE", "/v1/speech")
    err("405 for DELETE /v1/speech", st, d, 405)
    st, h, d = request(port, "POST", "/v1/caption", b"<html>", {"Content-Type": "text/html"})
    err("415 for Content-Type text/html", st, d, 415)
    st, h, d = request(port, "POST", "/v1/caption", b"abc", {"Content-Type": "multipart/form-data"})
    err("400 for multipart without a boundary", st, d, 400)
    # Over --max-body by Content-Length: the answer comes before the body is sent.
    t0 = time.time()
    raw = raw_exchange(port, f"POST /v1/caption HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
                             f"Content-Length: {5 << 20}\r\n\r\n".encode(), timeout=10)
    check("413 for Content-Length over --max-body, without reading the body",
          status_of(raw) == 413 and time.time() - t0 < 5 and b'"error"' in raw, raw[:200])
    big = os.urandom(3 << 20)
    st, h, d = request(port, "POST", "/v1/caption", iter([big[i:i + 65536] for i in range(0, len(big), 65536)]),
                       {"Content-Type": "image/jpeg", "Transfer-Encoding": "chunked"}, chunked=True)
    err("413 for a chunked body over --max-body", st, d, 413)

    # truncated and stalled uploads do not harm the requests around them
    raw_exchange(port, b"POST /v1/caption HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: 100000\r\n\r\n",
                 img[name][:5000], read=False)
    body, ct = multipart([("image", name, img[name])])
    cut = body[: len(body) - 40]
    raw = raw_exchange(port, f"POST /v1/caption HTTP/1.1\r\nHost: x\r\nContent-Type: {ct}\r\n"
                             f"Content-Length: {len(cut)}\r\nConnection: close\r\n\r\n".encode(), cut)
    check("400 for a multipart body cut before its closing boundary", status_of(raw) == 400, raw[:200])
    stalled = socket.create_connection(("127.0.0.1", port), timeout=20)
    stalled.sendall(b"POST /v1/caption HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: 1000\r\n\r\nabc")
    st, h, d = request(port, "POST", "/v1/caption", img[name], {"Content-Type": "image/jpeg"})
    check("a request next to a stalled and a truncated upload is answered",
          st == 200 and (jbody(d) or {}).get("caption") == expect[name]["caption"], f"{st} {d[:200]}")
    t0 = time.time()
    try:
        got = stalled.recv(100)
    except (socket.timeout, ConnectionResetError):
        got = None
    check("a stalled client is disconnected after --timeout (3 s)", got == b"" and time.time() - t0 < 10,
          f"{got!r} after {time.time() - t0:.1f}s")
    stalled.close()
    slow = socket.create_connection(("127.0.0.1", port), timeout=30)
    slow.sendall(b"POST /v1/caption HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: 100000\r\n\r\n")
    t0 = time.time()
    closed = False
    while time.time() - t0 < 20:
        try:
            slow.sendall(b"x" * 10)
        except (BrokenPipeError, ConnectionResetError):
            closed = True
            break
        time.sleep(1)
    slow.close()
    check("a client trickling its upload is cut after --request-timeout (8 s)", closed and time.time() - t0 < 15,
          f"after {time.time() - t0:.1f}s")

    # speech
    st, h, d = request(port, "POST", "/v1/speech", "text=a dog runs on the grass", {"Content-Type": "application/x-www-form-urlencoded"})
    check("POST /v1/speech text (form): audio/wav", st == 200 and h.get("content-type") == "audio/wav"
          and d[:4] == b"RIFF" and d[8:12] == b"WAVE" and len(d) > 10000, f"{st} {h} {d[:60]}")
    st, h, d = request(port, "GET", "/v1/speech?text=hello&voice=en-us&rate=200")
    check("GET /v1/speech?text=...&voice=&rate=: audio/wav", st == 200 and d[:4] == b"RIFF", f"{st} {d[:100]}")
    st, h, d = request(port, "POST", "/v1/speech", json.dumps({"text": "hello there"}), {"Content-Type": "application/json"})
    check("POST /v1/speech JSON {text}: audio/wav", st == 200 and d[:4] == b"RIFF", f"{st} {d[:100]}")
    st, h, d = request(port, "POST", "/v1/speech", img[name], {"Content-Type": "image/jpeg"})
    check("POST /v1/speech image: WAV of its caption (X-Imcap-Caption)",
          st == 200 and d[:4] == b"RIFF" and h.get("x-imcap-caption") == expect[name]["caption"], f"{st} {h}")
    st, h, d = request(port, "POST", "/v1/speech", b"", {"Content-Type": "text/plain"})
    err("400 for speech of an empty text", st, d, 400)
    st, h, d = request(port, "POST", "/v1/speech?text=hi", img[name], {"Content-Type": "image/jpeg"})
    err("400 for speech of a text and an image", st, d, 400)
    st, h, d = request(port, "GET", "/v1/speech?text=hi&voice=no-such-voice")
    err("400 for an unknown voice", st, d, 400)
    st, h, d = request(port, "GET", "/v1/speech?text=hi&rate=5")
    err("400 for a rate out of range", st, d, 400)

    # 100 concurrent requests
    results = [None] * 100

    def one(i):
        n = names[i % len(names)]
        try:
            s_, h_, d_ = request(port, "POST", "/v1/caption", img[n], {"Content-Type": "image/jpeg"}, timeout=300)
            results[i] = (s_, (jbody(d_) or {}).get("caption") == expect[n]["caption"])
        except Exception as e:  # noqa: BLE001 - reported as a failure below
            results[i] = (str(e), False)
    th = [threading.Thread(target=one, args=(i,)) for i in range(100)]
    t0 = time.time()
    for t in th:
        t.start()
    for t in th:
        t.join()
    check(f"100 concurrent requests: all 200 with the right captions ({time.time() - t0:.1f}s)",
          all(r == (200, True) for r in results), str([r for r in results if r != (200, True)][:5]))
    st, h, d = request(port, "GET", "/health")
    check("still healthy after all that", st == 200, str(st))

    log = srv.stderr()
    check("one log line per request on stderr (method, path, status, bytes, ms)",
          re.search(r"POST /v1/caption 200 in=\d+ out=\d+ [\d.]+ms", log) is not None
          and re.search(r"GET /nope 404 in=0 out=\d+", log) is not None
          and len(re.findall(r"POST /v1/caption 200 ", log)) >= 100, log[-500:])
    code = srv.stop()
    check("SIGTERM on an idle server: exit 0", code == 0, f"exit {code}: {srv.stderr()[-800:]}")

    # a full queue answers 503, the rest are served
    srv = Server("--threads", "1", "--queue", "1")
    res = []
    lock = threading.Lock()

    def q(i):
        s_, h_, d_ = request(srv.port, "POST", "/v1/caption?beam=5", img[names[0]], {"Content-Type": "image/jpeg"}, timeout=120)
        with lock:
            res.append((s_, h_.get("retry-after"), jbody(d_)))
    th = [threading.Thread(target=q, args=(i,)) for i in range(12)]
    for t in th:
        t.start()
    for t in th:
        t.join()
    codes = sorted(r[0] for r in res)
    check("--queue 1 --threads 1, 12 at once: some 200, the others 503 with Retry-After and a JSON error",
          codes.count(200) >= 2 and codes.count(503) >= 1 and codes.count(200) + codes.count(503) == 12
          and all(r[1] == "1" and r[2].get("error") for r in res if r[0] == 503), str(codes))
    st, h, d = request(srv.port, "POST", "/v1/caption", img[name], {"Content-Type": "image/jpeg"})
    check("... and the next request is served", st == 200, str(st))

    # SIGTERM with requests in flight: all answered, then exit 0
    srv.stop()
    srv = Server("--threads", "1", "--queue", "16")
    res = []

    def g(i):
        try:
            s_, h_, d_ = request(srv.port, "POST", "/v1/caption?beam=4", img[names[i % 4]], {"Content-Type": "image/jpeg"}, timeout=120)
            with lock:
                res.append((s_, (jbody(d_) or {}).get("caption")))
        except Exception as e:  # noqa: BLE001 - reported as a failure below
            with lock:
                res.append((str(e), None))
    th = [threading.Thread(target=g, args=(i,)) for i in range(6)]
    for t in th:
        t.start()
    time.sleep(0.3)
    srv.p.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    try:
        socket.create_connection(("127.0.0.1", srv.port), timeout=2).close()
        refused = False
    except OSError:
        refused = True
    for t in th:
        t.join()
    code = srv.stop()
    check("SIGTERM with 6 requests in flight: all 6 answered 200", len(res) == 6 and all(r[0] == 200 and r[1] for r in res),
          str(res))
    check("... no new connections after SIGTERM", refused)
    check("... then exit 0", code == 0, f"exit {code}: {srv.stderr()[-800:]}")
    check("... the log says it drained", "finishing the requests in flight" in srv.stderr() and "stopped" in srv.stderr(),
          srv.stderr()[-400:])
    bad = [t for t in (x.stderr() for x in Server.all)
           if "AddressSanitizer" in t or "runtime error" in t or "LeakSanitizer" in t]
    check(f"no sanitizer reports in the logs of the {len(Server.all)} servers", not bad, bad[0][-1500:] if bad else "")


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # noqa: BLE001 - a crash of the test script is a failure
        import traceback
        traceback.print_exc()
        failed += 1
    finally:
        for s in Server.all:
            if s.p.poll() is None:
                s.p.kill()
                s.p.wait()
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)
