#!/usr/bin/env bash
# Runs every libFuzzer harness build-fuzz/fuzz_* (make fuzz-build) for N seconds each
# (argument, default 60; FUZZ_ONLY="gguf tflite" runs only those), one after the other, from
# the repository root. Corpus per harness: build-fuzz/corpus/NAME (kept between runs) plus the
# committed seeds tests/fuzz/seeds/NAME, the seeds generated here (model files in the current
# formats, by build-fuzz/make_seeds and the TFLite operator test) and the regression inputs
# tests/fuzz/regressions/NAME (each replayed first, as every corpus input is). Any crash, leak,
# sanitizer report, timeout (> 20 s an input) or allocation over 512 MB is a finding: it is
# written to build-fuzz/findings/NAME-*, and the run fails. Prints per harness the executions,
# final coverage (edges "cov" and features "ft") and corpus size; log in build-fuzz/logs/NAME.log.
set -u
cd "$(dirname "$0")/.."
S=${1:-60}
B=build-fuzz
[ -x $B/make_seeds ] || { echo "fuzz: $B is not built (make fuzz-build)"; echo "0 passed, 1 failed"; exit 1; }
[ -x build/imcap_tests ] || { echo "fuzz: build/imcap_tests is not built (make)"; echo "0 passed, 1 failed"; exit 1; }
mkdir -p $B/corpus $B/findings $B/logs
rm -rf $B/seeds && mkdir -p $B/seeds
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
if ! $B/make_seeds $B/seeds >$B/logs/make_seeds.log 2>&1 ||
   ! IMCAP_FUZZ_TFLITE_SEED=$B/seeds/tiny.tflite build/imcap_tests tflite_ops_tiny_model >$B/logs/tflite_seed.log 2>&1; then
  echo "fuzz: generating the seeds failed (see $B/logs)"; echo "0 passed, 1 failed"; exit 1
fi
gen() { # harness -> generated seed files
  case $1 in
    gguf) echo $B/seeds/encoders/tiny.gguf $B/seeds/model.imcap $B/seeds/dec.gguf $B/seeds/train/ckpt.gguf ;;
    encoder) echo $B/seeds/encoders/tiny.gguf ;;
    captioner) echo $B/seeds/model.imcap ;;
    checkpoint) echo $B/seeds/dec.gguf $B/seeds/train/ckpt.gguf ;;
    embfile) echo $B/seeds/train/emb.f32 ;;
    tflite) echo $B/seeds/tiny.tflite ;;
  esac
}
pass=0 fail=0
for h in $B/fuzz_*; do
  name=${h#$B/fuzz_}
  if [ -n "${FUZZ_ONLY:-}" ] && ! [[ " $FUZZ_ONLY " == *" $name "* ]]; then continue; fi
  corpus=$B/corpus/$name gseeds=$B/seeds/for/$name
  mkdir -p "$corpus" "$gseeds"
  for f in $(gen "$name"); do cp "$f" "$gseeds/"; done
  dirs=("$corpus" "$gseeds")
  [ -d tests/fuzz/seeds/$name ] && dirs+=(tests/fuzz/seeds/$name)
  [ -d tests/fuzz/regressions/$name ] && dirs+=(tests/fuzz/regressions/$name)
  log=$B/logs/$name.log
  $h -max_total_time="$S" -malloc_limit_mb=512 -rss_limit_mb=2048 -timeout=20 -print_final_stats=1 \
     -artifact_prefix=$B/findings/$name- "${dirs[@]}" >"$log" 2>&1
  st=$?
  execs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+)/\1/p' "$log" | tail -n 1)
  cov=$(grep -E '^#[0-9]+' "$log" | tail -n 1 | sed -nE 's/.* cov: ([0-9]+) ft: ([0-9]+) corp: ([0-9]+).*/cov \1  ft \2  corpus \3/p')
  if [ $st -eq 0 ]; then
    pass=$((pass+1)); printf 'ok   fuzz_%-14s %4ss  execs %-9s %s\n' "$name" "$S" "${execs:-?}" "$cov"
  else
    fail=$((fail+1)); printf 'FAIL fuzz_%-14s exit %d  %s\n' "$name" $st "$cov"
    grep -E 'ERROR|SUMMARY|artifact|==[0-9]+==|runtime error' "$log" | head -n 8 | sed 's/^/     /'
  fi
done
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
