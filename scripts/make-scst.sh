#!/usr/bin/env bash
# make-scst.sh - self-critical sequence training of the default model's decoder and its dev table:
#   1. the embeddings of the 7000 Flickr8k train+dev photos with the start model's encoder
#      (reused when present; imcap extract is resumable);
#   2. `imcap train --scst` from the start model (resumable: rerun after an interruption);
#   3. `imcap eval` of the start model and of the best-on-dev SCST model, greedy and beam, on dev
#      only, with scripts/caption_stats.py (repetition rate, distinct captions, vocabulary);
#   4. the exported candidate captioner (the lead chooses the default: this never overwrites
#      models/default.imcap) and the table (markdown) on stdout and in $OUT_DIR/table.md.
# Environment (defaults in brackets):
#   IMCAP_START    start model [models/default.imcap]
#   IMCAP_ENCODER  its encoder [models/encoders/mobilenet_edgetpu_224_1.0_uint8.gguf]
#   IMCAP_EMB      embeddings file [out/emb/mobilenet_edgetpu.f32]
#   OUT_DIR        checkpoints, logs, results [out/scst]
#   IMCAP_OUT      candidate captioner [OUT_DIR/scst.imcap]
#   SCST_ARGS      training settings [--epochs 6 --batches 50 --batch 16 --samples 5 --lr 5e-5
#                  --baseline mean]
#   IMCAP_BEAM, IMCAP_ALPHA   beam compared with greedy and stored in the export [3, 0.5]
set -euo pipefail
cd "$(dirname "$0")/.."
START=${IMCAP_START:-models/default.imcap}
ENC=${IMCAP_ENCODER:-models/encoders/mobilenet_edgetpu_224_1.0_uint8.gguf}
EMB=${IMCAP_EMB:-out/emb/mobilenet_edgetpu.f32}
OUT_DIR=${OUT_DIR:-out/scst}
OUT=${IMCAP_OUT:-$OUT_DIR/scst.imcap}
ARGS=${SCST_ARGS:---epochs 6 --batches 50 --batch 16 --samples 5 --lr 5e-5 --baseline mean}
BEAM=${IMCAP_BEAM:-3}
ALPHA=${IMCAP_ALPHA:-0.5}
D=data/flickr8k
IMCAP=./build/imcap
NICE="nice -n 5"
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
make -s -j2 all >/dev/null
mkdir -p "$OUT_DIR" "$(dirname "$EMB")"
if [ ! -s "$EMB" ]; then
  cat $D/train.txt $D/dev.txt > "$OUT_DIR/all.txt"
  $NICE $IMCAP extract --encoder "$ENC" --images $D/images --list "$OUT_DIR/all.txt" --out "$EMB" 2> "$OUT_DIR/extract.log"
fi
CK=$OUT_DIR/scst.gguf
# shellcheck disable=SC2086
$NICE $IMCAP train --scst --init "$START" --embeddings "$EMB" --captions $D/captions.csv --train-split $D/train.txt \
  --val-split $D/dev.txt --checkpoint "$CK" --best "$OUT_DIR/scst.best.gguf" --resume $ARGS 2>> "$OUT_DIR/train.log"
row() { # label model beam
  local r="$OUT_DIR/$1.beam$3"
  $NICE $IMCAP eval --model "$2" --embeddings "$EMB" --split $D/dev.txt --captions $D/captions.csv --beam "$3" \
    --alpha "$ALPHA" --quiet --json --results-out "$r.results.json" > "$r.json"
  /usr/bin/python3 - "$1" "$3" "$r.json" "$r.results.json" <<'PY'
import json, sys
sys.path.insert(0, "scripts")
from caption_stats import stats
label, beam, scores, results = sys.argv[1:]
j = json.load(open(scores))
s = j.get("scores", j)
st = stats(results)
print(f"| {label} | {'greedy' if beam == '1' else 'beam ' + beam} | {s['Bleu_4']:.3f} | {s['ROUGE_L']:.3f} | "
      f"{s['CIDEr']:.3f} | {st['repeated_bigram']:.1%} | {st['distinct']} | {st['vocabulary']} | {st['mean_words']:.2f} |")
PY
}
{
  echo "| model | decoding | BLEU-4 | ROUGE-L | CIDEr-D | repeated bigram | distinct captions | vocabulary | words |"
  echo "|---|---|---|---|---|---|---|---|---|"
  for b in 1 "$BEAM"; do row start "$START" "$b"; done
  for b in 1 "$BEAM"; do row scst "$OUT_DIR/scst.best.gguf" "$b"; done
} | tee "$OUT_DIR/table.md"
$IMCAP export --checkpoint "$OUT_DIR/scst.best.gguf" --encoder "$ENC" --embeddings "$EMB" --beam "$BEAM" --alpha "$ALPHA" \
  --out "$OUT" >&2
