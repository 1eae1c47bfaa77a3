"""Metric family ``retrieval``: neural codes as hash codes, scored by Hamming ranking.

Options (``metrics.retrieval.*``; defaults in ``DEFAULTS``):
  protocol           test_vs_train (default; what `evaluate` uses): query = every test code,
                     database = every training code.
                     split_1k: query = ``queries_per_class`` (100) test images per class, drawn
                     with ``seed`` (half of a class's test images when it has fewer than twice
                     that); database = the other test images + every training image.
  bits               budgets: integers and ``full`` (the whole code).
  units              neural unit selections at each budget (documented, label-free):
                       all         seeded random subset of all units (constant ones included);
                       last_layer  seeded random subset of the last code layer's units;
                       random      seeded random subset of the units that vary on query+database;
                       balanced    the units whose firing rate on the database is closest to 0.5.
                     Subsets of one selection are nested (one permutation, cut at each budget);
                     a budget larger than the selection's pool is skipped.
  baselines          lsh | itq | pcah (``activation_hash.metrics.hashing``), fitted on the
                     database rows of each feature set in ``baseline_features``:
                     pixels (the inputs) and/or penultimate (input of the last nn.Linear);
                     at integer budgets only. A feature set the capture did not provide is skipped.
  top_k              R of mAP@R;  pr_curves: also return PR curves (lists, index = radius).

Names: the whole neural code gives ``test/map``, ``test/map_optimistic``, ``test/map_pessimistic``,
``test/map@1000``, ``test/map@5000``, ``test/precision_r2``, ``test/precision_r2_nonempty`` (see
``activation_hash.metrics.retrieval`` for the definitions) and ``test/pr_curve/{precision,recall}``.
Each (method, budget) gives the same names with the suffix ``/<method>/<bits>``, method one of
``neural_<units>`` or ``<baseline>_<features>``, e.g. ``test/map/neural_all/32``,
``test/map/lsh_pixels/32``, ``test/map/itq_penultimate/64``, ``test/map/neural_all/full``.
``test/retrieval_n_query``, ``test/retrieval_db_size``, ``test/retrieval_db_from_test`` (test
images in the database), ``test/retrieval_queries_no_relevant`` and ``test/retrieval_full_bits``
state what was measured.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any

import numpy as np

from ..bits import iter_chunks, rows_per_chunk, select_bits, unpack_rows, varying_bits
from ..hashing import METHODS as BASELINES
from ..hashing import fit_hasher, fit_pca
from ..registry import CodeSet, MetricFamily
from ..retrieval import TOP_K, retrieval_metrics

PROTOCOLS = ("split_1k", "test_vs_train")
UNITS = ("all", "last_layer", "random", "balanced")
FEATURES = ("pixels", "penultimate")
_EXTRA = {"pixels": "inputs", "penultimate": "penultimate"}
DEFAULTS: dict[str, Any] = {
    "protocol": "test_vs_train", "bits": [16, 32, 64, 128, "full"], "units": list(UNITS),
    "baselines": ["lsh", "itq", "pcah"], "baseline_features": ["pixels", "penultimate"],
    "top_k": list(TOP_K), "queries_per_class": 100, "seed": 0, "pr_curves": True,
}


def check_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Merged, validated options; a bad value raises ``metrics.retrieval.KEY=VALUE: allowed``."""
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"metrics.retrieval: unknown option(s) {unknown}; allowed: {sorted(DEFAULTS)}")
    opts = {**DEFAULTS, **{k: v for k, v in options.items() if v is not None}}

    def bad(key: str, allowed: str) -> ValueError:
        return ValueError(f"metrics.retrieval.{key}={opts[key]!r}: {allowed}")

    if opts["protocol"] not in PROTOCOLS:
        raise bad("protocol", f"must be one of {list(PROTOCOLS)}")
    for key, allowed in (("units", UNITS), ("baselines", BASELINES), ("baseline_features", FEATURES)):
        opts[key] = [opts[key]] if isinstance(opts[key], str) else list(opts[key])
        if any(v not in allowed for v in opts[key]):
            raise bad(key, f"a list of {list(allowed)}")
    bits = [opts["bits"]] if isinstance(opts["bits"], (str, int)) else list(opts["bits"])
    if not bits or any(b != "full" and (isinstance(b, bool) or not isinstance(b, int) or b < 1) for b in bits):
        raise bad("bits", "a list of integers >= 1 and/or 'full'")
    opts["bits"] = bits
    top_k = [opts["top_k"]] if isinstance(opts["top_k"], int) else list(opts["top_k"])
    if any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in top_k):
        raise bad("top_k", "a list of integers >= 1")
    opts["top_k"] = top_k
    for key, minimum in (("queries_per_class", 1), ("seed", 0)):
        if isinstance(opts[key], bool) or not isinstance(opts[key], int) or opts[key] < minimum:
            raise bad(key, f"an integer >= {minimum}")
    if not isinstance(opts["pr_curves"], bool):
        raise bad("pr_curves", "true or false")
    return opts


def split(codes: CodeSet, protocol: str, queries_per_class: int, seed: int
          ) -> tuple[np.ndarray, np.ndarray]:
    """Test rows used as queries, and test rows added to the database (after the training rows)."""
    n_test = codes.test_codes.shape[0]
    if protocol == "test_vs_train":
        return np.arange(n_test), np.arange(0)
    rng = np.random.default_rng(seed)
    query = []
    for label in np.unique(codes.test_labels):
        rows = np.flatnonzero(codes.test_labels == label)
        # A class with fewer than 2 * queries_per_class test images gives half of them (small or
        # reduced test sets); test/retrieval_n_query states the number used.
        query.append(rng.choice(rows, min(queries_per_class, rows.size // 2), replace=False))
    query = np.sort(np.concatenate(query))
    return query, np.setdiff1d(np.arange(n_test), query)


def firing_rates(packed: np.ndarray, n_bits: int) -> np.ndarray:
    """Share of rows with each bit set, chunk by chunk."""
    total = np.zeros(n_bits)
    for lo, hi in iter_chunks(packed.shape[0], rows_per_chunk(max(n_bits, 1))):
        total += unpack_rows(packed[lo:hi], n_bits).sum(axis=0)
    return total / max(1, packed.shape[0])


def unit_order(selection: str, codes: CodeSet, query: np.ndarray, db: np.ndarray,
               rng: np.random.Generator) -> np.ndarray | None:
    """Units of a selection in the order they are taken (a budget b keeps the first b)."""
    n_bits = codes.n_bits
    if selection == "all":
        return rng.permutation(n_bits)
    if selection == "last_layer":
        if not codes.layer_units or sum(codes.layer_units) != n_bits:
            return None
        last = codes.layer_units[-1]
        return n_bits - last + rng.permutation(last)
    if selection == "random":
        return rng.permutation(np.flatnonzero(varying_bits((query, db), n_bits)))
    rates = firing_rates(db, n_bits)
    return np.argsort(np.abs(rates - 0.5), kind="stable")


def _compute(codes: CodeSet, *, retrieval: Mapping[str, Any] | None = None, backend: str = "sklearn",
             device: Any = None, max_ram: int | None = None, **flat: Any) -> dict[str, Any]:
    opts = check_options({**dict(retrieval or {}), **flat})
    on: dict[str, Any] = {"device": device if backend == "torch" else None, "backend": backend}
    if max_ram is not None:  # distance blocks within an eighth of the budget; the database streams beyond a quarter
        on.update(block_bytes=max(2**20, min(2**28, max_ram // 8)), max_bytes=max_ram // 4)
    q_rows, db_test_rows = split(codes, opts["protocol"], opts["queries_per_class"], opts["seed"])
    n_bits = codes.n_bits
    if opts["protocol"] == "test_vs_train":  # the arrays themselves (memory maps stay unread until streamed)
        query, q_labels = codes.test_codes, codes.test_labels
        db, db_labels = codes.train_codes, codes.train_labels
    else:
        query, q_labels = codes.test_codes[q_rows], codes.test_labels[q_rows]
        db = np.concatenate([codes.train_codes, codes.test_codes[db_test_rows]])
        db_labels = np.concatenate([codes.train_labels, codes.test_labels[db_test_rows]])
    top_k, curves = opts["top_k"], opts["pr_curves"]

    main = retrieval_metrics(query, q_labels, db, db_labels, n_bits, top_k=top_k, **on)
    out: dict[str, Any] = {"test/retrieval_n_query": int(q_rows.size), "test/retrieval_db_size": int(db.shape[0]),
                           "test/retrieval_db_from_test": int(db_test_rows.size),
                           "test/retrieval_queries_no_relevant": main.n_no_relevant,
                           "test/retrieval_full_bits": n_bits, **main.as_metrics(curves=curves)}

    for selection in opts["units"]:
        order = unit_order(selection, codes, query, db, np.random.default_rng([opts["seed"], UNITS.index(selection)]))
        if order is None:
            continue
        for budget in opts["bits"]:
            b = order.size if budget == "full" else budget
            if b > order.size or (budget == "full" and selection in ("random", "balanced")):
                continue  # at full width these are the whole code up to constant units: same distances
            if b == n_bits:  # every unit, in some order: the whole code's distances, already scored
                out.update(main.as_metrics(suffix=f"/neural_{selection}/{budget}", curves=curves))
                continue
            keep = np.zeros(n_bits, dtype=bool)
            keep[order[:b]] = True
            res = retrieval_metrics(select_bits(query, n_bits, keep), q_labels, select_bits(db, n_bits, keep),
                                    db_labels, b, top_k=top_k, **on)
            out.update(res.as_metrics(suffix=f"/neural_{selection}/{budget}", curves=curves))

    budgets = [b for b in opts["bits"] if b != "full"]
    for feature in opts["baseline_features"]:
        train_x = codes.extras.get(f"train/{_EXTRA[feature]}")
        test_x = codes.extras.get(f"test/{_EXTRA[feature]}")
        if train_x is None or test_x is None or not opts["baselines"] or not budgets:
            continue
        train_x, test_x = (np.asarray(a, dtype=np.float64).reshape(a.shape[0], -1) for a in (train_x, test_x))
        db_x, q_x = np.concatenate([train_x, test_x[db_test_rows]]), test_x[q_rows]
        pca_bits = [b for b in budgets if b <= min(db_x.shape)]
        pca = fit_pca(db_x, max(pca_bits), seed=opts["seed"]) if pca_bits and set(opts["baselines"]) - {"lsh"} else None
        for method in opts["baselines"]:
            for b in budgets if method == "lsh" else pca_bits:
                hasher = fit_hasher(method, db_x, b, seed=opts["seed"], pca=pca)
                res = retrieval_metrics(hasher.encode(q_x), q_labels, hasher.encode(db_x), db_labels, b,
                                        top_k=top_k, **on)
                out.update(res.as_metrics(suffix=f"/{method}_{feature}/{b}", curves=curves))
    return out


_STATED = ("test/retrieval_n_query", "test/retrieval_db_size", "test/retrieval_db_from_test",
           "test/retrieval_queries_no_relevant", "test/retrieval_full_bits")


def metric_names(opts: Mapping[str, Any] = DEFAULTS) -> tuple[str, ...]:
    """Every name the family may return under ``opts`` (budget names depend on the options)."""
    opts = check_options(dict(opts))
    summary = ("map", "map_optimistic", "map_pessimistic", *(f"map@{k}" for k in opts["top_k"]),
               "precision_r2", "precision_r2_nonempty")
    suffixes = [""] + [f"/neural_{u}/{b}" for u in opts["units"] for b in opts["bits"]]
    suffixes += [f"/{m}_{f}/{b}" for m in opts["baselines"] for f in opts["baseline_features"]
                 for b in opts["bits"] if b != "full"]
    names = [f"test/{n}{s}" for s in suffixes for n in summary]
    if opts["pr_curves"]:
        names += [f"test/pr_curve{s}/{c}" for s in suffixes for c in ("precision", "recall")]
    return (*_STATED, *names)


def _check(options: Mapping[str, Any]) -> None:
    check_options(dict(options.get("retrieval") or {}))


# Baselines use the inputs / penultimate features when the capture provides them and are skipped
# otherwise (a codes file has none): they are `wants`, not `needs`. `check` validates the options
# before training where the registry has that field.
_FIELDS = {f.name for f in fields(MetricFamily)}
_OPTIONAL = {"wants": ("inputs", "penultimate"), "check": _check}
FAMILY = MetricFamily(
    name="retrieval",
    names=metric_names(),  # under the default options; see metric_names(options)
    compute=_compute,
    options={"retrieval": DEFAULTS, "backend": "sklearn", "device": None, "max_ram": None},
    drop_constant=False,  # unit selections index the captured layers (CodeSet.layer_units)
    description="Hamming-ranking retrieval: tie-aware mAP, mAP@R, radius-2 precision, PR curves; "
                "neural codes at bit budgets vs LSH / PCAH / PCA-ITQ (names with /<method>/<bits>)",
    **{k: v for k, v in _OPTIONAL.items() if k in _FIELDS},
)
