#!/usr/bin/env bash
# GPU figures of docs/benchmarks.md, in one go, on a CUDA machine whose python3 holds JAX (with
# its CUDA plugin) and PyTorch. jaxvae runs from this checkout (PYTHONPATH=src); ml_collections
# and tensorboardX are the requirements such images tend to lack (pip install them, or put their
# wheels in .whl/).
#
#     JAXVAE_FASHION_MNIST_DIR=/path/to/idx bash benchmarks/gpu.sh OUTDIR
#
# Then `python benchmarks/gpu_roofline.py OUTDIR` (anywhere) makes summary.json and the table.
#
# Writes one JSON file per measurement into OUTDIR (default benchmarks/results/gpu), in order of
# importance, so a run cut short keeps what it finished:
#   vmap_seeds_{mlp,conv}_16.json       16 seeds in one vectorized program vs 16 sequential runs
#   bench_{mlp,conv}_b{128,8192}.json   jaxvae bench: engine images/s, FLOPs and bytes per image,
#                                        measured matmul rate and memory bandwidth, roofline
#   torch_{mlp,conv}_b{128,8192}.json   the PyTorch reference on the same GPU (TF32 products, as
#                                        JAX's default precision uses there), median epoch
#   bench_conv_b{128,8192}_lax.json      the conv VAE with cuDNN's convolutions instead
#   train_{default,deterministic}_{1,2}.json  two identical 1-epoch runs each, without and with
#                                        --xla_gpu_deterministic_ops (params_digest)
#
# The 4-epoch-minus-1-epoch protocol of benchmarks/compare.py (--torch-device cuda) is not run
# here: on a GPU jaxvae's epoch takes a few hundredths of a second, far below the start-up noise
# of the processes whose wall times it subtracts (docs/benchmarks.md).
set -u
OUT=${1:-benchmarks/results/gpu}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
$PY -c "import jax, torch; print('jax', jax.__version__, jax.devices(), 'torch', torch.__version__)" \
  | tee -a "$OUT/gpu.txt"

step() {  # NAME CMD...: runs CMD, its stdout's last line to OUT/NAME.json; failures are logged
  local name=$1; shift
  local t0=$SECONDS
  if "$@" > "$OUT/$name.out" 2> "$OUT/$name.err"; then
    [ -f "$OUT/$name.json" ] || tail -n 1 "$OUT/$name.out" > "$OUT/$name.json"
    echo "$name: done in $((SECONDS - t0)) s"
  else
    echo "$name: FAILED ($?) after $((SECONDS - t0)) s"; tail -n 5 "$OUT/$name.err"
  fi
  rm -f "$OUT/$name.out"
  [ -s "$OUT/$name.err" ] || rm -f "$OUT/$name.err"
  # JAXVAE_GPU_TARBALL: keep a tarball of everything so far (for a machine that returns files).
  [ -z "${JAXVAE_GPU_TARBALL:-}" ] || tar czf "$JAXVAE_GPU_TARBALL" -C "$OUT" .
}

# Seeds in one program (docs/studies.md, jaxvae.seeds.BACKEND_DEFAULT): 16 seeds vectorized
# against the same 16 run one after another, the engine alone.
step vmap_seeds_mlp_16 $PY benchmarks/vmap_seeds.py --seeds 16 --steps 400 --rounds 5 \
  --out "$OUT/vmap_seeds_mlp_16.json"
step vmap_seeds_conv_16 $PY benchmarks/vmap_seeds.py --config experiments/configs/default.py \
  --seeds 16 --steps 200 --rounds 5 --out "$OUT/vmap_seeds_conv_16.json"

for model in mlp conv; do
  cfg=experiments/configs/peer_$model.py
  step bench_${model}_b128 $PY -m jaxvae bench --config $cfg --repeats 5 \
    --iwae-num 1000 --iwae-batch 100
  step torch_${model}_b128 $PY benchmarks/torch_vae.py --model $model --device cuda --tf32 \
    --epochs 3 --iwae-k 5000 --iwae-num 1000 --iwae-batch 100 --json
  step bench_${model}_b8192 $PY -m jaxvae bench --config $cfg --repeats 9 --iwae-k 0 \
    --config.train.batch_size=8192
  step torch_${model}_b8192 $PY benchmarks/torch_vae.py --model $model --device cuda --tf32 \
    --epochs 6 --batch-size 8192 --json
done
# cuDNN's convolutions (conv_impl="lax") against the convolution-free formulation that
# conv_impl="auto" picks on a GPU.
step bench_conv_b128_lax $PY -m jaxvae bench --config experiments/configs/peer_conv.py \
  --repeats 5 --iwae-num 1000 --iwae-batch 100 --config.model.conv_impl=lax
step bench_conv_b8192_lax $PY -m jaxvae bench --config experiments/configs/peer_conv.py \
  --repeats 9 --iwae-k 0 --config.train.batch_size=8192 --config.model.conv_impl=lax
# Bit-identical runs: the same 1-epoch run twice, with XLA's default GPU reductions and with
# --xla_gpu_deterministic_ops; each summary.json carries params_digest.
for flags in default deterministic; do
  for i in 1 2; do
    x=""; [ $flags = deterministic ] && x="--xla_gpu_deterministic_ops=true"
    XLA_FLAGS="$x" step train_${flags}_$i $PY -m jaxvae train \
      --config experiments/configs/peer_mlp.py --workdir "$OUT/run_${flags}_$i" \
      --config.train.epochs=1 --config.train.progress=false
    cp "$OUT/run_${flags}_$i/summary.json" "$OUT/train_${flags}_$i.json" 2>/dev/null
    rm -rf "$OUT/run_${flags}_$i"
  done
done
