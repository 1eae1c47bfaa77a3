"""Lightning's two namespaces, `lightning` (`import lightning as L`, `lightning.pytorch`) and
`pytorch_lightning`, both accepted where users bring Lightning objects.

They are the same code in two packages whose classes are distinct, so a `pytorch_lightning.Trainer`
(the one every run uses) refuses a `lightning.LightningDataModule` and does not recognize a
`lightning.pytorch.callbacks.ModelCheckpoint` as a checkpoint. Each kind of object is therefore
brought into the Trainer's namespace:

- `_target_`s naming Lightning's own classes (`lightning.pytorch.callbacks.ModelCheckpoint`,
  `lightning.pytorch.loggers.WandbLogger`, ...) build the `pytorch_lightning` class of the same
  name, with the same arguments (`trainer_target`);
- a DataModule subclassing `lightning.LightningDataModule` is wrapped in a `pytorch_lightning` one
  that hands out its loaders, hooks and attributes (`as_trainer_datamodule`);
- callbacks and loggers of the user's own classes (subclasses of `L.Callback`, `L.pytorch.loggers.Logger`)
  are passed as they are: the Trainer calls their hooks by name.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl

# hooks of a DataModule that the wrapper passes on when the user's class defines them
DATAMODULE_HOOKS = ("train_dataloader", "val_dataloader", "test_dataloader", "predict_dataloader",
                    "transfer_batch_to_device", "on_before_batch_transfer", "on_after_batch_transfer",
                    "state_dict", "load_state_dict", "teardown")


def trainer_target(target: str) -> str:
    """`lightning.pytorch.X` and `lightning.X` (for X of pytorch_lightning's top level, e.g.
    `lightning.Callback`) as `pytorch_lightning.X`; any other target unchanged."""
    if target.startswith("lightning.pytorch."):
        return "pytorch_lightning." + target[len("lightning.pytorch."):]
    head, _, rest = target.partition(".")
    if head == "lightning" and rest and "." not in rest and rest in getattr(pl, "__all__", ()):
        return "pytorch_lightning." + rest
    return target


def in_trainer_namespace(spec: Any) -> Any:
    """A config mapping (nested) with every `_target_` passed through `trainer_target`."""
    if isinstance(spec, dict):
        return {k: trainer_target(v) if k == "_target_" and isinstance(v, str) else in_trainer_namespace(v)
                for k, v in spec.items()}
    if isinstance(spec, list):
        return [in_trainer_namespace(v) for v in spec]
    return spec


def is_lightning_datamodule(obj: Any) -> bool:
    """A LightningDataModule of the `lightning` package (not pytorch_lightning's)."""
    return any(c.__name__ == "LightningDataModule" and c.__module__.startswith("lightning.")
               for c in type(obj).__mro__)


def as_trainer_datamodule(datamodule: Any) -> pl.LightningDataModule | None:
    """`datamodule` itself when it is a pytorch_lightning DataModule, wrapped when it is a
    `lightning` one, None otherwise."""
    if isinstance(datamodule, pl.LightningDataModule):
        return datamodule
    if not is_lightning_datamodule(datamodule):
        return None
    hooks = {name: _forward(name) for name in DATAMODULE_HOOKS if _overridden(datamodule, name)}
    cls = type(type(datamodule).__name__, (_Adapted,), {**hooks, "__module__": type(datamodule).__module__})
    return cls(datamodule)


def _overridden(obj: Any, name: str) -> bool:
    """Whether the user's class defines `name` rather than inheriting Lightning's default."""
    for cls in type(obj).__mro__:
        if name in vars(cls):
            return not cls.__module__.startswith("lightning.")
    return False


def _forward(name: str):
    def hook(self: _Adapted, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.wrapped, name)(*args, **kwargs)
    hook.__name__ = name
    return hook


class _Adapted(pl.LightningDataModule):
    """A `lightning.LightningDataModule` seen as a pytorch_lightning one; any attribute it lacks
    (input_shape, num_classes, eval_loaders, ...) is the wrapped module's."""

    def __init__(self, wrapped: Any) -> None:
        super().__init__()
        self.wrapped = wrapped

    def prepare_data(self) -> None:
        self.wrapped.prepare_data()

    def setup(self, stage: str) -> None:
        self.wrapped.trainer = self.trainer  # the user's code may read self.trainer
        self.wrapped.setup(stage)

    def __getattr__(self, name: str) -> Any:
        if name == "wrapped":  # not set yet (during __init__)
            raise AttributeError(name)
        return getattr(self.wrapped, name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(lightning DataModule, run through pytorch_lightning)"
