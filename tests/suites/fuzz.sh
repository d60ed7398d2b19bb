#!/usr/bin/env bash
# Fuzz smoke pass for `make check` / CI: builds the libFuzzer harnesses (clang, ASan+UBSan) and
# runs each for FUZZ_SECONDS (default 10) with the committed seeds and regression inputs, so a
# parser change that brings back a fixed hole fails the run. The long campaign is `make fuzz`.
set -u
cd "$(dirname "$0")/../.."
if ! command -v clang >/dev/null; then
  echo "fuzz: clang is not installed (./setup.sh --deps-only installs it)"; echo "0 passed, 1 failed"; exit 1
fi
if ! make -s -j2 fuzz-build >/tmp/imcap-fuzz-build.$$ 2>&1; then
  tail -n 20 /tmp/imcap-fuzz-build.$$; rm -f /tmp/imcap-fuzz-build.$$
  echo "fuzz: building the harnesses failed"; echo "0 passed, 1 failed"; exit 1
fi
rm -f /tmp/imcap-fuzz-build.$$
bash scripts/fuzz.sh "${FUZZ_SECONDS:-10}"
