#!/usr/bin/env bash
# GPU checks in one go, under 5 minutes worst case on one GPU: a training run on CUDA, the
# batched-training benchmark, the GEMM K-NN path against faiss on the same codes, a batched group
# through the launcher's code on CUDA against its solo twin, stacked CNN steps, and the metric
# backends (torch on CUDA against scikit-learn, per family, with agreement figures) and a capture
# that scores a CNN's codes from the network (codes.source=network) against the memory path. Every step
# runs under its own `timeout`; the limits below sum to 275 s (plus at most 2 s per step for a
# kill), and the script refuses to start if they sum to more than 290 s. Each step prints
# "PASS" (exit 0 within its limit) or "FAIL (exit N[, timed out])", the next step runs anyway,
# and a summary ends the output; the exit status is 1 if any step failed. PASS means the step
# ran and its own checks held (steps 3 and 6 compare exactly and exit non-zero on a difference);
# the timings, ratios and agreement figures are printed for reading.
#
# The GPU machine has torch, Lightning, torchmetrics and scikit-learn (Python 3.12) but not
# Hydra, OmegaConf, faiss or W&B, and cannot fetch, so first download the wheels on a machine
# with internet, next to this repository:
#
#   pip download --python-version 3.12 --only-binary=:all: --platform manylinux2014_x86_64 \
#       --platform manylinux_2_28_x86_64 --no-deps -d wheels hydra-core==1.3.2 omegaconf==2.3.0 \
#       PyYAML packaging faiss-cpu numpy
#   pip wheel --no-deps -w wheels antlr4-python3-runtime==4.9.3   # sdist only; pure Python, any 3.x
#
# then: bash bench/gpu_check.sh   (MNIST IDX files under $ACTIVATION_HASH_DATA/MNIST/raw, CIFAR-10's
# archive under $ACTIVATION_HASH_DATA, default ../shared/datasets; the setup step checks them).
# The wheels are installed only when Hydra or faiss is missing.
#
#   bash bench/gpu_check.sh --cpu   # every step on the CPU at tiny sizes, limits x4: checks the
#                                   # script itself where there is no GPU (its figures mean nothing)
#   bash bench/gpu_check.sh --budget   # print the steps' limits and their sum, run nothing
# PYTHON=/path/to/python selects the interpreter (default: python).
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD WANDB_MODE=disabled
export ACTIVATION_HASH_DATA=${ACTIVATION_HASH_DATA:-$PWD/../shared/datasets}  # bench_backends.py's default too
PY=${PYTHON:-python}
MODE=cuda
case "${1:-}" in
    --cpu) MODE=cpu ;;
    --budget) MODE=budget ;;
    "") ;;
    *) echo "error: argument=$1: allowed: --cpu, --budget, nothing (CUDA)" >&2; exit 2 ;;
esac

# seconds per step on the GPU machine (name=limit); the --cpu run multiplies them by 4
LIMITS=(setup=15 cuda=10 train=30 batched=40 knn=20 group=45 stacked=25 backends=70 gram=20)
KILL_AFTER=2
total=0
for entry in "${LIMITS[@]}"; do total=$((total + ${entry#*=})); done
worst=$((total + KILL_AFTER * ${#LIMITS[@]}))
echo "step limits: ${LIMITS[*]}; sum ${total} s, worst case ${worst} s with kills (on the GPU machine)"
if ((total > 290)); then
    echo "error: step limits sum to ${total} s: allowed: at most 290 s (the whole check must stay under 5 minutes)" >&2
    exit 2
fi
[[ $MODE == budget ]] && exit 0

limit() {  # limit NAME -> seconds for this mode
    local entry
    for entry in "${LIMITS[@]}"; do
        if [[ ${entry%%=*} == "$1" ]]; then
            if [[ $MODE == cpu ]]; then echo $((${entry#*=} * 4)); else echo "${entry#*=}"; fi
            return
        fi
    done
    echo "error: step=$1: no limit for it in LIMITS" >&2
    exit 2
}

RESULTS=()
FAILED=0
step() {  # step NAME TITLE COMMAND...: runs COMMAND under NAME's limit (stdin passes through)
    local name=$1 title=$2 secs start rc status
    shift 2
    secs=$(limit "$name")
    echo
    echo "== ${name}: ${title} (limit ${secs} s)"
    start=$SECONDS
    timeout --kill-after="$KILL_AFTER" "$secs" "$@"
    rc=$?
    if ((rc == 0)); then
        status=PASS
    else
        status="FAIL (exit ${rc}$( ((rc == 124 || rc == 137)) && echo ', timed out'))"
        FAILED=1
    fi
    echo "== ${name}: ${status} in $((SECONDS - start)) s"
    RESULTS+=("${name}: ${status} in $((SECONDS - start)) s of ${secs} s")
}

if [[ $MODE == cpu ]]; then
    DEV=cpu ACCEL=cpu
    TRAIN=(data.train_size=300 trainer.max_epochs=1)
    BATCHED=(--train-size 300 --seeds 1 --epochs 1)
    KNN=(3000 500)
    GROUP_SIZE=300
    STACKED=(--members 2 --steps 2 --rounds 2)
    BACKENDS=(--threads 1 --train-size 600 --test-size 200 --steps 1 --wide-rows 300 --wide-bits 2048)
else
    DEV=cuda ACCEL=gpu
    TRAIN=(data.train_size=2000 trainer.max_epochs=2)  # captures at epochs 0, 1, 2
    BATCHED=(--train-size 10000 --epochs 1)  # the paper's width grid, 115 members
    KNN=(30000 5000)
    GROUP_SIZE=1000
    STACKED=(--members 2 8 32 --steps 5 --rounds 3)
    # MNIST width 100 and CIFAR-10 5x200 on 5,000 + 1,000 images (reading CIFAR's archive alone
    # takes 10-45 s), and 1,000 synthetic codes of 32,768 bits (more bits than rows: kernel
    # K-Means, row-space logistic regression)
    BACKENDS=(--threads 0 --train-size 5000 --test-size 1000 --wide-rows 1000 --wide-bits 32768)
fi
echo "mode ${MODE}: torch on ${DEV}, python ${PY}"

setup() {
    local f
    for f in MNIST/raw/train-images-idx3-ubyte.gz MNIST/raw/t10k-images-idx3-ubyte.gz cifar-10-python.tar.xz; do
        if [[ ! -e $ACTIVATION_HASH_DATA/$f ]]; then
            echo "error: ACTIVATION_HASH_DATA=$ACTIVATION_HASH_DATA: no $f there (MNIST's IDX files and CIFAR-10's archive are needed)" >&2
            return 2
        fi
    done
    echo "datasets under $ACTIVATION_HASH_DATA"
    if "$PY" -c "import hydra, omegaconf, faiss" 2>/dev/null; then
        echo "hydra, omegaconf and faiss already importable: nothing to install"
    else
        "$PY" -m pip install --no-index --find-links wheels/ hydra-core omegaconf faiss-cpu
    fi
}
step setup "the datasets and the carried wheels (Hydra, OmegaConf, faiss)" bash -c "$(declare -f setup); PY='$PY' setup"

if [[ $MODE == cpu ]]; then
    step cuda "no device check (--cpu)" "$PY" -c "import torch; print('torch', torch.__version__, 'on the CPU')"
else
    step cuda "a CUDA device" "$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name())"
fi

step train "a training run on ${DEV} (MNIST, ${TRAIN[*]})" \
    "$PY" -m activation_hash data=mnist "${TRAIN[@]}" trainer.accelerator="$ACCEL" \
    trainer.devices=1 logger=none progress_bar=none output_dir=/tmp/gpu_check_run_$$

step batched "batched training of the paper's MNIST width grid vs the members one by one (${BATCHED[*]})" \
    "$PY" bench/bench_batched.py --device "$DEV" "${BATCHED[@]}"

step knn "K-NN on ${KNN[0]} x ${KNN[1]} codes of 1,024 bits: GEMM path on ${DEV} vs faiss on the CPU" \
    "$PY" - "${KNN[@]}" "$DEV" <<'PY'
import sys
import time
import numpy as np
from activation_hash.metrics import knn_neighbors
n_train, n_test, device = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
rng = np.random.default_rng(0)
train = np.packbits(rng.integers(0, 2, (n_train, 1024), dtype=np.uint8), axis=1)
test = np.packbits(rng.integers(0, 2, (n_test, 1024), dtype=np.uint8), axis=1)
t0 = time.perf_counter(); _, d_faiss, _ = knn_neighbors(train, test, 9); t_faiss = time.perf_counter() - t0
t0 = time.perf_counter(); _, d_gemm, _ = knn_neighbors(train, test, 9, n_bits=1024, device=device)
t_gemm = time.perf_counter() - t0
assert np.array_equal(np.asarray(d_faiss), np.asarray(d_gemm)), "GEMM and faiss neighbour distances differ"
print(f"9-NN, {n_train:,} x {n_test:,} codes of 1,024 bits: same distances; faiss {t_faiss:.2f} s, GEMM {device} {t_gemm:.2f} s")
PY

rm -rf /tmp/gpu_group_$$ /tmp/gpu_solo_$$
step group "a batched group on ${DEV} (run_group: 2 MLP members, MNIST ${GROUP_SIZE} images, 2 epochs) vs its solo twin" \
    "$PY" - "$ACCEL" "$GROUP_SIZE" "/tmp/gpu_group_$$" "/tmp/gpu_solo_$$" <<'PY'
import json
import sys
from pathlib import Path

from hydra import compose, initialize_config_module

from activation_hash.batched.compare import compare_runs
from activation_hash.batched.run_group import run_group
from activation_hash.run import run

accel, size, group_dir, solo_dir = sys.argv[1:5]
common = ["data=mnist", f"data.train_size={size}", "trainer.max_epochs=2", "codes.epochs=[0,2]",
          "progress_bar=none", "codes.verbose=false", f"trainer.accelerator={accel}"]
with initialize_config_module(config_module="activation_hash.conf", version_base="1.3"):
    group = [compose(config_name="config", overrides=[*common, f"seed={s}", f"output_dir={group_dir}/{s}"])
             for s in (0, 1)]
    solo = compose(config_name="config", overrides=[*common, "seed=0", f"output_dir={solo_dir}/0"])
results = run_group(group)
run(solo)
device = json.loads(Path(f"{group_dir}/0/meta.json").read_text())["batched"]["device"]
print(f"group on {device}: test/knn_acc {[round(r['test/knn_acc'], 4) for r in results]}")
print("member 0 vs its solo run, worst relative difference:", compare_runs(Path(f"{group_dir}/0"), Path(f"{solo_dir}/0"), {}))
PY

step stacked "stacked CNN steps (tiny/resnet20, ${STACKED[*]}) vs solo steps on ${DEV}" \
    "$PY" bench/bench_stacked.py --device "$DEV" --threads 0 "${STACKED[@]}"

step backends "metric backends: torch on ${DEV} vs scikit-learn/faiss on the CPU, per family, with agreement (${BACKENDS[*]})" \
    "$PY" bench/bench_backends.py --device "$DEV" "${BACKENDS[@]}"

step gram "codes.source=network on ${DEV}: a conv net's codes (more bits than rows) scored from the Gram matrix vs the memory path" \
    "$PY" - "$DEV" "$MODE" <<'PY'
import sys
import time
import torch
from torch import nn
from activation_hash.codes.capture import describe_units
from activation_hash.codes.collect import collect_codes
from activation_hash.codes.gram import score_network
from activation_hash.runs.record import score_selections

device, mode = torch.device(sys.argv[1]), sys.argv[2]
n_train, n_test = (600, 200) if mode == "cpu" else (3000, 1000)
torch.manual_seed(0)
net = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
                    nn.Flatten(), nn.Linear(16 * 28 * 28, 10)).to(device)
gen = torch.Generator().manual_seed(1)
centers = torch.randn(10, 1, 28, 28, generator=gen)
loaders = {}
for split, n in (("train", n_train), ("test", n_test)):
    y = torch.randint(0, 10, (n,), generator=gen)
    x = centers[y] + torch.randn(n, 1, 28, 28, generator=gen)
    loaders[split] = [(x[i:i + 250], y[i:i + 250]) for i in range(0, n, 250)]
units = describe_units(net, (1, 28, 28))
which = ["redundancy", "kmeans", "knn", "logreg"]
t0 = time.perf_counter()
_, _, got = score_network(net, loaders, [0, 1], units, {"all": [0, 1]}, {"train": n_train, "test": n_test},
                          {"max_ram": 2**30}, which, device)
t_net = time.perf_counter() - t0
t0 = time.perf_counter()
codes = {s: collect_codes(net, loaders[s], [0, 1]) for s in loaders}
want = score_selections(codes["train"], codes["test"], None, which, {"backend": "torch"}, device)["all"]
t_mem = time.perf_counter() - t0
got = got["all"]
for key in ("train/redundancy", "test/redundancy", "test/knn_acc", "n_bits_used"):
    assert got[key] == want[key], (key, got[key], want[key])
gaps = {k: abs(got[k] - want[k]) for k in ("train/kmeans_acc", "test/kmeans_acc", "test/logreg_acc")}
assert gaps["test/logreg_acc"] <= 0.01 and max(gaps["train/kmeans_acc"], gaps["test/kmeans_acc"]) <= 0.12, gaps
print(f"{n_train:,} + {n_test:,} codes of {got['n_bits']:,} bits on {device}: network {t_net:.1f} s "
      f"({got['code_passes']} pass), memory path {t_mem:.1f} s; redundancy, K-NN equal; gaps {gaps}")
PY

rm -rf /tmp/gpu_check_run_$$ /tmp/gpu_group_$$ /tmp/gpu_solo_$$
echo
echo "== summary (mode ${MODE}, $SECONDS s in all)"
printf '%s\n' "${RESULTS[@]}"
if ((FAILED)); then echo "FAIL"; exit 1; fi
echo "PASS"
