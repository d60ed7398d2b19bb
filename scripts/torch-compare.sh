#!/usr/bin/env bash
# torch-compare.sh NAME - the PyTorch peer of `make model` (issue 5): trains the same decoder
# architecture with scripts/train_torch.py on the same embeddings ($IMCAP_EMB_DIR/NAME.f32),
# captions, splits, schedule and generation settings as scripts/make-model.sh, then scores its
# dev captions with `imcap score` against the same references. Results land in
# $IMCAP_MODEL_DIR/torch/ (NAME.beam1.json, NAME.beamK.json, NAME.seconds), where
# scripts/ablation.py (run by make-model.sh) adds them to docs/ABLATION.md.
# Environment: as make-model.sh (IMCAP_EMB_DIR, IMCAP_MODEL_DIR, IMCAP_EPOCHS, IMCAP_BATCHES, IMCAP_BEAM).
set -euo pipefail
cd "$(dirname "$0")/.."
name=${1:?usage: scripts/torch-compare.sh ENCODER_NAME}
EMB=${IMCAP_EMB_DIR:-out/emb}
WORK=${IMCAP_MODEL_DIR:-out/model}
EPOCHS=${IMCAP_EPOCHS:-10}
BATCHES=${IMCAP_BATCHES:-250}
BEAM=${IMCAP_BEAM:-3}
D=data/flickr8k
T="$WORK/torch"
mkdir -p "$T"
make -s -j2 build/imcap
t0=$(date +%s)
OPENBLAS_NUM_THREADS=1 nice -n 10 /usr/bin/python3 scripts/train_torch.py --emb "$EMB/$name.f32" \
  --captions $D/captions.csv --train $D/train.txt --val $D/dev.txt --out "$T" \
  --epochs "$EPOCHS" --batches "$BATCHES" --beam "$BEAM" > "$T/$name.log"
echo $(( $(date +%s) - t0 )) > "$T/$name.seconds"
cp "$T/torch_history.csv" "$T/$name.history.csv"
./build/imcap score --results "$T/torch_results_greedy.json" --refs "$T/refs.json" --json > "$T/$name.beam1.json"
./build/imcap score --results "$T/torch_results_beam$BEAM.json" --refs "$T/refs.json" --json > "$T/$name.beam$BEAM.json"
cat "$T/$name.beam1.json" "$T/$name.beam$BEAM.json"
