# bench-rates.sh - sourced by scripts/bench-decoder.sh and scripts/bench-attention.sh:
# the numbers of a benchmark line and the best of several runs.

# field LINE NAME: the number after " NAME " in LINE.
field() { echo "$1" | sed -E "s|.* $2 ([0-9.]+).*|\1|"; }

# keep_best P LINE: raises ${P}t to LINE's tokens/s (and then ${P}m to its
# peak_rss_mb) and ${P}c to its tokens/cpu_s, each where LINE's is higher.
keep_best() {
  local t=${1}t c=${1}c m=${1}m x
  x=$(field "$2" tokens/s); if [ "$x" -gt "${!t}" ]; then printf -v "$t" %s "$x"; printf -v "$m" %s "$(field "$2" peak_rss_mb)"; fi
  x=$(field "$2" tokens/cpu_s); if [ "$x" -gt "${!c}" ]; then printf -v "$c" %s "$x"; fi
}
