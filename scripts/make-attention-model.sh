#!/usr/bin/env bash
# make-attention-model.sh - reproduces the attention default model (`make attention-model`):
#   1. the ResNet-50 encoder (models/encoders/resnet50.gguf; setup.sh converts it);
#   2. its 7x7x2048 grids of the 7000 Flickr8k train+dev photos, float16 (imcap extract, resumable);
#   3. the attention decoder trained by cross-entropy on the train split, dev as validation (the
#      epoch with the lowest validation loss is kept; the committed run stopped after epoch 7,
#      best epoch 5);
#   4. self-critical training from it (CIDEr-D rewards on the training references; the epoch
#      with the best dev greedy CIDEr-D is kept);
#   5. dev evaluations of both (greedy, beam 3 with and without bigram blocking: dev only, never
#      a test split) and the exported captioner (beam 3 + bigram blocking stored), IMCAP_OUT.
# The default model is the ensemble of two such runs (seeds 1 and 2): `make attention-model`
# runs this script twice and exports both as one captioner (ENSEMBLE_OF below).
# Environment (defaults in brackets):
#   OUT_DIR     checkpoints, logs, results [out/attention]
#   IMCAP_GRID  the grid embeddings file [out/emb/resnet50_grid_f16.emb]
#   IMCAP_OUT   the exported captioner [OUT_DIR/attention.imcap; copy it to models/default.imcap]
#   CE_EPOCHS   cross-entropy epochs of 250 batches [7]
#   SCST_EPOCHS SCST epochs of 50 batches [30; the default model: 30, best epoch 26]
#   SEED        random seed of both trainings [1; the default model: 1 and 2]
#   ENSEMBLE_OF other run directories whose scst.best.gguf joins this run's in the export
#               (space-separated; the default model: out/attention with ENSEMBLE_OF=out/attention2)
#   OPENBLAS_NUM_THREADS [1]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${OUT_DIR:-out/attention}
GRID=${IMCAP_GRID:-out/emb/resnet50_grid_f16.emb}
OUT=${IMCAP_OUT:-$OUT_DIR/attention.imcap}
CE_EPOCHS=${CE_EPOCHS:-7}
SCST_EPOCHS=${SCST_EPOCHS:-30}
SEED=${SEED:-1}
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
D=data/flickr8k
ENC=models/encoders/resnet50.gguf
BIN=build/imcap
[ -x $BIN ] || make -j2
[ -s $ENC ] || { echo "make-attention-model: $ENC is missing: run ./setup.sh first" >&2; exit 1; }
mkdir -p "$OUT_DIR" "$(dirname "$GRID")"
cat $D/train.txt $D/dev.txt > "$OUT_DIR/traindev.txt"
$BIN extract --encoder $ENC --images $D/images --list "$OUT_DIR/traindev.txt" --output grid --dtype f16 \
  --out "$GRID"
CAPS=(--captions $D/captions.csv --train-split $D/train.txt --val-split $D/dev.txt)
$BIN train --decoder attention --embeddings "$GRID" "${CAPS[@]}" --checkpoint "$OUT_DIR/ce.gguf" --resume \
  --hidden 512 --embed 256 --out-hidden 512 --att-size 256 --epochs "$CE_EPOCHS" --batches 250 \
  --val-batches 20 --lr 1.5e-3 --clip 5 --dropout 0.5 --checkpoint-every 250 --seed "$SEED"
$BIN train --scst --init "$OUT_DIR/ce.best.gguf" --embeddings "$GRID" "${CAPS[@]}" \
  --checkpoint "$OUT_DIR/scst.gguf" --resume --epochs "$SCST_EPOCHS" --batches 50 --batch 16 --samples 5 \
  --lr 5e-5 --baseline mean --seed "$SEED"
for m in ce scst; do
  for dec in "1" "3 --alpha 0.5" "3 --alpha 0.5 --block-ngram 2"; do
    tag=$m.beam$(echo "$dec" | tr -d ' -' | sed 's/alpha0.5//')
    $BIN eval --model "$OUT_DIR/$m.best.gguf" --embeddings "$GRID" --split $D/dev.txt --captions $D/captions.csv \
      --beam $dec --json --quiet --results-out "$OUT_DIR/$tag.results.json" > "$OUT_DIR/$tag.json"
  done
done
CKPTS="$OUT_DIR/scst.best.gguf"
for d in ${ENSEMBLE_OF:-}; do CKPTS="$CKPTS,$d/scst.best.gguf"; done
$BIN export --checkpoint "$CKPTS" --encoder $ENC --output grid --embeddings "$GRID" --beam 3 \
  --alpha 0.5 --block-ngram 2 \
  --out "$OUT"
echo "make-attention-model: $OUT (dev results in $OUT_DIR/*.json)"
