#!/usr/bin/env bash
# tests/suites/mpi.sh - `mpirun -np N imcap ...` (OpenMPI): sharded extraction byte-identical to one
# process and resumable after a killed rank; training with 1, 2, 3 ranks giving identical loss
# history and weights; resume with another N; an error on one rank stops every rank with its
# message; split evaluation giving one table; and 2 ranks across two network namespaces joined by
# a veth pair, so MPI crosses a real TCP link. Tiny model and data (a few seconds on 2 cores).
set -u
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
B=${IMCAP_BIN:-$ROOT/build/imcap}  # IMCAP_BIN: another build of the CLI
pass=0 fail=0 skip=0
ok() { echo "ok   $1"; pass=$((pass + 1)); }
ko() { echo "FAIL $1"; fail=$((fail + 1)); }
sk() { echo "skip $1"; skip=$((skip + 1)); }
check() { local name=$1; shift; if "$@"; then ok "$name"; else ko "$name"; fi; }
finish() { echo "$pass passed, $fail failed, $skip skipped"; [ "$fail" -eq 0 ]; exit $?; }

ENC=models/encoders/mobilenet_v2_1.0_224_quant.gguf
IMG=data/flickr8k/images
CAPS=data/flickr8k/captions.csv
if ! command -v mpirun >/dev/null 2>&1 || ! ldd "$B" 2>/dev/null | grep -q libmpi; then
  sk "mpi: mpirun or an MPI build of imcap missing (./setup.sh installs libopenmpi-dev openmpi-bin)"; finish
fi
if [ ! -f "$ENC" ] || [ ! -f "$CAPS" ]; then sk "mpi: $ENC or $CAPS missing (./setup.sh)"; finish; fi

T=$(mktemp -d /tmp/imcap-mpi.XXXXXX)
NS0=imcap-mpi-$$-a NS1=imcap-mpi-$$-b
cleanup() {
  ip netns del "$NS0" 2>/dev/null; ip netns del "$NS1" 2>/dev/null
  rm -rf "$T"
}
trap cleanup EXIT
# one thread per rank: the decoder's sub-batch packing follows the thread count, so every run
# of a comparison uses the same; 2 cores are shared by up to 3 ranks
export IMCAP_THREADS=1 OPENBLAS_NUM_THREADS=1
# containers often forbid the cross-process memory copy (CMA) of the shared-memory transport
export OMPI_MCA_btl_vader_single_copy_mechanism=none
MPI=(mpirun --oversubscribe --allow-run-as-root --bind-to none)

head -n 30 data/flickr8k/train.txt > "$T/train.txt"
head -n 10 data/flickr8k/dev.txt > "$T/dev.txt"
cat "$T/train.txt" "$T/dev.txt" > "$T/all.txt"

# ---- extraction: 1 process vs 2 and 3 ranks, byte for byte
"$B" extract --encoder "$ENC" --images "$IMG" --list "$T/all.txt" --out "$T/e1.emb" >"$T/log" 2>&1
check "extract: one process writes the file" test -s "$T/e1.emb"
"${MPI[@]}" -np 2 "$B" extract --encoder "$ENC" --images "$IMG" --list "$T/all.txt" --out "$T/e2.emb" --batch 3 \
  >"$T/log" 2>&1
check "extract: 2 ranks (batch 3) give the same bytes as 1 process" cmp -s "$T/e1.emb" "$T/e2.emb"
"${MPI[@]}" -np 3 "$B" extract --encoder "$ENC" --images "$IMG" --list "$T/all.txt" --out "$T/e3.emb" \
  >"$T/log" 2>&1
check "extract: 3 ranks give the same bytes as 1 process" cmp -s "$T/e1.emb" "$T/e3.emb"
check "extract: the shard files are removed after the merge" \
  bash -c "! ls '$T'/e3.emb.rank* >/dev/null 2>&1"

# a killed rank: rank 1 of 2 is killed after its first rows; the rerun resumes its shard
cat >"$T/killer.sh" <<EOF
#!/usr/bin/env bash
if [ "\$OMPI_COMM_WORLD_RANK" = 1 ]; then
  "$B" extract "\$@" &
  pid=\$!
  for i in \$(seq 1 400); do
    [ -s "$T/ek.emb.rank1of2" ] && [ \$(stat -c %s "$T/ek.emb.rank1of2") -gt 20000 ] && break
    sleep 0.02
  done
  kill -9 \$pid; exit 9
fi
exec "$B" extract "\$@"
EOF
chmod +x "$T/killer.sh"
"${MPI[@]}" -np 2 "$T/killer.sh" --encoder "$ENC" --images "$IMG" --list "$T/all.txt" --out "$T/ek.emb" --batch 1 \
  >"$T/log" 2>&1
st=$?
check "extract: a killed rank fails the job (exit $st) and leaves its shard" \
  bash -c "[ $st -ne 0 ] && [ -s '$T/ek.emb.rank1of2' ] && [ ! -e '$T/ek.emb' ]"
"${MPI[@]}" -np 2 "$B" extract --encoder "$ENC" --images "$IMG" --list "$T/all.txt" --out "$T/ek.emb" \
  >"$T/log" 2>&1
check "extract: rerun after the kill resumes and gives the same bytes" \
  bash -c "cmp -s '$T/e1.emb' '$T/ek.emb' && grep -q '[1-9][0-9]* resumed' '$T/log'"

# ---- training: identical loss history and weights for N = 1, 2, 3 (6 chunks)
TR=(train --embeddings "$T/e1.emb" --captions "$CAPS" --train-split "$T/train.txt" --val-split "$T/dev.txt"
    --batch 12 --batches 4 --val-batches 3 --min-count 2 --img-hidden 16 --hidden 24 --embed 12 --out-hidden 16
    --dropout 0.2 --clip 5 --checkpoint-every 3 --quiet)
"$B" "${TR[@]}" --epochs 3 --checkpoint "$T/plain.gguf" >"$T/log" 2>&1
"$B" "${TR[@]}" --epochs 3 --checkpoint "$T/k1.gguf" --chunks 1 >"$T/log" 2>&1
check "train: --chunks 1 is the plain run (same weights)" cmp -s "$T/plain.best.gguf" "$T/k1.best.gguf"
"$B" "${TR[@]}" --epochs 3 --chunks 6 --checkpoint "$T/n1.gguf" >"$T/log" 2>&1
for n in 2 3; do
  "${MPI[@]}" -np $n "$B" "${TR[@]}" --epochs 3 --chunks 6 --checkpoint "$T/n$n.gguf" >"$T/log$n" 2>&1
  check "train: $n ranks = 1 process, checkpoint (weights, Adam state) byte-identical" cmp -s "$T/n1.gguf" "$T/n$n.gguf"
  check "train: $n ranks = 1 process, loss history identical" cmp -s "$T/n1.history.csv" "$T/n$n.history.csv"
  check "train: $n ranks = 1 process, best model identical" cmp -s "$T/n1.best.gguf" "$T/n$n.best.gguf"
done
check "train: the loss history has 3 epochs with validation" \
  bash -c "[ \$(grep -c '^[0-9],[0-9]*,[0-9.]*,[0-9.]' '$T/n1.history.csv') = 3 ] && grep -q polyline '$T/n1.loss.svg'"
check "train: 6 chunks change the sums (not the same as whole batches)" \
  bash -c "! cmp -s '$T/plain.gguf' '$T/n1.gguf'"

# resume with another N: 1 epoch on 2 ranks, then 2 more on 3 ranks, = 3 epochs in one process
"${MPI[@]}" -np 2 "$B" "${TR[@]}" --epochs 1 --chunks 6 --checkpoint "$T/r.gguf" >"$T/log" 2>&1
"${MPI[@]}" -np 3 "$B" "${TR[@]}" --epochs 3 --resume --checkpoint "$T/r.gguf" >"$T/log" 2>&1
check "train: resume 2 -> 3 ranks = uninterrupted 1 process" \
  bash -c "cmp -s '$T/n1.gguf' '$T/r.gguf' && cmp -s '$T/n1.history.csv' '$T/r.history.csv'"

# an error on one rank: rank 1 alone gets a missing embeddings file (MPMD launch)
TRX=()
for a in "${TR[@]}"; do [ "$a" = "$T/e1.emb" ] && TRX+=("$T/missing.emb") || TRX+=("$a"); done
"${MPI[@]}" -np 1 "$B" "${TR[@]}" --epochs 1 --checkpoint "$T/x.gguf" : \
  -np 1 "$B" "${TRX[@]}" --epochs 1 --checkpoint "$T/x.gguf" >"$T/log" 2>&1
st=$?
check "train: error on rank 1 at set-up stops the job with its message" \
  bash -c "[ $st -ne 0 ] && grep -q 'rank 1: .*missing.emb' '$T/log' && [ ! -e '$T/x.gguf' ]"
# rank 0 cannot write its checkpoint (mid-training): every rank stops
"${MPI[@]}" -np 1 "$B" "${TR[@]}" --epochs 1 --checkpoint "$T/nodir/y.gguf" : \
  -np 1 "$B" "${TR[@]}" --epochs 1 --checkpoint "$T/y.gguf" >"$T/log" 2>&1
st=$?
check "train: rank 0 failing to write a checkpoint stops every rank with the message" \
  bash -c "[ $st -ne 0 ] && grep -q 'rank 0: .*nodir/y.gguf' '$T/log' && [ ! -e '$T/y.gguf' ]"
"${MPI[@]}" -np 3 "$B" "${TR[@]}" --epochs 1 --chunks 2 --checkpoint "$T/z.gguf" >"$T/log" 2>&1
st=$?
check "train: more ranks than chunks is refused" \
  bash -c "[ $st -ne 0 ] && grep -q 'at least the number of ranks' '$T/log'"

# the attention decoder on a float16 grid file: sharded grid extraction and training, same bits
"$B" extract --encoder "$ENC" --images "$IMG" --list "$T/all.txt" --output grid --dtype f16 --out "$T/g1.emb" \
  >"$T/log" 2>&1
"${MPI[@]}" -np 2 "$B" extract --encoder "$ENC" --images "$IMG" --list "$T/all.txt" --output grid --dtype f16 \
  --out "$T/g2.emb" >"$T/log" 2>&1
check "extract: a float16 grid file from 2 ranks = 1 process, byte for byte" \
  bash -c "[ -s '$T/g1.emb' ] && cmp -s '$T/g1.emb' '$T/g2.emb'"
AT=(train --embeddings "$T/g1.emb" --captions "$CAPS" --train-split "$T/train.txt" --val-split "$T/dev.txt"
    --decoder attention --att-size 8 --batch 8 --batches 3 --epochs 2 --val-batches 2 --min-count 2 --hidden 12
    --embed 8 --out-hidden 8 --chunks 4 --quiet)
"$B" "${AT[@]}" --checkpoint "$T/a1.gguf" >"$T/log" 2>&1
"${MPI[@]}" -np 2 "$B" "${AT[@]}" --checkpoint "$T/a2.gguf" >"$T/log" 2>&1
check "train: attention decoder, 2 ranks = 1 process (checkpoint and history)" \
  bash -c "[ -s '$T/a1.gguf' ] && cmp -s '$T/a1.gguf' '$T/a2.gguf' && cmp -s '$T/a1.history.csv' '$T/a2.history.csv'"

# ---- evaluation split across ranks: one table, the same as one process
EV=(eval --model "$T/n1.gguf" --embeddings "$T/e1.emb" --split "$T/dev.txt" --captions "$CAPS" --quiet)
"$B" "${EV[@]}" --results-out "$T/r1.json" >"$T/t1" 2>"$T/log"
"${MPI[@]}" -np 3 "$B" "${EV[@]}" --results-out "$T/r3.json" >"$T/t3" 2>"$T/log"
check "eval: 3 ranks print one table equal to one process's" \
  bash -c "[ \$(grep -c '^CIDEr:' '$T/t3') = 1 ] && diff <(tail -n +2 '$T/t1') <(tail -n +2 '$T/t3') >/dev/null && cmp -s '$T/r1.json' '$T/r3.json'"
"${MPI[@]}" -np 1 "$B" "${EV[@]}" : -np 1 "$B" "${EV[@]/$T\/n1.gguf/$T/none.gguf}" >"$T/t4" 2>"$T/log"
st=$?
check "eval: a missing model on rank 1 stops both ranks with its message" \
  bash -c "[ $st -ne 0 ] && grep -q 'rank 1: .*none.gguf' '$T/log' && ! grep -q CIDEr '$T/t4'"

# ---- 2 ranks in two network namespaces joined by a veth pair (TCP between them)
if ! ip netns add "$NS0" 2>/dev/null; then
  sk "netns: cannot create network namespaces here (needs root / CAP_SYS_ADMIN)"
else
  ip netns add "$NS1"
  ip link add "v$$a" type veth peer name "v$$b"
  ip link set "v$$a" netns "$NS0"; ip link set "v$$b" netns "$NS1"
  ip -n "$NS0" addr add 10.231.0.1/24 dev "v$$a"; ip -n "$NS1" addr add 10.231.0.2/24 dev "v$$b"
  for ns in "$NS0" "$NS1"; do ip -n "$ns" link set lo up; done
  ip -n "$NS0" link set "v$$a" up; ip -n "$NS1" link set "v$$b" up
  # mpirun's "remote shell" into the other namespace: the host 10.231.0.2 is namespace NS1
  cat >"$T/nsexec" <<EOF
#!/usr/bin/env bash
host=\$1; shift
[ "\$host" = 10.231.0.2 ] || { echo "nsexec: unknown host \$host" >&2; exit 1; }
exec ip netns exec $NS1 /bin/sh -c "\$*"
EOF
  chmod +x "$T/nsexec"
  ip netns exec "$NS0" "${MPI[@]}" --mca btl self,tcp --mca btl_tcp_if_include 10.231.0.0/24 \
    --mca oob_tcp_if_include 10.231.0.0/24 --mca plm_rsh_agent "$T/nsexec" -H 10.231.0.1,10.231.0.2 -np 2 \
    -x IMCAP_THREADS -x OPENBLAS_NUM_THREADS --wdir "$ROOT" \
    "$B" "${TR[@]}" --epochs 3 --chunks 6 --checkpoint "$T/ns.gguf" >"$T/log" 2>&1
  st=$?
  ip netns exec "$NS0" "${MPI[@]}" --mca btl self,tcp --mca btl_tcp_if_include 10.231.0.0/24 \
    --mca oob_tcp_if_include 10.231.0.0/24 --mca plm_rsh_agent "$T/nsexec" -H 10.231.0.1,10.231.0.2 -np 2 \
    ip -o -4 addr show >"$T/addrs" 2>&1
  check "netns: the two ranks run in different namespaces (one sees 10.231.0.1, the other 10.231.0.2)" \
    bash -c "[ \$(grep -c ' 10.231.0.1/' '$T/addrs') = 1 ] && [ \$(grep -c ' 10.231.0.2/' '$T/addrs') = 1 ]"
  check "netns: 2 ranks over a veth TCP link (exit $st) = 1 process" \
    bash -c "[ $st -eq 0 ] && cmp -s '$T/n1.gguf' '$T/ns.gguf' && cmp -s '$T/n1.history.csv' '$T/ns.history.csv'"
  [ "$st" -eq 0 ] || tail -n 20 "$T/log"
fi
finish
