"""StackedNet: M networks of one architecture (e.g. CNN-zoo members) trained as one, by torch.func.

    net = StackedNet([build(...) for seed in seeds], input_shape=(1, 28, 28))
    logits = net(x)                        # x: (M, B, *input_shape) -> (M, B, classes)
    keep = []; net(x, keep)                # + one (M, B, units) pre-activation per ReLU call site

The members' parameters and buffers are stacked along a new leading dimension (with
`torch.func.stack_module_state`, so each member starts bit-identical to its solo net) and held
by `self.net`, a copy of the first solo net whose every parameter and buffer is the stacked
tensor: `parameters()` feeds one optimizer (Adam/AdamW/SGD are elementwise, so one optimizer
over stacked tensors is M independent ones), `.to(device)` and `.train()/.eval()` work as usual.
The forward is `torch.func.vmap` over the members of `torch.func.functional_call(self.net,
(member's params, member's buffers), x)`: the template's own code, run once per call with
batched tensors (a convolution becomes one grouped convolution, a batch norm one `batch_norm`
over members x channels, so each member's statistics are over its own batch).

Batch norm in train mode: the stacked running stats and `num_batches_tracked` are passed to
`functional_call` as the member's buffers; the in-place updates that BatchNorm makes under vmap
land in the stacked buffers, per member as its solo BatchNorm would make them (tested).

Codes: forward pre-hooks on the template's ReLU-like modules (`relu_like_modules`, the order the
`CodeRecorder` sees) are registered inside the vmapped function and their inputs, flattened, are
returned as outputs of it, so no batched tensor leaks out of vmap. `keep[i][m] > 0` is member m's
code bit at call site i, as `CodeRecorder` records it for the solo net.

`stackable_reason(solo, input_shape)` says in one line why a network cannot be stacked (random
layers such as Dropout, whose per-member RNG stream vmap cannot reproduce; anything vmap refuses
on a 2-sample dry forward and backward, e.g. data-dependent control flow), or None.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from activation_hash.codes.capture import relu_like_modules

# layers that draw random numbers in training mode: a member's solo stream cannot be reproduced
RANDOM_LAYERS: tuple[type[nn.Module], ...] = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
                                               nn.AlphaDropout, nn.FeatureAlphaDropout, nn.RReLU)


def _owner(root: nn.Module, name: str) -> tuple[nn.Module, str]:
    """The submodule holding the tensor `name` (dotted state name) and the tensor's own name."""
    path, _, attr = name.rpartition(".")
    return (root.get_submodule(path) if path else root), attr


class StackedNet(nn.Module):
    def __init__(self, solos: Sequence[nn.Module], input_shape: Sequence[int] | None = None):
        super().__init__()
        solos = list(solos)
        if len(solos) < 1:
            raise ValueError("solos: need at least one network to stack")
        first = solos[0]
        for m, solo in enumerate(solos[1:], start=1):
            if type(solo) is not type(first) or str(solo) != str(first):
                raise ValueError(f"solos[{m}]: {type(solo).__name__} is not the architecture of solos[0] "
                                 f"({type(first).__name__}); stacked members must be one architecture")
            shapes = [(n, t.shape, t.dtype) for n, t in solo.state_dict().items()]
            if shapes != [(n, t.shape, t.dtype) for n, t in first.state_dict().items()]:
                raise ValueError(f"solos[{m}]: its parameter/buffer names or shapes differ from solos[0]'s")
        if len(list(first.named_parameters(remove_duplicate=False))) != len(list(first.named_parameters())):
            raise ValueError(f"solos[0]: {type(first).__name__} shares a parameter between modules; cannot stack")
        self.members = len(solos)
        params, buffers = stack_module_state(solos)
        # the template: the first solo's modules, each tensor replaced by its stacked version
        self.net = copy.deepcopy(first)
        for name, value in params.items():
            module, attr = _owner(self.net, name)
            setattr(module, attr, nn.Parameter(value.detach(), requires_grad=value.requires_grad))
        for name, value in buffers.items():
            module, attr = _owner(self.net, name)
            setattr(module, attr, value)
        self.train(first.training)
        self._widths: list[int] | None = None
        if input_shape is not None:
            self.infer_widths(input_shape)

    @property
    def widths(self) -> list[list[int]]:
        """Per member: units of every ReLU-like call site, then the number of classes (as BatchedMLP)."""
        if self._widths is None:
            raise RuntimeError("StackedNet.widths: unknown until the first forward; "
                               "pass input_shape= or call infer_widths(input_shape)")
        return [list(self._widths) for _ in range(self.members)]

    @torch.no_grad()
    def infer_widths(self, input_shape: Sequence[int]) -> list[list[int]]:
        """Set `widths` from one eval-mode forward of zeros (running stats are not touched)."""
        was_training = self.training
        self.eval()
        try:
            keep: list[torch.Tensor] = []
            device = next(self.net.parameters()).device
            self.forward(torch.zeros(self.members, 1, *input_shape, device=device), keep)
        finally:
            self.train(was_training)
        return self.widths

    def forward(self, x: torch.Tensor, keep: list | None = None, member: int | None = None) -> torch.Tensor:
        """x: (M, B, *input_shape) -> logits (M, B, classes). With `keep` a list, one (M, B, units)
        tensor per ReLU-like call site is appended: the ReLU's input, whose > 0 is the code bit.
        With `member` an index, x is (1, B, ...) and only that member runs (its slice of every
        stacked tensor): a capture's forward for one member."""
        part = slice(None) if member is None else slice(member, member + 1)
        if x.shape[0] != (self.members if member is None else 1):
            raise ValueError(f"x.shape={tuple(x.shape)}: the leading dimension must be the "
                             + (f"{self.members} members" if member is None else "1 member"))
        template, sites = self.net, [m for _, m in relu_like_modules(self.net)] if keep is not None else []

        def member(params, buffers, xm):
            acts: list[torch.Tensor] = []
            handles = [s.register_forward_pre_hook(lambda _mod, args: acts.append(args[0].flatten(1)))
                       for s in sites]
            try:
                out = functional_call(template, (params, buffers), (xm,))
            finally:
                for h in handles:
                    h.remove()
            return out, tuple(acts)

        params, buffers = dict(self.net.named_parameters()), dict(self.net.named_buffers())
        if member is not None:  # views: the member's slices
            params, buffers = ({n: t[part] for n, t in d.items()} for d in (params, buffers))
        logits, acts = vmap(member, in_dims=(0, 0, 0))(params, buffers, x)
        if keep is not None:
            keep.extend(acts)
            self._widths = [a.shape[2] for a in acts] + [logits.shape[-1]]
        return logits

    def member_codes(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Per member, its boolean code (B, n_bits): the sign of every unit of every call site."""
        keep: list[torch.Tensor] = []
        self.forward(x, keep)
        return [torch.cat([h[m] > 0 for h in keep], dim=1) for m in range(self.members)]

    @torch.no_grad()
    def member_state(self, m: int, solo: nn.Module) -> nn.Module:
        """Copy member m's parameters and buffers (BN running stats, num_batches_tracked) into
        `solo` (same architecture, on any device) and return it."""
        if not 0 <= m < self.members:
            raise ValueError(f"m={m}: a member index in 0..{self.members - 1}")
        stacked = {**dict(self.net.named_parameters()), **dict(self.net.named_buffers())}
        own = {**dict(solo.named_parameters()), **dict(solo.named_buffers())}
        if set(own) != set(stacked):
            raise ValueError(f"solo: {type(solo).__name__}'s tensors are not those of the stacked "
                             f"{type(self.net).__name__}")
        for name, tensor in own.items():
            tensor.copy_(stacked[name][m])
        return solo


def stackable_reason(solo: nn.Module, input_shape: Sequence[int]) -> str | None:
    """One line saying why `solo` cannot be trained as a StackedNet member, or None if it can."""
    for name, module in solo.named_modules():
        if isinstance(module, RANDOM_LAYERS):
            return (f"model: {name or 'the network'} is {type(module).__name__}, random in training; "
                    "vmap cannot give each member its solo run's random stream")
    twins = [copy.deepcopy(solo) for _ in range(2)]
    try:
        net = StackedNet(twins)
        net.train()
        device = next(net.parameters(), torch.zeros(())).device
        x = torch.randn(2, 2, *input_shape, device=device)
        keep: list[torch.Tensor] = []
        logits = net(x, keep)
        loss = logits.float().square().mean()
        if loss.requires_grad:
            loss.backward()
    except Exception as exc:  # noqa: BLE001 - any refusal is the reason, reported in one line
        first_line = (str(exc).strip().splitlines() or [""])[0]
        return f"model: a 2-member vmap dry run (forward + backward) fails: {type(exc).__name__}: {first_line}"
    return None
