"""Deep Linearly Gated Networks (Yadav, Ramaswamy & Lakshminarayanan 2024, arXiv 2404.04312).

Two networks of the same widths n_1..n_L (the MLP's `depth` / `width` / `split_width` / `widths`):

    gating   g^0 = x,  g^l = W_l g^{l-1} + b_l          (variant dlgn: linear, so g^l = A_l x + c_l)
             g^l = W_l x + b_l                          (variant dlgn_sf: every layer reads x)
             g^1 = W_1 x + b_1, g^l = W_l relu(g^{l-1}) + b_l   (variant dgn: a ReLU gating network)
    gates    G^l = sigmoid(beta * g^l)                  (hard_gates: 1[g^l > 0], see below)
    value    v^0 = 1 (a vector of ones shaped like x; value_input=x: x itself),
             v^l = (U_l v^{l-1}) * G^l,   output U_{L+1} v^L

The biases b_l exist only with `gating_bias=true` (default false: every gate is a half-space
through the origin, {x : (W_l...W_1)_i . x > 0}, as in the paper).

The neural code is the hard gate pattern 1[g^l > 0]: each g^l passes through a `CodeUnit`, which
the recorder captures as one layer, in layer order. The value network has no ReLU-like module, so
nothing else is captured. In `dgn` the gating ReLU is `torch.relu` (functional, never hooked): its
on/off pattern relu(g^l) > 0 is the same bit as the CodeUnit's 1[g^l > 0], so an nn.ReLU module
there would record every gating unit twice.

`hard_gates=true` uses G^l = 1[g^l > 0] in the forward pass, with the gradient of
sigmoid(beta g^l) (straight-through), so such a network still trains; it is the beta -> inf limit.

`freeze_gates=true` keeps the gating network at its initialization (its parameters get no
gradient): the gates stay the random half-spaces they start as, and only the value network
learns. It is the baseline for "features are learned through the gates' half-spaces" (seed 004).
`DeepLinear` is the other baseline: the value network with every gate fixed open, i.e. a deep
linear network x -> U_{L+1} ... U_1 x; its code is the sign pattern of its hidden layers.

`init`: torch (PyTorch's default) or glorot_uniform (Keras': Glorot-uniform weights, zero biases).
`l2`: Keras-style L2 factor on the weight matrices, a loss term (as for the MLP; 0 = none).

`batch_norm=true` (set by the authors' MLP recipe and by regularizer=batch_norm) puts a BatchNorm1d
on every gating pre-activation, before its CodeUnit. In eval mode that is a per-unit affine map, so
the gating network stays affine in x and every gate is still a half-space;
`effective_gating()` folds the running statistics in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from activation_hash.codes.units import CodeUnit
from activation_hash.models.loss_terms import LossTerm, keras_l2
from activation_hash.models.mlp import INITS, check_l2, glorot_uniform_, hidden_widths

VARIANTS = ("dlgn", "dlgn_sf", "dgn")
VALUE_INPUTS = ("ones", "x")


class _HardGate(torch.autograd.Function):
    """1[g > 0] forward, d sigmoid(beta g) / dg backward (straight-through)."""

    @staticmethod
    def forward(ctx, g: torch.Tensor, beta: float) -> torch.Tensor:
        ctx.save_for_backward(g)
        ctx.beta = beta
        return (g > 0).to(g.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (g,) = ctx.saved_tensors
        s = torch.sigmoid(ctx.beta * g)
        return grad * ctx.beta * s * (1 - s), None


class DLGN(nn.Module):
    def __init__(self, input_shape: Sequence[int], num_classes: int, depth: int = 2, width: int = 100,
                 split_width: bool = False, widths: Sequence[int] | None = None, variant: str = "dlgn",
                 beta: float = 4.0, hard_gates: bool = False, value_input: str = "ones",
                 gating_bias: bool = False, value_bias: bool = False, batch_norm: bool = False,
                 freeze_gates: bool = False, init: str = "torch", l2: float = 0.0):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"model.variant={variant!r}: allowed: {', '.join(VARIANTS)}")
        if value_input not in VALUE_INPUTS:
            raise ValueError(f"model.value_input={value_input!r}: allowed: {', '.join(VALUE_INPUTS)}")
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not beta > 0 or not math.isfinite(beta):
            raise ValueError(f"model.beta={beta!r}: must be a finite number > 0 (model.hard_gates=true for beta -> inf)")
        self.variant, self.beta, self.hard_gates, self.value_input = variant, float(beta), bool(hard_gates), value_input
        self.input_dim = math.prod(input_shape)
        sizes = hidden_widths(depth, width, split_width, widths)
        gate_in = [self.input_dim] + sizes[:-1] if variant != "dlgn_sf" else [self.input_dim] * len(sizes)
        self.gating = nn.ModuleList(nn.Linear(i, o, bias=gating_bias) for i, o in zip(gate_in, sizes))
        self.gating_norm = nn.ModuleList(nn.BatchNorm1d(o) for o in sizes) if batch_norm else None
        self.codes = nn.ModuleList(CodeUnit() for _ in sizes)
        value_in = [self.input_dim] + sizes[:-1]
        self.value = nn.ModuleList(nn.Linear(i, o, bias=value_bias) for i, o in zip(value_in, sizes))
        self.head = nn.Linear(sizes[-1], num_classes)  # the last nn.Linear: its input is v^L
        if init not in INITS:
            raise ValueError(f"model.init={init!r}: allowed: {', '.join(INITS)}")
        if init == "glorot_uniform":
            glorot_uniform_(self)
        self.l2 = check_l2(l2)
        self.freeze_gates = bool(freeze_gates)
        if self.freeze_gates:
            if batch_norm:
                raise ValueError("model.freeze_gates=true: not with model.batch_norm=true (its running statistics "
                                 "would still move the gates); set model.batch_norm=false")
            for p in self.gating.parameters():
                p.requires_grad_(False)

    def loss_terms(self) -> list[LossTerm]:
        return [keras_l2(self, self.l2)] if self.l2 > 0 else []

    def gating_preactivations(self, x: torch.Tensor) -> list[torch.Tensor]:
        """g^1..g^L for a batch (each passed through its CodeUnit, so a recorder sees them)."""
        x = x.flatten(1)
        out, g = [], x
        for i, layer in enumerate(self.gating):
            source = x if self.variant == "dlgn_sf" else (torch.relu(g) if self.variant == "dgn" and i else g)
            g = layer(source)
            if self.gating_norm is not None:
                g = self.gating_norm[i](g)
            g = self.codes[i](g)
            out.append(g)
        return out

    def gates(self, x: torch.Tensor) -> list[torch.Tensor]:
        """G^1..G^L: sigmoid(beta g^l), or 1[g^l > 0] with hard_gates."""
        return [self._gate(g) for g in self.gating_preactivations(x)]

    def _gate(self, g: torch.Tensor) -> torch.Tensor:
        return _HardGate.apply(g, self.beta) if self.hard_gates else torch.sigmoid(self.beta * g)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gates = self.gates(x)
        v = torch.ones_like(x.flatten(1)) if self.value_input == "ones" else x.flatten(1)
        for layer, gate in zip(self.value, gates):
            v = layer(v) * gate
        return self.head(v)

    @torch.no_grad()
    def effective_gating(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(A_l, c_l) per gating layer with g^l = A_l x + c_l (x flattened): A_l = W_l...W_1 for
        dlgn, W_l for dlgn_sf; c_l = W_l c_{l-1} + b_l (zeros without gating_bias). Batch norm is
        folded in with its running statistics (eval mode). Not defined for dgn (its gates are not
        half-spaces: g^l is only piecewise affine in x)."""
        if self.variant == "dgn":
            raise ValueError("model.variant=dgn: a DGN's gates are not half-spaces (its gating network has ReLUs), "
                             "so it has no effective gating weights; use dlgn or dlgn_sf")
        first = self.gating[0].weight
        eye = torch.eye(self.input_dim, dtype=first.dtype, device=first.device)
        zero = torch.zeros(self.input_dim, dtype=first.dtype, device=first.device)
        A, c = eye, zero
        out = []
        for i, layer in enumerate(self.gating):
            if self.variant == "dlgn_sf":
                A, c = eye, zero
            A, c = layer.weight @ A, layer.weight @ c
            if layer.bias is not None:
                c = c + layer.bias
            if self.gating_norm is not None:
                bn = self.gating_norm[i]
                scale = bn.weight / torch.sqrt(bn.running_var + bn.eps) if bn.affine else \
                    1 / torch.sqrt(bn.running_var + bn.eps)
                shift = (bn.bias if bn.affine else 0) - bn.running_mean * scale
                A, c = A * scale[:, None], c * scale + shift
            out.append((A.clone(), c.clone()))
        return out

    def effective_gating_weights(self) -> list[torch.Tensor]:
        """A_l = W_l...W_1 (dlgn) or W_l (dlgn_sf) per layer, shape (n_l, input dim): row i is the
        normal of gate i's half-space {x : A_l[i] . x + c_l[i] > 0} (see `effective_gating`)."""
        return [A for A, _ in self.effective_gating()]


class DeepLinear(nn.Module):
    """A deep linear network x -> U_{L+1} U_L ... U_1 x (biases with `bias`), hidden widths as
    for the MLP: the DLGN's value network with every gate fixed open (v^0 = x). It has no
    nonlinearity; its code is the sign pattern of each hidden layer (a CodeUnit per layer), so
    every study and metric runs on it unchanged."""

    def __init__(self, input_shape: Sequence[int], num_classes: int, depth: int = 2, width: int = 100,
                 split_width: bool = False, widths: Sequence[int] | None = None, bias: bool = False,
                 init: str = "torch", l2: float = 0.0):
        super().__init__()
        sizes = hidden_widths(depth, width, split_width, widths)
        dims = [math.prod(input_shape)] + sizes
        self.layers = nn.ModuleList(nn.Linear(i, o, bias=bias) for i, o in zip(dims[:-1], dims[1:]))
        self.codes = nn.ModuleList(CodeUnit() for _ in sizes)
        self.head = nn.Linear(sizes[-1], num_classes, bias=bias)
        if init not in INITS:
            raise ValueError(f"model.init={init!r}: allowed: {', '.join(INITS)}")
        if init == "glorot_uniform":
            glorot_uniform_(self)
        self.l2 = check_l2(l2)

    def loss_terms(self) -> list[LossTerm]:
        return [keras_l2(self, self.l2)] if self.l2 > 0 else []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = x.flatten(1)
        for layer, code in zip(self.layers, self.codes):
            v = code(layer(v))
        return self.head(v)
