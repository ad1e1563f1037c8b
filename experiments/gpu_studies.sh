#!/usr/bin/env bash
# The density studies on one GPU, in one call of at most 10 minutes (docs/studies.md, "On one
# GPU"), on a CUDA machine whose python3 holds JAX with its CUDA plugin; jaxvae runs from this
# checkout (PYTHONPATH=src), Fashion-MNIST's IDX files come from $JAXVAE_FASHION_MNIST_DIR:
#
#     JAXVAE_FASHION_MNIST_DIR=/path/to/idx bash experiments/gpu_studies.sh OUTDIR
#
#   1. benchmarks/vmap_seeds.py: 16 seeds of peer_mlp.py in one vectorized program against the
#      same 16 run one after another: the speed-up that sets jaxvae.seeds.BACKEND_DEFAULT["gpu"];
#   2. experiments/studies/exemplar_fmnist.py at its full protocol (3 variants x 3 seeds, up to
#      2000 epochs with early stopping, k=5000 NLL on the 10k test images), each variant's seeds
#      in one vectorized program (--seeds-at-once 3), a process per variant (--shard i/3: the
#      runs are ordered seed first, so shard i of 3 holds variant i's three seeds);
#   3. experiments/studies/iwae_table1_fmnist.py at the paper's budget, as far as the time left
#      takes it: a process per run (--shard i/12);
#   then each study's report and where it stands (steps done, rates, time left).
#
# OUTDIR (default $OUT) gets vmap_seeds.json, a study directory per study with each study's
# log beside it (NAME.log), and summary.txt, what the script printed; with
# JAXVAE_GPU_TARBALL=FILE also a tarball of all of it but the checkpoints. The script ends
# within JAXVAE_GPU_STUDIES_BUDGET_S seconds (default 570): each stage has a deadline at which
# its processes get SIGTERM (a study saves its checkpoints and exits 75) and, GRACE s later,
# SIGKILL; the same command (same OUTDIR) continues every study from its checkpoints.
#
# JAXVAE_GPU_STUDIES_DRY_RUN=1: every command line here at a tiny budget (the studies'
# --config overrides, 2 seeds), on any machine: the rehearsal of tests/test_gpu_studies.py.
# JAXVAE_GPU_VMAP=0 leaves stage 1 out (measured once, it need not take a later call's time).
# JAXVAE_GPU_EXEMPLAR_PROCS=P (default 3) starts the first P of the Exemplar study's 3 shards
# (variants), JAXVAE_GPU_IWAE_PROCS=P (default 12) the first P of the IWAE table's 12.
set -u
OUTDIR=${1:-${OUT:?usage: bash experiments/gpu_studies.sh OUTDIR (or set OUT)}}
BUDGET=${JAXVAE_GPU_STUDIES_BUDGET_S:-570}
RESERVE=${JAXVAE_GPU_STUDIES_RESERVE_S:-60}  # for the reports and the summary at the end
GRACE=${JAXVAE_GPU_STUDIES_GRACE_S:-30}      # from SIGTERM to SIGKILL
EXEMPLAR_PROCS=$((${JAXVAE_GPU_EXEMPLAR_PROCS:-3} < 3 ? ${JAXVAE_GPU_EXEMPLAR_PROCS:-3} : 3))
IWAE_PROCS=$((${JAXVAE_GPU_IWAE_PROCS:-12} < 12 ? ${JAXVAE_GPU_IWAE_PROCS:-12} : 12))
PY=${PYTHON:-python3}
START=$SECONDS
mkdir -p "$OUTDIR"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
# Several processes share the GPU: none takes most of its memory up front; programs that several
# processes (or runs) compile alike are compiled once.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-$OUTDIR/xla-cache}
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=${JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS:-1}

VMAP=(--seeds 16 --steps 400 --rounds 5)
VMAP_LIMIT=120
EXEMPLAR_ARGS=()
IWAE_ARGS=()
if [ "${JAXVAE_GPU_STUDIES_DRY_RUN:-0}" = 1 ]; then
  VMAP=(--config experiments/configs/smoke.py --seeds 2 --steps 2 --rounds 1)
  SMALL=(--config.data.limit_test=64 --config.eval.iwae_k=3 --config.eval.iwae_num_examples=32
    --config.eval.num_pictures=4)
  EXEMPLAR_ARGS=(--seeds 2 "${SMALL[@]}" --config.train.epochs=2 --config.data.limit_train=300
    --config.data.validation_size=100 --config.objective.warmup_steps=4)
  IWAE_ARGS=("${SMALL[@]}" --config.train.epochs=1 --config.data.limit_train=60)
fi

say() { echo "[$((SECONDS - START)) s] $*" | tee -a "$OUTDIR/summary.txt"; }
left() { echo $((BUDGET - (SECONDS - START))); }

# LIMIT CMD...: CMD for at most LIMIT s (then SIGTERM, and SIGKILL GRACE s later); its status.
limited() {
  local limit=$1
  shift
  timeout --preserve-status -s TERM -k "$GRACE" "$limit" "$@"
}

# NAME FILE PROCS SHARDS ARGS...: `jaxvae study run FILE --workdir OUTDIR/NAME ARGS` as PROCS
# processes, process i taking --shard i/SHARDS, until the time left but the reserve; their
# output in OUTDIR/NAME.log.
study() {
  local name=$1 file=$2 procs=$3 shards=$4 codes=() pids=() i
  shift 4
  local limit=$(($(left) - RESERVE - GRACE))
  if [ "$limit" -lt 10 ] || [ "$procs" -lt 1 ]; then
    say "$name: not started ($procs processes asked for, $(left) s left)"
    return
  fi
  say "$name: $procs process(es), at most $limit s"
  for ((i = 0; i < procs; i++)); do
    limited "$limit" $PY -m jaxvae study run "$file" --workdir "$OUTDIR/$name" \
      --shard "$i/$shards" "$@" >> "$OUTDIR/$name.log" 2>&1 &
    pids+=($!)
  done
  for i in "${pids[@]}"; do
    wait "$i"
    codes+=($?)
  done
  say "$name: exit codes ${codes[*]} (0: its runs done; 75, 143, 137: stopped at the" \
    "deadline, the same command continues it; 1: a run failed, see $name.log)"
}

say "gpu_studies in $OUTDIR, at most $BUDGET s${JAXVAE_GPU_STUDIES_DRY_RUN:+, dry run}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader \
  >> "$OUTDIR/summary.txt" 2>&1

# 1. Seeds in one program: what jaxvae.seeds.BACKEND_DEFAULT["gpu"] rests on.
if [ "${JAXVAE_GPU_VMAP:-1}" = 0 ]; then
  say "vmap_seeds: left out (JAXVAE_GPU_VMAP=0)"
else
  limited "$VMAP_LIMIT" $PY benchmarks/vmap_seeds.py "${VMAP[@]}" --out "$OUTDIR/vmap_seeds.json" \
    > "$OUTDIR/vmap_seeds.out" 2> "$OUTDIR/vmap_seeds.log"
  say "vmap_seeds (exit $?): $(tail -n 1 "$OUTDIR/vmap_seeds.out")"
fi
# 2. The Exemplar VAE table at its full protocol; 3. the IWAE table, with the time left.
study exemplar_fmnist experiments/studies/exemplar_fmnist.py "$EXEMPLAR_PROCS" 3 \
  --seeds-at-once 3 "${EXEMPLAR_ARGS[@]}"
study iwae_table1_fmnist experiments/studies/iwae_table1_fmnist.py "$IWAE_PROCS" 12 \
  "${IWAE_ARGS[@]}"

for name in exemplar_fmnist iwae_table1_fmnist; do
  [ -f "$OUTDIR/$name/study.json" ] || continue
  say "$name: report (exit code at its end)"
  limited 45 $PY -m jaxvae study report "$OUTDIR/$name" 2>> "$OUTDIR/$name.log" \
    | tee -a "$OUTDIR/summary.txt"
  echo "exit ${PIPESTATUS[0]}" | tee -a "$OUTDIR/summary.txt"
done
if [ -n "${JAXVAE_GPU_TARBALL:-}" ]; then
  tar czf "$JAXVAE_GPU_TARBALL" --exclude='checkpoints*' --exclude=xla-cache -C "$OUTDIR" .
fi
say "gpu_studies: done in $((SECONDS - START)) s"
