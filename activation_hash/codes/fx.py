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
nn.ReLU-like modules are kept as they are. Not replaced: F.prelu and F.rrelu (they need
parameters or a training flag), F.relu6 / hardtanh (three pieces, not units of the code),
clamps at thresholds other than 0. (A clamp at 0 passes gradient 1 at exactly 0 where nn.ReLU
passes 0; values are identical.)

Limits of torch.fx symbolic tracing: the forward must not branch or loop on tensor values
(a clear `UntraceableModelError` names the model class); Python-level conditions on attributes,
such as `if self.training`, are evaluated once, at trace time, and frozen into the graph.
The returned GraphModule shares its parameters and submodules with the original model.

The traced module keeps the network's interface: every public method of the user's class
(`loss_terms()`, `set_epoch()`, ...) is there and runs on the original network; attributes that
the network's forward assigns (`self.z = self.body(x)`, read by `loss_terms()`) are assigned by the
traced forward too; submodules that define `loss_terms()` or `set_epoch()` are not traced into
(their forward runs as written, so functional ReLU calls inside them are not made modules).
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


# methods of the loss-terms protocol (activation_hash.models.loss_terms)
PROTOCOL = ("loss_terms", "set_epoch")


def _has_protocol(m: nn.Module) -> bool:
    return any(callable(getattr(m, name, None)) for name in PROTOCOL)


class _KeepCodeUnits(fx.Tracer):
    """The default tracer inlines user modules; a CodeUnit must stay a module so it is recorded, and
    a submodule with loss_terms()/set_epoch() keeps its own forward (the state its forward stores
    for loss_terms() is set as written) and stays in the module tree, where Classifier finds it."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return (isinstance(m, CodeUnit) or (module_qualified_name != "" and _has_protocol(m))
                or super().is_leaf_module(m, module_qualified_name))


class _StoreOnModel(nn.Module):
    """A graph node's value stored as an attribute of the traced (original) model, as its forward
    did (`self.z = ...`): its loss_terms() and other methods read it after each traced forward."""

    def __init__(self, model: nn.Module, attribute: str) -> None:
        super().__init__()
        object.__setattr__(self, "_model", model)  # not a submodule: the model is not in the traced tree
        self.attribute = attribute

    def forward(self, value: Any) -> Any:
        setattr(self._model, self.attribute, value)
        return value


def _public_methods(model: nn.Module) -> list[str]:
    """Methods of the user's class (and its bases up to nn.Module) that are not nn.Module's."""
    names = set()
    for cls in type(model).__mro__:
        if cls is nn.Module or cls is object or issubclass(nn.Module, cls):
            continue
        names |= {n for n, v in vars(cls).items() if callable(v) and not n.startswith("_") and n != "forward"}
    return sorted(names - set(dir(nn.Module)))


def _keep_model_interface(traced: fx.GraphModule, model: nn.Module) -> None:
    """Every public method of the user's network (loss_terms(), set_epoch(), ...) on the traced
    module, called on the original network (which the state stores keep up to date)."""
    object.__setattr__(traced, "_traced_from", model)
    cls = type(traced)  # GraphModule makes a class per instance: these methods are this module's only

    def delegate(name: str) -> Callable[..., Any]:
        def method(self: fx.GraphModule, *args: Any, **kwargs: Any) -> Any:
            return getattr(self._traced_from, name)(*args, **kwargs)
        method.__name__ = name
        method.__doc__ = getattr(getattr(type(model), name), "__doc__", None)
        return method

    for name in _public_methods(model):
        if not hasattr(cls, name):
            setattr(cls, name, delegate(name))


def _store_forward_state(traced: fx.GraphModule, model: nn.Module) -> None:
    """Attributes the model's forward assigned (`self.z = self.body(x)`: a Proxy after tracing) are
    assigned again by the traced forward, through a `_StoreOnModel` call after their node."""
    for attribute, value in list(vars(model).items()):
        if not isinstance(value, fx.Proxy) or value.tracer is None:
            continue
        node = value.node
        if node.graph is not traced.graph:
            continue
        name = f"_store_{attribute}"
        traced.add_submodule(name, _StoreOnModel(model, attribute))
        with traced.graph.inserting_after(node):
            traced.graph.call_module(name, args=(node,))


def modularize_relus(model: nn.Module) -> fx.GraphModule:
    """Trace `model` and give every functional ReLU-like call site its own module (see module doc).
    `CodeUnit` modules are kept as they are."""
    try:
        graph = _KeepCodeUnits().trace(model)
        traced = fx.GraphModule(model, graph, type(model).__name__)
    except Exception as exc:
        cls = type(model).__name__
        raise UntraceableModelError(
            f"torch.fx cannot trace {cls} ({type(exc).__name__}: {exc}). modularize_relus needs a forward "
            f"without data-dependent control flow (no if/while/for on tensor values). Write {cls} with "
            "nn.ReLU modules instead of functional relu calls (one module instance per call site), so "
            "CodeRecorder can hook them without tracing.") from exc

    graph = traced.graph
    _store_forward_state(traced, model)
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
    _keep_model_interface(traced, model)
    _modularize_protocol_leaves(traced)
    return traced


def _modularize_protocol_leaves(traced: fx.GraphModule) -> None:
    """The submodules kept whole for their loss_terms()/set_epoch() are traced on their own (with
    the same interface and state keeping), so their functional ReLU calls become modules too; one
    that cannot be traced stays as written."""
    for node in list(traced.graph.nodes):
        if node.op != "call_module":
            continue
        sub = traced.get_submodule(str(node.target))
        if isinstance(sub, (CodeUnit, fx.GraphModule)) or not _has_protocol(sub):
            continue
        try:
            replaced = modularize_relus(sub)
        except UntraceableModelError:
            continue
        parent, _, leaf = str(node.target).rpartition(".")
        setattr(traced.get_submodule(parent) if parent else traced, leaf, replaced)
