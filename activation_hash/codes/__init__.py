"""Neural codes: capture (hooks -> packed bits), the callback, the on-disk format.

Names are imported on first use (PEP 562), so that ``activation_hash.codes.io`` -- the codes
file reader ``evaluate`` uses -- loads no torch.
"""

from importlib import import_module

_WHERE = {"CodeRecorder": "capture", "describe_units": "capture", "pack_bits": "capture", "parse_layers": "capture",
          "relu_like_modules": "capture", "SplitCodes": "collect", "collect_codes": "collect",
          "UntraceableModelError": "fx", "modularize_relus": "fx", "load_codes": "io", "save_codes": "io",
          "capture_epochs": "schedule"}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
