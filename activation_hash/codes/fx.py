"""Make functional ReLU calls hookable: trace a network with torch.fx and replace every
functional ReLU-like call site by a call to its own `nn.ReLU` / `nn.LeakyReLU` module.

`CodeRecorder` hooks modules, so a network written like kuangliu/pytorch-cifar
(`out = F.relu(self.bn1(self.conv1(x)))`) exposes none of its units. After

    net = modularize_relus(net)

every call site is a distinct module (named after the module whose forward made the call, e.g.
`layer1.0.relu`, `layer1.0.relu_1`) and the outputs are unchanged.

Replaced (call site → module):
    F.relu, torch.relu, x.relu()                          → nn.ReLU()
    F.relu(inplace=True), torch.relu_, F.relu_, x.relu_() → nn.ReLU(inplace=True)
    F.leaky_relu, F.leaky_relu_ (constant slope)          → nn.LeakyReLU(slope, inplace)
    torch.clamp / x.clamp / clamp_min / clip with min=0 and no max (and their in-place forms)
                                                          → nn.ReLU(inplace)
In-place calls stay in place, so later reads of the mutated tensor see the same values. Existing
nn.ReLU-like modules and `CodeUnit` markers are kept as they are. Not replaced: F.prelu and F.rrelu (they need
parameters or a training flag), F.relu6 / hardtanh (three pieces, not units of the code),
clamps at thresholds other than 0. (A clamp at 0 passes gradient 1 at exactly 0 where nn.ReLU
passes 0; values are identical.)

Limits of torch.fx symbolic tracing: the forward must not branch or loop on tensor values
(a clear `UntraceableModelError` names the model class); Python-level conditions on attributes,
such as `if self.training`, are evaluated once, at trace time, and frozen into the graph.
The returned GraphModule shares its parameters and submodules with the original model.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any

import torch
from torch import fx, nn
from torch.nn import functional as F

from activation_hash.codes.units import CodeUnit


class UntraceableModelError(RuntimeError):
    """torch.fx could not trace the model, so its functional ReLU calls cannot be replaced."""


# target -> (kind, names of the arguments after the input, in-place by default)
_RELU_FUNCTIONS: dict[Callable[..., Any], tuple[str, tuple[str, ...], bool]] = {
    F.relu: ("relu", ("inplace",), False),
    torch.relu: ("relu", (), False),
    torch.relu_: ("relu", (), True),  # F.relu_ is this same function
    F.leaky_relu: ("leaky_relu", ("negative_slope", "inplace"), False),
    F.leaky_relu_: ("leaky_relu", ("negative_slope",), True),
    torch.clamp: ("clamp", ("min", "max"), False),
    torch.clip: ("clamp", ("min", "max"), False),
    torch.clamp_: ("clamp", ("min", "max"), True),
    torch.clip_: ("clamp", ("min", "max"), True),
    torch.clamp_min: ("clamp", ("min",), False),
    torch.clamp_min_: ("clamp", ("min",), True),
}
_RELU_METHODS: dict[str, tuple[str, tuple[str, ...], bool]] = {
    "relu": ("relu", (), False),
    "relu_": ("relu", (), True),
    "clamp": ("clamp", ("min", "max"), False),
    "clip": ("clamp", ("min", "max"), False),
    "clamp_": ("clamp", ("min", "max"), True),
    "clip_": ("clamp", ("min", "max"), True),
    "clamp_min": ("clamp", ("min",), False),
    "clamp_min_": ("clamp", ("min",), True),
}


def _constant(value: object, name: str, node: fx.Node) -> object:
    if isinstance(value, fx.Node):
        raise ValueError(f"cannot turn `{node.format_node()}` into a module: its {name} is computed "
                         "in the forward pass, not a constant")
    return value


def _replacement(node: fx.Node) -> tuple[fx.Node, nn.Module] | None:
    """(input node, equivalent module) for a ReLU-like call node; None when it is something else."""
    if node.op == "call_function":
        spec = _RELU_FUNCTIONS.get(node.target)  # type: ignore[arg-type]
    elif node.op == "call_method":
        spec = _RELU_METHODS.get(str(node.target))
    else:
        return None
    if spec is None:
        return None
    kind, names, inplace_default = spec
    options = dict(node.kwargs)
    x = node.args[0] if node.args else options.pop("input", options.pop("self", None))
    options.update(zip(names, node.args[1:]))
    if not isinstance(x, fx.Node):
        return None
    inplace = bool(_constant(options.get("inplace", inplace_default), "inplace flag", node))
    if kind == "relu":
        return x, nn.ReLU(inplace=inplace)
    if kind == "leaky_relu":
        slope = _constant(options.get("negative_slope", 0.01), "negative_slope", node)
        return x, nn.LeakyReLU(float(slope), inplace=inplace)  # type: ignore[arg-type]
    low, high = options.get("min"), options.get("max")
    is_zero = isinstance(low, numbers.Real) and not isinstance(low, bool) and low == 0
    return (x, nn.ReLU(inplace=inplace)) if is_zero and high is None else None


def _site_name(root: nn.Module, node: fx.Node, kind: str) -> str:
    """`<path of the module whose forward made the call>.<kind>[_k]`, unused in `root`."""
    stack = node.meta.get("nn_module_stack") or {}
    owner = next(reversed(stack.values()))[0] if stack else ""
    prefix = f"{owner}." if owner else ""
    name, k = f"{prefix}{kind}", 0
    while _exists(root, name):
        k += 1
        name = f"{prefix}{kind}_{k}"
    return name


def _exists(root: nn.Module, path: str) -> bool:
    obj: object = root
    for part in path.split("."):
        if not hasattr(obj, part):
            return False
        obj = getattr(obj, part)
    return True


class _KeepCodeUnits(fx.Tracer):
    """The default tracer, except that `CodeUnit` markers stay modules (an identity would vanish)."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, CodeUnit) or super().is_leaf_module(m, module_qualified_name)


def modularize_relus(model: nn.Module) -> fx.GraphModule:
    """Trace `model` and give every functional ReLU-like call site its own module (see module doc)."""
    try:
        traced = fx.GraphModule(model, _KeepCodeUnits().trace(model), type(model).__name__)
    except Exception as exc:
        cls = type(model).__name__
        raise UntraceableModelError(
            f"torch.fx cannot trace {cls} ({type(exc).__name__}: {exc}). modularize_relus needs a forward "
            f"without data-dependent control flow (no if/while/for on tensor values). Write {cls} with "
            "nn.ReLU modules instead of functional relu calls (one module instance per call site), so "
            "CodeRecorder can hook them without tracing.") from exc

    graph = traced.graph
    for node in list(graph.nodes):
        found = _replacement(node)
        if found is None:
            continue
        x, module = found
        kind = "leaky_relu" if isinstance(module, nn.LeakyReLU) else "relu"
        name = _site_name(traced, node, kind)
        traced.add_submodule(name, module)
        with graph.inserting_before(node):
            call = graph.call_module(name, args=(x,))
        call.meta = dict(node.meta)
        node.replace_all_uses_with(call)
        graph.erase_node(node)
    graph.lint()
    traced.recompile()
    traced.train(model.training)
    return traced
