"""Check, before any study runs, that every data set the studies read is on disk (or fetch them).

    python -m activation_hash.data.check model_size training_time --profile smoke
    python -m activation_hash.data.check --all --download        # what `make reproduce-paper DOWNLOAD=1` runs

Each study (an experiment file) is composed as `+experiment=NAME profile=PROFILE` plus any extra
overrides; the data sets it sweeps over (a `data` group sweep, as in cnn_zoo) are composed too. For
each distinct (data set, folder) the files are looked for without loading them; everything missing
is reported in one message, with the two ways to get it, and the exit status is 1. With
`--download` the missing files are fetched (MD5-checked) instead.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hydra import compose, initialize_config_module
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from activation_hash.data.sources import MissingDataError

CONF = Path(__file__).resolve().parent.parent / "conf"


@dataclass
class Need:
    """One data set in one folder, and the studies that read it."""
    name: str
    root: str | None
    data: DictConfig
    studies: list[str] = field(default_factory=list)
    error: str | None = None


def studies_available() -> list[str]:
    return sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


def _data_configs(study: str, profile: str, overrides: Sequence[str]) -> list[DictConfig]:
    """The data config of every job of the study, as far as which files it reads: the sweep is
    expanded over its config-group keys (e.g. `data`, `+cnn_recipe`, `model`) and data.name/root."""
    groups = {p.name for p in CONF.iterdir() if p.is_dir()}
    chooses_files = lambda key: key.lstrip("+~") in groups or key in ("data.name", "data.root")  # noqa: E731
    # the user's own sweeps (e.g. ARGS="seed=0,1") join the study's; only those that choose files matter
    parsed = OverridesParser.create().parse_overrides(list(overrides))
    plain = [text for text, o in zip(overrides, parsed) if not o.is_sweep_override()]
    user_sweeps = {o.get_key_element(): list(o.sweep_string_iterator()) for o in parsed
                   if o.is_sweep_override() and chooses_files(o.get_key_element())}
    base = [f"+experiment={study}", f"profile={profile}", *plain]
    with initialize_config_module(config_module="activation_hash.conf", version_base="1.3"):
        cfg = compose(config_name="config", overrides=base, return_hydra_config=True)
        params = OmegaConf.to_container(cfg.hydra.sweeper.params, resolve=True) if cfg.hydra.sweeper.get("params") else {}
        swept = {key: [v.strip() for v in str(value).split(",") if v.strip()] for key, value in (params or {}).items()
                 if chooses_files(key)}
        swept.update(user_sweeps)
        jobs = [list(zip(swept, values)) for values in itertools.product(*swept.values())]
        return [compose(config_name="config", overrides=[*base, *(f"{k}={v}" for k, v in job)]).data for job in jobs]


def needs(studies: Sequence[str], profile: str = "smoke", overrides: Sequence[str] = ()) -> list[Need]:
    """The (data set, folder) pairs `studies` read, in first-use order."""
    found: dict[tuple[str, str | None], Need] = {}
    for study in studies:
        for data in _data_configs(study, profile, overrides):
            if "_target_" not in data or "name" not in data:
                continue   # a user's own data module (data=custom): nothing to check here
            root = OmegaConf.select(data, "root")
            key = (str(data.name), None if root is None else str(root))
            need = found.setdefault(key, Need(*key, data=data))
            if study not in need.studies:
                need.studies.append(study)
    return list(found.values())


def check(studies: Sequence[str], profile: str = "smoke", overrides: Sequence[str] = (),
          download: bool = False) -> list[Need]:
    """The needs whose files are missing (after downloading them, when `download`)."""
    missing = []
    for need in needs(studies, profile, overrides):
        data = need.data.copy()
        with open_dict(data):
            data.download = bool(download or data.get("download", False))
        try:
            instantiate(data).prepare_data()  # looks for (or fetches, or extracts) the files; loads nothing
        except MissingDataError as err:
            need.error = str(err)
            missing.append(need)
    return missing


def message(missing: Sequence[Need], n_studies: int) -> str:
    studies = sorted({s for need in missing for s in need.studies})
    lines = [f"data missing for {len(studies)} of {n_studies} studies; nothing was run:"]
    for need in missing:
        detail = (need.error or "").splitlines()
        expected = [d.strip() for d in detail[1:] if d.startswith("  ")]
        lines.append(f"  {need.name} in data.root={need.root!r} (for {', '.join(need.studies)})"
                     + (f": expected {expected[0]}" + (f" and {len(expected) - 1} more" if len(expected) > 1 else "")
                        if expected else f": {detail[0] if detail else 'not found'}"))
        if need.name == "fashion_mnist":
            lines.append("    (also looked in Debian's /usr/share/datasets/fashion-mnist: apt-get install "
                         "dataset-fashion-mnist)")
    lines += ["Get them in one of two ways:",
              "  - download them (MD5-checked): make reproduce-paper DOWNLOAD=1, or add data.download=true to a run;",
              "  - or point ACTIVATION_HASH_DATA=DIR (or data.root=DIR) at a folder that has them "
              "(MNIST/raw/, FashionMNIST/raw/, cifar-10-batches-py/ or cifar-10-python.tar.gz)."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m activation_hash.data.check", description=__doc__.split("\n")[0])
    parser.add_argument("studies", nargs="*", help="experiment names (conf/experiment/*.yaml)")
    parser.add_argument("--all", action="store_true", help="every experiment file")
    parser.add_argument("--profile", default="smoke", help="smoke | paper (default: smoke)")
    parser.add_argument("--download", action="store_true", help="fetch what is missing instead of failing")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="an override applied to every study, e.g. --set data.root=/data")
    args = parser.parse_args(argv)
    known = studies_available()
    studies = known if args.all else list(args.studies)
    if unknown := [s for s in studies if s not in known]:
        print(f"error: study {unknown[0]!r} is not an experiment file; allowed: {', '.join(known)}", file=sys.stderr)
        return 2
    if not studies:
        parser.error("name the studies, or pass --all")
    missing = check(studies, args.profile, args.overrides, download=args.download)
    if missing:
        print(message(missing, len(studies)), file=sys.stderr)
        return 1
    print(f"data present for all {len(studies)} studies ({args.profile} profile)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
