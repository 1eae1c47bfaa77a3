"""BatchedMLP: M ReLU MLPs of one depth as stacked tensors, one `torch.baddbmm` per layer.

Built from the members' solo `activation_hash.models.mlp.MLP`s (their parameters copied, so the
initial weights are exactly a solo run's). Hidden widths may differ: each layer is padded to the
largest member's width with zero weights and biases, and a 0/1 mask multiplies the weights, the
biases and the ReLU output, so a padded unit never fires, its parameters get zero gradient (the
mask is in the graph) and stay zero under Adam/SGD (zero grad, zero state, zero update; weight
decay of a zero weight is zero), and `member_codes` drops it.

Batch norm is per member: one `F.batch_norm` whose channels are (member, unit) pairs, so each
member's statistics are over its own batch, with BatchNorm1d's kernel (momentum 0.1, eps 1e-5).

The solo MLP's Keras L2 term (`model.l2`, `models.loss_terms.keras_l2`: l2 * sum(W ** 2) over every
Linear weight, the output layer's included, no biases) is `member_loss_terms()`: per member the sum
over its slices of the stacked weights (a padded weight is 0: it adds 0 and gets gradient 0, so it
stays 0). The members share one l2 (model.l2 is not a batchable key).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from activation_hash.models.loss_terms import LossTerm


def _layers(solo: nn.Sequential) -> list[tuple[nn.Linear, nn.BatchNorm1d | None]]:
    """(Linear, BatchNorm1d or None) per layer of a solo MLP; the last has no ReLU."""
    out: list[tuple[nn.Linear, nn.BatchNorm1d | None]] = []
    for module in solo:
        if isinstance(module, nn.Linear):
            out.append((module, None))
        elif isinstance(module, nn.BatchNorm1d):
            out[-1] = (out[-1][0], module)
        elif not isinstance(module, (nn.Flatten, nn.ReLU)):
            raise ValueError(f"model: {type(module).__name__} layers cannot be batched (MLP only)")
    return out


class BatchedMLP(nn.Module):
    def __init__(self, solos: Sequence[nn.Sequential], momentum: float = 0.1, eps: float = 1e-5):
        super().__init__()
        per_member = [_layers(s) for s in solos]
        if len({len(p) for p in per_member}) != 1:
            raise ValueError("model.depth: batched members must have the same number of layers")
        if len({tuple(bn is not None for _, bn in p) for p in per_member}) != 1:
            raise ValueError("model.batch_norm: batched members must all use batch norm or none")
        self.members, self.momentum, self.eps = len(solos), momentum, eps
        self.l2 = _shared_l2(solos)
        self.widths = [[lin.out_features for lin, _ in p] for p in per_member]
        self.padded = len({tuple(w) for w in self.widths}) > 1  # else no mask is needed
        self.batch_norm = per_member[0][0][1] is not None
        self.weight, self.bias, self.gamma, self.beta = (nn.ParameterList() for _ in range(4))
        self.has_bias = per_member[0][0][0].bias is not None
        self.register_buffer("num_batches_tracked", torch.zeros(self.members, dtype=torch.long))
        fan_in = per_member[0][0][0].in_features
        for i in range(len(per_member[0])):
            width = max(p[i][0].out_features for p in per_member)
            w = torch.zeros(self.members, fan_in, width)
            b = torch.zeros(self.members, 1, width)
            mask = torch.zeros(self.members, 1, width)
            g, be = torch.zeros(self.members, 1, width), torch.zeros(self.members, 1, width)
            rm, rv = torch.zeros(self.members, width), torch.zeros(self.members, width)
            for m, layers in enumerate(per_member):
                lin, bn = layers[i]
                w[m, :lin.in_features, :lin.out_features] = lin.weight.detach().T
                if lin.bias is not None:
                    b[m, 0, :lin.out_features] = lin.bias.detach()
                mask[m, 0, :lin.out_features] = 1
                if bn is not None:
                    g[m, 0, :lin.out_features], be[m, 0, :lin.out_features] = bn.weight.detach(), bn.bias.detach()
                    rm[m, :lin.out_features] = bn.running_mean
                    rv[m, :lin.out_features] = bn.running_var
            self.weight.append(nn.Parameter(w))
            self.bias.append(nn.Parameter(b, requires_grad=self.has_bias))
            self.register_buffer(f"mask{i}", mask)
            # the input mask of layer i+1 is the output mask of layer i
            if self.batch_norm and i < len(per_member[0]) - 1:
                self.gamma.append(nn.Parameter(g))
                self.beta.append(nn.Parameter(be))
                self.register_buffer(f"running_mean{i}", rm)
                self.register_buffer(f"running_var{i}", rv)
            fan_in = width

    @property
    def depth(self) -> int:
        return len(self.weight)

    def forward(self, x: torch.Tensor, keep: list | None = None, member: int | None = None) -> torch.Tensor:
        """x: (M, B, ...) one batch per member -> logits (M, B, classes). With `keep` a list,
        the masked post-ReLU activations of every hidden layer are appended to it. With `member`
        an index, x is (1, B, ...) and only that member's network runs (its slice of every
        stacked tensor, the same arithmetic): a capture's forward for one member."""
        h = x.reshape(x.shape[0], x.shape[1], -1)
        padded = self.padded
        part = slice(None) if member is None else slice(member, member + 1)
        for i in range(self.depth):
            weight, bias = self.weight[i][part], self.bias[i][part]
            if padded:
                mask = getattr(self, f"mask{i}")[part]
                h = torch.baddbmm(bias * mask, h, weight * mask)
            else:  # every member as wide as the widest: the masks are all ones
                h = torch.baddbmm(bias, h, weight)
            if i == self.depth - 1:
                return h
            if self.batch_norm:
                h = self._norm(h, i, part)
            h = torch.relu(h) * mask if padded else torch.relu(h)
            if keep is not None:
                keep.append(h)
        raise AssertionError("unreachable")

    def member_loss_terms(self) -> list[LossTerm]:
        """The solo MLP's `loss_terms()` for every member at once: each term's value is (members,),
        member m's entry its solo network's value (Keras L2: the sum of its weight matrices' squares)."""
        if self.l2 <= 0:
            return []
        value = sum(w.pow(2).sum((1, 2)) for w in self.weight)
        return [LossTerm("l2", value, self.l2)]

    def _norm(self, h: torch.Tensor, i: int, part: slice = slice(None)) -> torch.Tensor:
        """Each member's batch norm as one `F.batch_norm` over members x units channels: the same
        kernel, and per channel the same arithmetic, as each solo run's BatchNorm1d (`part`: the
        members in h, a slice of the stacked statistics)."""
        members, batch, width = h.shape
        rm, rv = getattr(self, f"running_mean{i}")[part], getattr(self, f"running_var{i}")[part]
        if self.training and i == 0:
            with torch.no_grad():
                self.num_batches_tracked[part].add_(1)
        flat = h.transpose(0, 1).reshape(batch, members * width)
        out = F.batch_norm(flat, rm.reshape(-1), rv.reshape(-1), self.gamma[i][part].reshape(-1),
                           self.beta[i][part].reshape(-1), self.training, self.momentum, self.eps)
        return out.view(batch, members, width).transpose(0, 1)

    def member_codes(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Per member, its boolean code (B, its own units): the sign of every real hidden unit."""
        keep: list[torch.Tensor] = []
        self.forward(x, keep)
        return [torch.cat([(h[m, :, :w] > 0) for h, w in zip(keep, self.widths[m][:-1])], dim=1)
                for m in range(self.members)]

    def member_state(self, m: int, solo: nn.Sequential) -> nn.Sequential:
        """Copy member m's parameters back into its solo MLP (same architecture) and return it."""
        with torch.no_grad():
            for i, (lin, bn) in enumerate(_layers(solo)):
                lin.weight.copy_(self.weight[i][m, :lin.in_features, :lin.out_features].T)
                if lin.bias is not None:
                    lin.bias.copy_(self.bias[i][m, 0, :lin.out_features])
                if bn is not None:
                    bn.weight.copy_(self.gamma[i][m, 0, :lin.out_features])
                    bn.bias.copy_(self.beta[i][m, 0, :lin.out_features])
                    bn.running_mean.copy_(getattr(self, f"running_mean{i}")[m, :lin.out_features])
                    bn.running_var.copy_(getattr(self, f"running_var{i}")[m, :lin.out_features])
                    bn.num_batches_tracked.copy_(self.num_batches_tracked[m])
        return solo


def _shared_l2(solos: Sequence[nn.Sequential]) -> float:
    """The members' one Keras L2 factor; refuses loss terms the batched MLP does not add."""
    for solo in solos:
        names = [t.name for t in solo.loss_terms()] if callable(getattr(solo, "loss_terms", None)) else []
        if names not in ([], ["l2"]):
            raise ValueError(f"model: loss terms {names}: the batched MLP adds only the Keras L2 term")
    values = {float(getattr(solo, "l2", 0.0)) for solo in solos}
    if len(values) > 1:
        raise ValueError(f"model.l2={sorted(values)}: batched members must share one value")
    return values.pop() if values else 0.0
