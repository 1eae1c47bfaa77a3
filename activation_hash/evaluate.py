"""Re-evaluate saved codes without retraining.

    python -m activation_hash.evaluate CODES.npz [--which redundancy,knn] [--k 9] [--out OUT.json]
                                       [--backend auto|sklearn|torch] [--device cuda:0] [--threads N]

Loads a codes file (``train_codes``/``test_codes`` packed uint8, ``train_labels``/
``test_labels``, ``n_bits``; extras such as ``train/penultimate`` are passed to the families that
need them; other keys are ignored) with numpy only, by the one reader
(``activation_hash.codes.io.load_codes``, which checks every field's dtype and shape), computes the
metric families, prints the same compact table as a run (``activation_hash.summary``) and writes
every metric as flat JSON beside the file (``CODES.metrics.json``, or ``--out``/``--json``),
atomically. ``--which`` defaults to the paper's families plus every registered family whose
needs the file satisfies, so a new family is picked up without editing this module. Imports
neither torch, Lightning nor Hydra (torch only for ``--backend torch`` or a ``--device``).

Every input is checked before anything is computed or written: a bad option (argparse's own
errors included), file or field, one-class labels, a ``--k`` larger than the training set, a
family the file lacks the extras for, a ``--device`` this machine lacks, an ``--out`` that cannot
be written, prints one line ``error: key=value: what is allowed`` and exits 2.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import sys
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from .atomic import atomic_write_json
from .codes import io
from .metrics import WHICH, compute_families, families, validate_options
from .metrics.families.logreg import MODES as LOGREG_MODES
from .metrics.registry import EXTRAS, CodeSet, load_plugins
from .metrics.torch_backend import BACKENDS

REQUIRED_KEYS = io.REQUIRED_KEYS
PROG = "python -m activation_hash.evaluate"
PER_FAMILY = 6  # numbers printed for a family outside the run's table (all of them are in the JSON)
# the options' names in compute_families' messages (metrics.KEY) -> this command's flags
FLAGS = {"metrics.which": "--which", "metrics.knn_k": "--k", "metrics.n_threads": "--threads",
         "metrics.logreg_mode": "--logreg-mode", "metrics.backend": "--backend", "metrics.plugins": "--plugins",
         "metrics.drop_constant": "--no-drop-constant", "metrics.device": "--device"}


def fail(message: str) -> NoReturn:
    """The one way out on bad input: one line on stderr, exit status 2."""
    sys.stderr.write("error: " + " ".join(message.split()) + "\n")
    raise SystemExit(2)


def _closest(word: str, allowed: Sequence[str]) -> str:
    match = difflib.get_close_matches(word, allowed, n=1, cutoff=0.5)
    return f"did you mean {match[0]}? " if match else ""


class Parser(argparse.ArgumentParser):
    """argparse whose own errors (unknown option, missing value, bad int, bad choice, no codes
    file) are one line ``error: key=value: what is allowed``, exit 2, instead of a usage block."""

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> Any:  # type: ignore[override]
        self._argv = list(sys.argv[1:] if args is None else args)
        return super().parse_args(self._argv, namespace)

    def flag_given(self, names: str) -> str:
        """Of an action's names (``--out/--json``), the one on the command line."""
        options = names.split("/")
        typed = [a.split("=", 1)[0] for a in getattr(self, "_argv", []) if a.startswith("--")]
        return next((o for o in reversed(typed) if o in options), options[0])

    def error(self, message: str) -> NoReturn:
        flags = sorted(o for a in self._actions for o in a.option_strings if o.startswith("--"))
        if m := re.fullmatch(r"the following arguments are required: (.*)", message):
            fail(f"{m[1]}=(missing): required: the codes file (.npz) to evaluate; usage: {PROG} CODES.npz "
                 f"[options], see --help")
        if m := re.fullmatch(r"unrecognized arguments: (.*)", message):
            word = m[1].split()[0]
            if not word.startswith("-"):
                fail(f"codes={word}: a second codes file; allowed: one codes file per command")
            option = word.split("=", 1)[0]
            fail(f"{word} (unknown option): {_closest(option, flags)}allowed: {', '.join(flags)}")
        if m := re.fullmatch(r"ambiguous option: (\S+) could match (.*)", message):
            fail(f"{m[1].split('=', 1)[0]}=(abbreviated): ambiguous; allowed: one of {m[2]}")
        if m := re.fullmatch(r"argument (\S+): (.*)", message):
            flag, what = self.flag_given(m[1]), m[2]
            if v := re.fullmatch(r"invalid (\w+) value: '(.*)'", what):
                kind = {"int": "an integer", "float": "a number"}.get(v[1], f"a {v[1]}")
                fail(f"{flag}={v[2]}: must be {kind}")
            if v := re.fullmatch(r"invalid choice: '(.*)' \(choose from (.*)\)", what):
                choices = [c.strip(" '") for c in v[2].split(",")]
                fail(f"{flag}={v[1]}: {_closest(v[1], choices)}allowed: {', '.join(choices)}")
            if re.fullmatch(r"expected one argument", what):
                fail(f"{flag}=(no value): expects one value")
            if v := re.fullmatch(r"ignored explicit argument '(.*)'", what):
                fail(f"{flag}={v[1]}: takes no value")
            fail(f"{flag}=?: {what}")
        fail(f"arguments={' '.join(getattr(self, '_argv', []))}: {message}")


def parser() -> Parser:
    p = Parser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("codes", type=Path, help="codes file (.npz)")
    p.add_argument("--no-drop-constant", action="store_true", help="keep units that are constant over train+test")
    p.add_argument("--k", type=int, default=9, help="K-NN neighbours (default 9)")
    p.add_argument("--out", "--json", dest="json", type=Path, default=None,
                   help="output JSON path (default: CODES.metrics.json beside the file)")
    p.add_argument("--logreg-mode", choices=LOGREG_MODES, default="ovo")
    p.add_argument("--which", default=None,
                   help=f"comma-separated metric families (default: {','.join(WHICH)} plus any "
                        f"registered family the file has the extras for)")
    p.add_argument("--plugins", default="", help="comma-separated modules defining FAMILY")
    p.add_argument("--device", default=None, help="torch device of the torch backend (default: the CPU; "
                                                  "auto: CUDA when there is one)")
    p.add_argument("--backend", choices=BACKENDS, default="auto",
                   help="sklearn (scikit-learn/faiss, CPU) | torch (on --device) | auto: torch on a CUDA "
                        "--device, else sklearn")
    p.add_argument("--threads", type=int, default=None, help="cap on compute threads (default: library defaults)")
    return p


def _as_flags(message: str) -> str:
    """compute_families' and the registry's ``metrics.KEY`` names, as this command's flags."""
    for key, flag in FLAGS.items():
        if message.startswith((f"{key}=", f"{key}:")):
            return flag + message[len(key):]
    return message


def _npy_header(zf: zipfile.ZipFile, key: str) -> tuple[tuple[int, ...], np.dtype] | None:
    """Shape and dtype of one array of an npz, from its header (the array is not read)."""
    with zf.open(f"{key}.npy") as f:
        version = np.lib.format.read_magic(f)
        read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
        if version not in read:
            return None
        shape, _, dtype = read[version](f)
    return shape, dtype


def _check_layout(path: Path) -> None:
    """The fields' names, and n_bits against the codes' width, from the npz's headers: a missing
    field is named by itself, and an n_bits that disagrees with both code arrays (which agree)
    is blamed on n_bits. Anything else is left to the one reader (``io.load_codes``)."""
    if not path.is_file() or not zipfile.is_zipfile(path):
        return
    try:
        with zipfile.ZipFile(path) as zf:
            keys = {name[:-4] for name in zf.namelist() if name.endswith(".npy")}
            missing = [k for k in REQUIRED_KEYS if k not in keys]
            heads = None if missing else [_npy_header(zf, f"{s}_codes") for s in ("train", "test")]
        n_bits = None if missing else np.load(path, allow_pickle=False)["n_bits"]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return  # unreadable: io.load_codes says how
    if missing:
        raise ValueError(f"{missing[0]}=(missing key): a codes file holds {', '.join(REQUIRED_KEYS)}; "
                         f"missing key(s) {', '.join(missing)} (codes file {path})")
    if None in heads or n_bits.ndim != 0 or not np.issubdtype(n_bits.dtype, np.integer) or int(n_bits) < 0:
        return
    (train_shape, train_dtype), (test_shape, test_dtype) = heads
    widths = {s[1] for s in (train_shape, test_shape) if len(s) == 2}
    if (train_dtype, test_dtype) == (np.uint8, np.uint8) and len(train_shape) == len(test_shape) == 2 \
            and len(widths) == 1:
        width = widths.pop()
        if (int(n_bits) + 7) // 8 != width:
            allowed = "0" if width == 0 else f"an integer in {8 * width - 7}..{8 * width}"
            raise ValueError(f"n_bits={int(n_bits)}: disagrees with train_codes and test_codes, which hold "
                             f"{width} packed byte(s) per code; allowed: {allowed} (codes file {path})")


def read_codes(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a codes file, by the one reader (``activation_hash.codes.io.load_codes``),
    after the header check above (which names the field at fault)."""
    _check_layout(path)
    return io.load_codes(path)


def _check_labels(data: dict) -> None:
    """One class in a split leaves K-Means, K-NN and logistic regression nothing to tell apart."""
    for key in ("train_labels", "test_labels"):
        classes = np.unique(data[key])
        if classes.size < 2:
            raise ValueError(f"{key}={classes.tolist()}: one class only; the metrics need labels of at least 2 classes")


def _check_device(device: str | None) -> str | None:
    """The device the torch backend runs on (None: the CPU); ``auto``: CUDA when there is one."""
    if device in (None, "cpu"):
        return None
    from .devices import check_metrics_device  # imports torch: only for a non-CPU device
    if device == "auto":
        import torch
        return "cuda" if torch.cuda.is_available() else None
    try:
        check_metrics_device(device)
    except ValueError as err:
        raise ValueError(_as_flags(str(err))) from None
    return device


def _check_out(out: Path, flag: str, codes: Path) -> None:
    if out.is_dir():
        raise ValueError(f"{flag}={out}: is a directory; allowed: a JSON file path in an existing directory")
    if out.exists() and codes.exists() and out.resolve() == codes.resolve():
        raise ValueError(f"{flag}={out}: is the codes file itself; allowed: another path "
                         f"(default {codes.with_suffix('.metrics.json').name} beside it)")
    if not out.parent.is_dir():
        above = next((p for p in out.parents if p.exists()), None)
        if above is not None and not above.is_dir():
            raise ValueError(f"{flag}={out}: {above} is a file, not a directory; allowed: a path in an existing "
                             f"directory")
        raise ValueError(f"{flag}={out}: directory {out.parent} does not exist; allowed: a path in an existing "
                         f"directory")
    if not os.access(out.parent, os.W_OK | os.X_OK):
        raise ValueError(f"{flag}={out}: directory {out.parent} is not writable; allowed: a path in a writable "
                         f"directory")


def default_which(extras: set[str]) -> list[str]:
    """The paper's families, then every other registered family whose needs the file meets."""
    known = families()
    extra = [name for name, fam in sorted(known.items()) if name not in WHICH and
             all(f"{s}/{x}" in extras for x in fam.needs for s in ("train", "test"))]
    return [*WHICH, *extra]


def _which(text: str | None) -> list[str] | None:
    """``--which`` as family names (None: the default); unknown names refused, closest named."""
    if text is None:
        return None
    names = list(dict.fromkeys(w.strip() for w in text.split(",") if w.strip()))
    known = sorted(families())
    if not names:
        raise ValueError(f"--which={text!r}: names no metric family; allowed: comma-separated names of "
                         f"{', '.join(known)}")
    for name in names:
        if name not in known:
            raise ValueError(f"--which={text}: unknown metric family {name!r}; {_closest(name, known)}"
                             f"allowed: {', '.join(known)} (more with --plugins)")
    return names


def _check_needs(which: list[str], extras: set[str], text: str) -> None:
    known = families()
    for name in which:
        lacking = [f"{s}/{x}" for x in known[name].needs for s in ("train", "test") if f"{s}/{x}" not in extras]
        if lacking:
            usable = [n for n in sorted(known) if all(f"{s}/{x}" in extras for x in known[n].needs
                                                      for s in ("train", "test"))]
            raise ValueError(f"--which={text}: family {name!r} needs {', '.join(lacking)}, which the codes file "
                             f"lacks; allowed for this file: {', '.join(usable)}")


def check(args: argparse.Namespace, flag: str) -> tuple[CodeSet, list[str], dict[str, Any], str | None, Path, Any]:
    """Every input, before anything is computed or written: (codes, which, options, device, out,
    epoch); ``flag`` is the output option's name as typed (``--out`` or ``--json``)."""
    if args.k < 1:
        raise ValueError(f"--k={args.k}: must be an integer >= 1 (K-NN neighbours; default 9)")
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads={args.threads}: must be an integer >= 1 (default: the libraries' own)")
    plugins = [p.strip() for p in args.plugins.split(",") if p.strip()]
    try:
        load_plugins(plugins)
    except ValueError as err:
        raise ValueError(_as_flags(str(err)).replace("--plugins:", f"--plugins={args.plugins}:", 1)) from None
    except Exception as err:  # noqa: BLE001 - a user module that fails as it loads: one line, not a traceback
        raise ValueError(f"--plugins={args.plugins}: loading it raised {type(err).__name__}: {err}; allowed: "
                         f"importable modules defining FAMILY = MetricFamily(...)") from None
    which = _which(args.which)
    device = _check_device(args.device)
    if args.json is not None:
        _check_out(args.json, flag, args.codes)
    data = read_codes(args.codes)
    out = args.json if args.json is not None else args.codes.with_suffix(".metrics.json")
    if args.json is None:
        _check_out(out, "--out", args.codes)
    _check_labels(data)
    extras = {k: data[k] for k in data if k.split("/", 1)[-1] in EXTRAS and "/" in k}
    if which is None:
        which = default_which(set(extras))
    else:
        _check_needs(which, set(extras), args.which)
    n_train = data["train_codes"].shape[0]
    if "knn" in which and args.k > n_train:
        raise ValueError(f"--k={args.k}: larger than the training set ({n_train} codes); allowed: 1..{n_train}")
    options = {"drop_constant": not args.no_drop_constant, "knn_k": args.k, "logreg_mode": args.logreg_mode,
               "n_threads": args.threads, "plugins": plugins, "backend": args.backend}
    try:
        validate_options(which, options)
    except ValueError as err:
        raise ValueError(_as_flags(str(err))) from None
    codes = CodeSet(data["train_codes"], data["train_labels"], data["test_codes"], data["test_labels"],
                    int(data["n_bits"]), extras)
    return codes, which, options, device, out, _epoch(args.codes, data.get("epoch"))


def _epoch(path: Path, data_epoch: Any) -> Any:
    """The capture's epoch for the table: the file's ``epoch`` field, its name (epoch=NNNN), or '-'."""
    if data_epoch is not None and np.ndim(data_epoch) == 0 and np.issubdtype(np.asarray(data_epoch).dtype, np.integer):
        return int(data_epoch)
    match = re.fullmatch(r"epoch=(\d+)", path.stem)
    return int(match[1]) if match else "-"


def print_table(path: Path, metrics: dict[str, Any], which: Sequence[str], epoch: Any, seconds: float,
                out: Path) -> None:
    """The run's compact table (``activation_hash.summary``) for this one capture, a legend from
    its short headers to the metric names, one line of at most ``PER_FAMILY`` numbers for each
    family outside the table (retrieval, plugins); every metric is in the JSON file."""
    from rich.console import Console

    from .summary import COLUMNS, print_summary
    console = Console(highlight=False, soft_wrap=True)
    console.print(f"{path} ({seconds:.2f} s, backend {metrics.get('backend')})", markup=False)
    print_summary([{"epoch": epoch, **metrics}], console)
    legend = ", ".join(f"{short} = {key}" for key, short in COLUMNS if metrics.get(key) is not None)
    if legend:
        console.print(f"columns: {legend}", markup=False)
    known = families()
    for name in which:
        if name in WHICH or name not in known:
            continue
        numbers = [k for k in known[name].names if isinstance(metrics.get(k), float)]
        if numbers:
            more = f" (+{len(numbers) - PER_FAMILY} more)" if len(numbers) > PER_FAMILY else ""
            shown = ", ".join(f"{k} {metrics[k]:.3f}" for k in numbers[:PER_FAMILY])
            console.print(f"{name}: {shown}{more}", markup=False)
    console.print(f"wrote {out} (all {len(metrics)} metrics)", markup=False)


def main(argv: Sequence[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    flag = p.flag_given("--out/--json")
    try:
        codes, which, options, device, out, epoch = check(args, flag)
        start = time.perf_counter()
        metrics = compute_families(codes, which, options, device=device)
        elapsed = time.perf_counter() - start
    except ValueError as err:
        fail(_as_flags(str(err)))
    atomic_write_json(out, metrics)
    print_table(args.codes, metrics, which, epoch, elapsed, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
