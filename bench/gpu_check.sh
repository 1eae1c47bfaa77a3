#!/usr/bin/env bash
# GPU checks in one go (< 5 min): a training run on CUDA, the batched-training benchmark, the
# GEMM K-NN path against faiss on the same codes, a batched group through the launcher's code on
# CUDA, stacked CNN steps, and the metric backends (torch on CUDA against scikit-learn, per
# family, with agreement figures). The GPU machine has torch, Lightning,
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

echo "== 4. a batched group on CUDA (run_group: 2 MLP members, MNIST 2,000 images, 2 epochs) vs a solo run"
rm -rf /tmp/gpu_group /tmp/gpu_solo
timeout 120 python - "${ACCELERATOR:-gpu}" <<'PY'
import json
import sys
from pathlib import Path

from hydra import compose, initialize_config_module

from activation_hash.batched.compare import compare_runs
from activation_hash.batched.run_group import run_group
from activation_hash.run import run

common = ["data=mnist", "data.train_size=2000", "trainer.max_epochs=2", "codes.epochs=[0,2]",
          "progress_bar=none", "codes.verbose=false", f"trainer.accelerator={sys.argv[1]}"]
with initialize_config_module(config_module="activation_hash.conf", version_base="1.3"):
    group = [compose(config_name="config", overrides=[*common, f"seed={s}", f"output_dir=/tmp/gpu_group/{s}"])
             for s in (0, 1)]
    solo = compose(config_name="config", overrides=[*common, "seed=0", "output_dir=/tmp/gpu_solo/0"])
results = run_group(group)
run(solo)
device = json.loads(Path("/tmp/gpu_group/0/meta.json").read_text())["batched"]["device"]
print(f"group on {device}: test/knn_acc {[round(r['test/knn_acc'], 4) for r in results]}")
print("member 0 vs its solo run, worst relative difference:", compare_runs(Path("/tmp/gpu_group/0"), Path("/tmp/gpu_solo/0"), {}))
PY

echo "== 5. stacked CNN steps (tiny/resnet20, M = 2, 8, 32) vs solo steps on CUDA"
timeout 60 python bench/bench_stacked.py --device cuda --members 2 8 32 --threads 0

echo "== 6. metric backends: torch on CUDA vs scikit-learn/faiss on the CPU, per family, with agreement"
# MNIST width 100 and CIFAR-10 5x200 on 20,000 + 5,000 images (CIFAR's archive must be under
# $ACTIVATION_HASH_DATA), and 2,500 synthetic codes of 131,072 bits (kernel K-Means, row-space logreg)
timeout 150 python bench/bench_backends.py --device cuda --threads 0 --train-size 20000 --test-size 5000 \
    --wide-rows 2500 --wide-bits 131072
