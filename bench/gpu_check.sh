#!/usr/bin/env bash
# GPU checks in one go (< 5 min): a training run on CUDA, the batched-training benchmark, and the
# GEMM K-NN path against faiss on the same codes. The GPU machine has torch, Lightning,
# torchmetrics and scikit-learn (Python 3.12) but not Hydra, OmegaConf, faiss or W&B, and cannot
# fetch, so first download the wheels on a machine with internet, next to this repository:
#
#   pip download --python-version 3.12 --only-binary=:all: --platform manylinux2014_x86_64 \
#       --platform manylinux_2_28_x86_64 --no-deps -d wheels hydra-core==1.3.2 omegaconf==2.3.0 \
#       PyYAML packaging faiss-cpu numpy
#   pip wheel --no-deps -w wheels antlr4-python3-runtime==4.9.3   # sdist only; pure Python, any 3.x
#
# then: bash bench/gpu_check.sh   (MNIST IDX files under $ACTIVATION_HASH_DATA/MNIST/raw)
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD WANDB_MODE=disabled
python -m pip install --no-index --find-links wheels/ hydra-core omegaconf faiss-cpu
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name())"

echo "== 1. a training run on CUDA (MNIST, 2,000 images, 3 epochs)"
timeout 120 python -m activation_hash data=mnist data.train_size=2000 trainer.max_epochs=3 trainer.accelerator=gpu \
    trainer.devices=1 logger=none progress_bar=none output_dir=/tmp/gpu_check_run

echo "== 2. batched training: the paper's MNIST width grid (115 members), all 60,000 images, 1 epoch"
timeout 150 python bench/bench_batched.py --device cuda --train-size 0 --epochs 1

echo "== 3. K-NN on codes: GEMM path on CUDA vs faiss on CPU"
timeout 60 python - <<'PY'
import time
import numpy as np
from activation_hash.metrics.knn import knn_neighbors
rng = np.random.default_rng(0)
train = np.packbits(rng.integers(0, 2, (60000, 1024), dtype=np.uint8), axis=1)
test = np.packbits(rng.integers(0, 2, (10000, 1024), dtype=np.uint8), axis=1)
t0 = time.perf_counter(); _, d_faiss, _ = knn_neighbors(train, test, 9); t_faiss = time.perf_counter() - t0
t0 = time.perf_counter(); _, d_gemm, _ = knn_neighbors(train, test, 9, n_bits=1024, device="cuda")
t_gemm = time.perf_counter() - t0
assert np.array_equal(np.asarray(d_faiss), np.asarray(d_gemm)), "GEMM and faiss neighbour distances differ"
print(f"9-NN, 60,000 x 10,000 codes of 1,024 bits: same distances; faiss {t_faiss:.2f} s, GEMM cuda {t_gemm:.2f} s")
PY
