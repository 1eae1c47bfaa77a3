"""Training step time of M stacked CNN-zoo members (StackedNet, torch.func vmap) vs M solo steps.

Run (about a minute on one CPU core):

    OMP_NUM_THREADS=1 python bench/bench_stacked.py
    python bench/bench_stacked.py --model tiny/resnet20 --members 2 4 --batch 32 --steps 10 --rounds 5

For each M: M solo networks (the smoke cnn_zoo's tiny/resnet20 on the MNIST shape 1x28x28 by
default, batch 32, random data) each take one Adam step (zero_grad, forward, cross-entropy,
backward, step) one after another, against one Adam step of a StackedNet of the same M nets on
(M, 32, 1, 28, 28). The two run interleaved for `--rounds` rounds of `--steps` steps each (the
first round is a warm-up and dropped); the ratio solo time / stacked time is taken per round and
its median printed: > 1 means stacking is faster. Process CPU time is printed too.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from activation_hash.batched.stacked import StackedNet

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root: tests/ helpers
from tests.zoo import build  # noqa: E402


def timed(fn, steps: int, device: str) -> tuple[float, float]:
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        fn()
    sync()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny/resnet20")
    parser.add_argument("--members", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    shape = (1, 28, 28)
    print(f"{args.model} on {shape}, batch {args.batch}, Adam, {args.steps} steps x {args.rounds - 1} rounds "
          f"(+1 warm-up), torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, device {args.device}")
    for m in args.members:
        torch.manual_seed(0)
        solos = [build(args.model, shape, 10).to(args.device).train() for _ in range(m)]
        stacked = StackedNet(solos).train()
        x = torch.randn(m, args.batch, *shape, device=args.device)
        y = torch.randint(0, 10, (m, args.batch), device=args.device)
        solo_opts = [torch.optim.Adam(s.parameters(), lr=1e-3) for s in solos]
        opt = torch.optim.Adam(stacked.parameters(), lr=1e-3)

        def solo_steps():
            for i, (net, o) in enumerate(zip(solos, solo_opts)):
                o.zero_grad()
                F.cross_entropy(net(x[i]), y[i]).backward()
                o.step()

        def stacked_step():
            opt.zero_grad()
            logits = stacked(x)
            sum(F.cross_entropy(logits[i], y[i]) for i in range(m)).backward()
            opt.step()

        rows = []
        for r in range(args.rounds):
            s_wall, s_cpu = timed(solo_steps, args.steps, args.device)
            b_wall, b_cpu = timed(stacked_step, args.steps, args.device)
            if r:
                rows.append((s_wall, s_cpu, b_wall, b_cpu))
        ratio = statistics.median(s / b for s, _, b, _ in rows)
        cpu_ratio = statistics.median(s / b for _, s, _, b in rows)
        solo_ms = statistics.median(s for s, *_ in rows) / args.steps * 1e3
        stacked_ms = statistics.median(b for _, _, b, _ in rows) / args.steps * 1e3
        print(f"M={m}: {m} solo steps {solo_ms:.1f} ms, one stacked step {stacked_ms:.1f} ms per step; "
              f"ratio solo/stacked wall {ratio:.2f}x (CPU {cpu_ratio:.2f}x; per round "
              f"{', '.join(f'{s / b:.2f}' for s, _, b, _ in rows)})")


if __name__ == "__main__":
    main()
