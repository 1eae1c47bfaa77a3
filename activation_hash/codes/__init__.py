"""Neural codes: capture (hooks -> packed bits), the callback, the on-disk format."""

from activation_hash.codes.capture import CodeRecorder, describe_units, pack_bits, parse_layers, relu_like_modules
from activation_hash.codes.collect import SplitCodes, collect_codes
from activation_hash.codes.fx import UntraceableModelError, modularize_relus
from activation_hash.codes.io import load_codes, save_codes
from activation_hash.codes.schedule import capture_epochs

__all__ = ["CodeRecorder", "SplitCodes", "UntraceableModelError", "modularize_relus", "capture_epochs", "collect_codes", "describe_units", "load_codes",
           "pack_bits", "parse_layers", "relu_like_modules", "save_codes"]
