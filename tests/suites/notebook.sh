#!/usr/bin/env bash
# Suite "notebook": executes examples/captioning.ipynb headless (Debian jupyter-nbconvert +
# python3-ipykernel) so it cannot rot: every cell must run without error (its asserts included) and
# the plot must come out.
set -u
cd "$(dirname "$0")/../.."
if ! command -v jupyter-nbconvert >/dev/null || ! /usr/bin/python3 -c 'import ipykernel, matplotlib, PIL' 2>/dev/null; then
  echo "notebook: jupyter-nbconvert / python3-ipykernel / python3-matplotlib / python3-pil missing (./setup.sh --deps-only)"
  echo "0 passed, 1 failed, 0 skipped"; exit 1
fi
if [ ! -s models/default.imcap ] || ! ls models/encoders/*.gguf >/dev/null 2>&1 || [ ! -s data/flickr8k/dev.txt ]; then
  echo "skip notebook: default model, encoders or Flickr8k not set up (./setup.sh)"
  echo "0 passed, 0 failed, 1 skipped"; exit 0
fi
tmp=$(mktemp -d /tmp/imcap-nb.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
export PYDEVD_DISABLE_FILE_VALIDATION=1 OPENBLAS_NUM_THREADS=1
if (cd examples && jupyter-nbconvert --to notebook --execute --ExecutePreprocessor.timeout=600 \
      --output "$tmp/out.ipynb" captioning.ipynb) > "$tmp/log" 2>&1 &&
   /usr/bin/python3 - "$tmp/out.ipynb" <<'PY'
import sys, nbformat
nb = nbformat.read(sys.argv[1], 4)
outs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
assert not [o for o in outs if o.output_type == "error"], "a cell failed"
assert any("image/png" in o.get("data", {}) for o in outs), "no plot"
text = "".join(o.get("text", "") for o in outs)
assert "CIDEr" in text and "cosine similarities" in text, "missing outputs"
PY
then echo "ok   notebook: examples/captioning.ipynb runs headless, plot included"; echo "1 passed, 0 failed, 0 skipped"
else tail -30 "$tmp/log"; echo "FAIL notebook: examples/captioning.ipynb"; echo "0 passed, 1 failed, 0 skipped"; exit 1; fi
