"""The papers' claims as data, each decided by a check on the collected table.

The registry is `conf/report/claims.yaml`: one entry per claim, with its paper (`002`, `003`,
`004`), source (section / figure / table), the paper's statement, the study that tests it, the
figure of the report that shows it, and a check. A new claim is one entry there, no other edit.
The check reads only the collected table (`activation_hash.analysis.collect`).

A check is a quantity, a comparison `op` (`<` or `>`) and a `threshold`:

    {kind: mean, y: METRIC, where: {COLUMN: VALUE | [VALUES]}, at: last|first|trained|all|EPOCH|[EPOCHS]}
        per seed, the mean of METRIC over the selected rows
    {kind: spearman, x: COLUMN, y: METRIC, where: ..., at: ...}
        Spearman's rho of METRIC against x: the measured value is rho of the seed means (mean over
        seeds, and over any other setting, per value of x); the spread is the std of the per-seed rhos
    {kind: change, y: METRIC, where: ..., start: first|EPOCH, end: last|EPOCH, relative: bool, abs: bool}
        per run, METRIC at `end` minus at `start` (divided by the start value when relative),
        then per seed the mean over runs
    {kind: diff, a: QUANTITY, b: QUANTITY, pair_on: [COLUMNS], abs: bool}
        per seed, a minus b (a and b: `mean` or `change` quantities); with `pair_on` the two are
        paired on those settings too (e.g. model.width) and the per-seed value is the mean over pairs

Verdicts (`decide`):
- `not run`: the study is not in the table, or no finished row matches the check (reason given);
- `inconclusive`: the value is undefined (e.g. rho of a constant), fewer seeds than `min_seeds`,
  or the threshold lies within one seed spread (std over seeds) of the measured value;
- `holds` / `fails`: the value is on the claimed / the other side of the threshold by more than
  the seed spread. With one seed the spread is undefined and the value alone decides (unless
  `min_seeds` > 1, the default for `diff` checks, which compare two arms "by more than the seed spread").
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from activation_hash.analysis.select import Skip, matches, normalize, natural_order

CLAIMS_FILE = Path(__file__).resolve().parents[1] / "conf" / "report" / "claims.yaml"
VERDICTS = ("holds", "fails", "inconclusive", "not run")
KINDS = ("mean", "spearman", "change", "diff")
OPS = ("<", ">")
PAPERS = ("002", "003", "004")
COLUMNS = ["id", "paper", "source", "statement", "study", "check", "verdict", "measured", "spread", "n_seeds",
           "reason", "n_runs", "runs", "figure", "command"]


@dataclass(frozen=True)
class Claim:
    id: str
    paper: str
    source: str
    statement: str
    study: str
    check: Mapping[str, Any]
    figure: str | None = None
    data: str = "mnist"        # the data set the check needs (cifar10: needs the paper's CIFAR-10 runs)
    command: str | None = None  # how to produce the runs it needs; default from study and data

    def run_command(self) -> str:
        if self.command:
            return self.command
        experiment = self.study if self.data == "mnist" else f"{self.study}_{self.data}"
        profile = "cpu" if self.data == "mnist" else "paper"
        return f"python -m activation_hash +experiment={experiment} profile={profile} -m"


@dataclass
class Measure:
    value: float
    per_seed: dict[str, float] = field(default_factory=dict)
    runs: list[str] = field(default_factory=list)

    @property
    def spread(self) -> float:
        values = [v for v in self.per_seed.values() if np.isfinite(v)]
        return float(np.std(values, ddof=1)) if len(values) > 1 else math.nan


@dataclass
class Verdict:
    claim: Claim
    verdict: str
    measured: float = math.nan
    spread: float = math.nan
    n_seeds: int = 0
    reason: str = ""
    runs: list[str] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        c = self.claim
        return {"id": c.id, "paper": c.paper, "source": c.source, "statement": c.statement, "study": c.study,
                "check": describe(c.check), "verdict": self.verdict, "measured": _num(self.measured),
                "spread": _num(self.spread), "n_seeds": self.n_seeds, "reason": self.reason,
                "n_runs": len(self.runs), "runs": ";".join(self.runs), "figure": c.figure or "",
                "command": c.run_command() if self.verdict == "not run" else ""}


def _num(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), 6)


# ---------------------------------------------------------------- registry

def load_claims(path: str | Path | None = None) -> list[Claim]:
    """The registered claims (conf/report/claims.yaml), validated: unique ids, known kinds and ops."""
    entries = yaml.safe_load(Path(path or CLAIMS_FILE).read_text()) or []
    if isinstance(entries, Mapping):
        entries = entries.get("claims") or []
    claims = [Claim(**{k: (str(v) if k == "paper" else v) for k, v in e.items()}) for e in entries]
    ids = [c.id for c in claims]
    if dupes := sorted({i for i in ids if ids.count(i) > 1}):
        raise ValueError(f"claims: ids used twice: {dupes}")
    for c in claims:
        validate(c)
    return claims


def validate(claim: Claim) -> None:
    where = f"claim {claim.id}"
    if claim.paper not in PAPERS:
        raise ValueError(f"{where}: paper={claim.paper!r}: allowed: {', '.join(PAPERS)}")
    check = dict(claim.check)
    if check.get("op") not in OPS:
        raise ValueError(f"{where}: check.op={check.get('op')!r}: allowed: {', '.join(OPS)}")
    if not isinstance(check.get("threshold"), (int, float)):
        raise ValueError(f"{where}: check.threshold={check.get('threshold')!r}: must be a number")
    _validate_quantity(check, where)


def _validate_quantity(q: Mapping[str, Any], where: str) -> None:
    kind = q.get("kind")
    if kind not in KINDS:
        raise ValueError(f"{where}: kind={kind!r}: allowed: {', '.join(KINDS)}")
    needed = {"mean": ("y",), "spearman": ("x", "y"), "change": ("y",), "diff": ("a", "b")}[kind]
    if missing := [k for k in needed if k not in q]:
        raise ValueError(f"{where}: {kind} check needs {', '.join(missing)}")
    if kind == "diff":
        for side in ("a", "b"):
            if q[side].get("kind") not in ("mean", "change"):
                raise ValueError(f"{where}: diff.{side}.kind={q[side].get('kind')!r}: allowed: mean, change")
            _validate_quantity(q[side], where)


def describe(check: Mapping[str, Any]) -> str:
    """One line saying what the check computes and compares."""
    return f"{_describe_q(check)} {check['op']} {check['threshold']:g}"


def _describe_q(q: Mapping[str, Any]) -> str:
    where = ", ".join(f"{k}={v}" for k, v in (q.get("where") or {}).items())
    at = q.get("at", "last")
    scope = f" [{where}{'; ' if where else ''}epoch {at}]"
    kind = q["kind"]
    if kind == "mean":
        return f"mean {q['y']}{scope}"
    if kind == "spearman":
        return f"Spearman rho({q['y']}, {q['x']}) over seed means{scope}"
    if kind == "change":
        what = "relative change" if q.get("relative") else "change"
        text = f"{what} of {q['y']} from epoch {q.get('start', 'first')} to {q.get('end', 'last')}" \
               f" [{', '.join(f'{k}={v}' for k, v in (q.get('where') or {}).items())}]"
        return f"|{text}|" if q.get("abs") else text
    text = f"({_describe_q(q['a'])}) - ({_describe_q(q['b'])})"
    text += f" paired on seed, {', '.join(q['pair_on'])}" if q.get("pair_on") else ""
    return f"|{text}|" if q.get("abs") else text


# ---------------------------------------------------------------- measuring

def _rows(table: pd.DataFrame, study: str, where: Mapping[str, Any] | None, at: Any) -> pd.DataFrame:
    """Finished rows of `study` passing `where`, at the captures `at` names (raises Skip)."""
    rows = table[matches(table["study"], study)] if "study" in table.columns else table.iloc[0:0]
    if rows.empty:
        raise Skip(f"study {study} is not in the table")
    if "finished" in rows.columns:
        rows = rows[matches(rows["finished"], True)]
        if rows.empty:
            raise Skip(f"no finished run of study {study}")
    for column, value in (where or {}).items():
        if column not in rows.columns:
            raise Skip(f"column `{column}` is not in the table")
        rows = rows[matches(rows[column], value)]
        if rows.empty:
            raise Skip(f"no finished run of {study} with {column} = {value}")
    rows = rows[rows["epoch"].notna()]
    epoch = rows["epoch"].astype(float)
    if at == "last":
        rows = rows[epoch == epoch.groupby(rows["run_dir"]).transform("max")]
    elif at == "first":
        rows = rows[epoch == epoch.groupby(rows["run_dir"]).transform("min")]
    elif at == "trained":
        rows = rows[epoch > 0]
    elif at != "all":
        rows = rows[matches(rows["epoch"], at)]
    if rows.empty:
        raise Skip(f"no captures of {study} at epoch {at}")
    return rows


def resolve_metric(rows: pd.DataFrame, y: str) -> str:
    """`y`, with `{last}` replaced by the deepest layer number whose column has a value in `rows`."""
    if "{last}" not in y:
        return y
    head, tail = y.split("{last}", 1)
    pattern = re.compile(re.escape(head) + r"(\d+)" + re.escape(tail) + "$")
    layers = [int(m.group(1)) for c in rows.columns if (m := pattern.match(c)) and rows[c].notna().any()]
    if not layers:
        raise Skip(f"no column `{y.replace('{last}', 'N')}` in the selected rows")
    return y.replace("{last}", str(max(layers)))


def _values(rows: pd.DataFrame, y: str) -> pd.Series:
    y = resolve_metric(rows, y)
    if y not in rows.columns:
        raise Skip(f"metric `{y}` is not in the table")
    return pd.to_numeric(rows[y], errors="coerce")


def _seed(rows: pd.DataFrame) -> pd.Series:
    return rows["seed"].map(normalize).fillna("none") if "seed" in rows.columns else pd.Series("none", rows.index)


def measure(table: pd.DataFrame, study: str, q: Mapping[str, Any]) -> Measure:
    kind = q["kind"]
    if kind == "diff":
        return _measure_diff(table, study, q)
    if kind == "change":
        per_run, runs = _changes(table, study, q)
        per_seed = per_run.groupby(level="seed").mean()
        return Measure(float(per_seed.mean()), {str(k): float(v) for k, v in per_seed.items()}, runs)
    rows = _rows(table, study, q.get("where"), q.get("at", "last"))
    values = _values(rows, q["y"])
    frame = pd.DataFrame({"seed": _seed(rows), "y": values}).dropna()
    runs = natural_order(rows.loc[frame.index, "run_dir"].unique()) if "run_dir" in rows.columns else []
    if frame.empty:
        raise Skip(f"no value of {q['y']} in the selected rows")
    if kind == "mean":
        per_seed = frame.groupby("seed")["y"].mean()
        return Measure(float(per_seed.mean()), per_seed.to_dict(), runs)
    # spearman
    x = q["x"]
    if x != "epoch" and x not in rows.columns:
        raise Skip(f"column `{x}` is not in the table")
    frame["x"] = pd.to_numeric(rows.loc[frame.index, x], errors="coerce")
    frame = frame.dropna()
    means = frame.groupby("x")["y"].mean()
    if len(means) < 3:
        raise Skip(f"{x} takes {len(means)} value(s) in the selected rows; a trend needs 3 or more")
    per_seed = {}
    for seed, part in frame.groupby("seed"):
        curve = part.groupby("x")["y"].mean()
        per_seed[seed] = spearman(curve.index.to_numpy(), curve.to_numpy()) if len(curve) >= 3 else math.nan
    return Measure(spearman(means.index.to_numpy(), means.to_numpy()), per_seed, runs)


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rho (Pearson correlation of average ranks); NaN when x or y is constant."""
    rx, ry = pd.Series(x).rank().to_numpy(), pd.Series(y).rank().to_numpy()
    if np.ptp(rx) == 0 or np.ptp(ry) == 0:
        return math.nan
    return float(np.corrcoef(rx, ry)[0, 1])


def _changes(table: pd.DataFrame, study: str, q: Mapping[str, Any]) -> tuple[pd.Series, list[str]]:
    """Per run (index: seed, run_dir, plus pair columns), METRIC at `end` minus at `start`."""
    start = _rows(table, study, q.get("where"), q.get("start", "first"))
    end = _rows(table, study, q.get("where"), q.get("end", "last"))
    y = q["y"]
    a = pd.Series(_values(start, y).to_numpy(), index=start["run_dir"]).groupby(level=0).mean()
    b = pd.Series(_values(end, y).to_numpy(), index=end["run_dir"]).groupby(level=0).mean()
    delta = (b - a).dropna()
    if q.get("relative"):
        delta = (delta / a.reindex(delta.index)).replace([np.inf, -np.inf], np.nan).dropna()
    if q.get("abs"):
        delta = delta.abs()
    if delta.empty:
        raise Skip(f"no run of {study} has {y} at both epochs {q.get('start', 'first')} and {q.get('end', 'last')}")
    keys = end.drop_duplicates("run_dir").set_index("run_dir")
    index = pd.MultiIndex.from_arrays([_seed(keys).reindex(delta.index).to_numpy(), delta.index],
                                      names=["seed", "run_dir"])
    return pd.Series(delta.to_numpy(), index=index), natural_order(delta.index)


def _side(table: pd.DataFrame, study: str, q: Mapping[str, Any], pair_on: Sequence[str]) -> tuple[pd.Series, list[str]]:
    """Per (seed, *pair_on) values of one side of a diff."""
    if q["kind"] == "change":
        per_run, runs = _changes(table, study, q)
        rows = table.drop_duplicates("run_dir").set_index("run_dir").loc[per_run.index.get_level_values("run_dir")]
        keys = [per_run.index.get_level_values("seed")] + [rows[c].map(normalize).to_numpy() for c in pair_on]
        return pd.Series(per_run.to_numpy()).groupby(keys).mean(), runs
    rows = _rows(table, study, q.get("where"), q.get("at", "last"))
    for c in pair_on:
        if c not in rows.columns:
            raise Skip(f"column `{c}` is not in the table")
    frame = pd.DataFrame({"seed": _seed(rows), "y": _values(rows, q["y"]),
                          **{c: rows[c].map(normalize).fillna("none") for c in pair_on}}).dropna()
    if frame.empty:
        raise Skip(f"no value of {q['y']} in the selected rows")
    runs = natural_order(rows.loc[frame.index, "run_dir"].unique()) if "run_dir" in rows.columns else []
    return frame.groupby(["seed", *pair_on])["y"].mean(), runs


def _measure_diff(table: pd.DataFrame, study: str, q: Mapping[str, Any]) -> Measure:
    pair_on = list(q.get("pair_on") or [])
    a, runs_a = _side(table, study, q["a"], pair_on)
    b, runs_b = _side(table, study, q["b"], pair_on)
    a.index = a.index.set_names(["seed", *pair_on]) if pair_on else a.index.set_names(["seed"])
    b.index = b.index.set_names(a.index.names)
    common = a.index.intersection(b.index)
    if common.empty:
        raise Skip("the two arms share no seed" + (f" and {', '.join(pair_on)}" if pair_on else ""))
    delta = a.loc[common] - b.loc[common]
    if q.get("abs"):
        delta = delta.abs()
    per_seed = delta.groupby(level="seed").mean()
    return Measure(float(per_seed.mean()), {str(k): float(v) for k, v in per_seed.items()},
                   sorted(set(runs_a) | set(runs_b)))


# ---------------------------------------------------------------- deciding

def decide(value: float, spread: float, op: str, threshold: float, n_seeds: int = 1,
           min_seeds: int = 1) -> tuple[str, str]:
    """(verdict, reason) for `value op threshold` given the seed spread (see the module's docstring)."""
    if value is None or not np.isfinite(value):
        return "inconclusive", "the measured value is undefined"
    if n_seeds < min_seeds:
        return "inconclusive", f"{n_seeds} seed(s); this check needs {min_seeds} to compare with the seed spread"
    passes = value < threshold if op == "<" else value > threshold
    margin = abs(value - threshold)
    if np.isfinite(spread) and margin <= spread:
        return "inconclusive", f"the threshold lies within one seed spread ({spread:.3g}) of the value"
    note = "" if np.isfinite(spread) else "; one seed: spread undefined, the value alone decides"
    return ("holds" if passes else "fails"), f"{value:.4g} {op} {threshold:g} is {'true' if passes else 'false'}{note}"


def evaluate(claim: Claim, table: pd.DataFrame) -> Verdict:
    check = dict(claim.check)
    try:
        m = measure(table, claim.study, check)
    except Skip as why:
        return Verdict(claim, "not run", reason=str(why))
    n_seeds = len(m.per_seed)
    default_min = 2 if check["kind"] == "diff" else 1
    verdict, reason = decide(m.value, m.spread, check["op"], float(check["threshold"]), n_seeds,
                             int(check.get("min_seeds", default_min)))
    return Verdict(claim, verdict, m.value, m.spread, n_seeds, reason, m.runs)


def evaluate_all(table: pd.DataFrame, claims: Sequence[Claim] | None = None) -> pd.DataFrame:
    """claims.csv: one row per registered claim (COLUMNS)."""
    claims = load_claims() if claims is None else claims
    return pd.DataFrame([evaluate(c, table).row() for c in claims], columns=COLUMNS)


def counts(frame: pd.DataFrame) -> dict[str, int]:
    return {v: int((frame["verdict"] == v).sum()) for v in VERDICTS}


# ---------------------------------------------------------------- report section

def claims_section(frame: pd.DataFrame, out: Path) -> list[str]:
    """The report's Claims section (claims.csv is written by the caller)."""
    c = counts(frame)
    lines = ["## Claims\n",
             f"Every registered claim of the three papers (conf/report/claims.yaml), decided on this table: "
             + ", ".join(f"{n} {v}" for v, n in c.items())
             + ". All rows, with the runs behind each verdict: [claims.csv](claims.csv). A claim holds or "
               "fails when the measured value is on that side of the threshold by more than the seed spread "
               "(std over seeds); `not run` gives the command that would run it.\n",
             "| claim | paper | source | check | measured ± spread (seeds) | verdict |",
             "| --- | --- | --- | --- | --- | --- |"]
    for _, r in frame.iterrows():
        measured = "" if pd.isna(r["measured"]) else f"{r['measured']:.3f}"
        if measured:
            measured += " ± " + ("undefined" if pd.isna(r["spread"]) else f"{r['spread']:.3f}") + f" ({r['n_seeds']})"
        verdict = f"**{r['verdict']}**" if r["verdict"] == "fails" else r["verdict"]
        if r["verdict"] == "fails" and r["figure"] and (out / f"{r['figure']}.png").exists():
            verdict += f" ([figure]({r['figure']}.png))"
        lines.append(f"| {r['id']} | {r['paper']} | {r['source']} | {r['check']} | {measured} | {verdict} |")
    failed = frame[frame["verdict"] == "fails"]
    if not failed.empty:
        lines += ["", "Failing claims:"]
        for _, r in failed.iterrows():
            link = f" See [{r['figure']}]({r['figure']}.png)." if r["figure"] and (out / f"{r['figure']}.png").exists() \
                else (f" Figure: `{r['figure']}` (not drawn for this table)." if r["figure"] else "")
            lines.append(f"- `{r['id']}` ({r['source']}): the paper says \"{r['statement']}\"; measured "
                         f"{r['measured']:.3f} ({r['reason']}).{link}")
    return lines + [""]


def claims_record(frame: pd.DataFrame) -> str:
    """The reproduction record (docs/reproduction.md): one row per claim with the paper's words,
    the verdict, the measured value ± seed spread, and the runs behind it or the command to run."""
    c = counts(frame)
    lines = ["Verdicts: " + ", ".join(f"{n} {v}" for v, n in c.items()) + ".", "",
             "| claim | paper | source | the paper says | check | verdict | measured ± spread (seeds) | runs, or the command that would run it |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for _, r in frame.iterrows():
        measured = "" if pd.isna(r["measured"]) else f"{r['measured']:.3f} ± " + (
            "undefined" if pd.isna(r["spread"]) else f"{r['spread']:.3f}") + f" ({r['n_seeds']})"
        behind = f"`{r['command']}`" if r["verdict"] == "not run" else f"{r['n_runs']} runs"
        statement = str(r["statement"]).replace("|", "/")
        lines.append(f"| {r['id']} | {r['paper']} | {r['source']} | {statement} | {r['check']} | "
                     f"{'**fails**' if r['verdict'] == 'fails' else r['verdict']} | {measured} | {behind} |")
    return "\n".join(lines) + "\n"
