#!/usr/bin/env bash
# Browser test of the `imcap serve` page in Debian's headless chromium driven by npm playwright-core
# (tests/serve/browser_test.js): upload, caption, speak (audio fetched and playing), keyboard, labels,
# attention maps on hover, 400 / 1400 px. Screenshots are kept in out/serve/ as artifacts.
# Needs /usr/bin/chromium and node_modules/playwright-core (./setup.sh --deps-only installs both).
set -u
cd "$(dirname "$0")/../.."
. tests/serve/lib.sh
if [ ! -x /usr/bin/chromium ] || [ ! -f node_modules/playwright-core/package.json ]; then
  echo "serve_browser: skipped: needs /usr/bin/chromium and node_modules/playwright-core (run ./setup.sh --deps-only)"
  echo "0 passed, 0 failed, 1 skipped"
  exit 0
fi
mkdir -p out/serve
log=out/serve/server.log
if ! start_server "$log" --threads 2; then
  cat "$log"
  echo "0 passed, 1 failed"
  exit 1
fi
node tests/serve/browser_test.js "http://127.0.0.1:$SERVER_PORT" out/serve data/images/cat_720p.jpg data/images/owl.jpg
rc=$?
stop_server "$SERVER_PID"
st=$?
if [ "$st" -ne 0 ]; then
  echo "FAIL server exit status $st after SIGTERM"; tail -n 20 "$log"
  echo "0 passed, 1 failed"
  exit 1
fi
exit $rc
