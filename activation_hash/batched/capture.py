"""Each member's codes from one batched forward (eval mode) and its encoding metrics, computed by
the same `activation_hash.metrics.encoding_metrics` a solo run's callback uses, plus the network's
accuracy. Members must have equally many train and test samples (true for the batchable keys)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from activation_hash.batched.mlp import BatchedMLP
from activation_hash.metrics import encoding_metrics


@torch.no_grad()
def member_metrics(model: BatchedMLP, datamodules: Sequence, **metric_kwargs: Any) -> list[dict[str, Any]]:
    was_training = model.training
    model.eval()
    codes, acc = {}, {}
    for split in ("train", "test"):
        x = torch.stack([getattr(dm, f"x_{split}") for dm in datamodules])
        y = torch.stack([getattr(dm, f"y_{split}") for dm in datamodules])
        codes[split] = [np.packbits(c.cpu().numpy(), axis=1) for c in model.member_codes(x)]
        acc[split] = (model(x).argmax(-1) == y).float().mean(1).tolist()
    model.train(was_training)
    out = []
    for m, dm in enumerate(datamodules):
        n_bits = sum(model.widths[m][:-1])
        metrics = encoding_metrics(codes["train"][m], dm.y_train.cpu().numpy(), codes["test"][m],
                                   dm.y_test.cpu().numpy(), n_bits, **metric_kwargs)
        metrics.update({"train/net_acc": acc["train"][m], "test/net_acc": acc["test"][m]})
        out.append(metrics)
    return out
