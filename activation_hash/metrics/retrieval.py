"""Hamming-ranking retrieval metrics of packed binary codes, exact under ties.

Each query ranks the database by Hamming distance; relevance = same label. Everything follows
from per-query distance histograms by relevance: ``rel[q, d]`` and ``tot[q, d]``, the numbers of
relevant and of all database items at distance d = 0..n_bits. Distances are popcounts of XOR on
the packed bytes (faiss's exact ``hammings`` when importable, else ``np.bitwise_count``), computed
in query chunks whose distance block and histograms stay within ``BLOCK_BYTES``; per-query values
are reduced chunk by chunk, and the database is read block by block (a memory map streams), so
the peak memory is one distance block plus one database block beyond the arrays themselves. The cost is
O(n_query * n_db) distance computations, then O(n_bits) per query.

Definitions (query with R relevant items; a group = the items at one distance d, with n_d items,
r_d of them relevant, N_d items and R_d relevant items at smaller distances; H_k = sum_{i<=k} 1/i):
- Tie-aware AP (He, Cakir, Bargal, Sclaroff, CVPR 2018, AP_T): the expected AP over uniformly
  random orders within every group. Position t of group d is relevant with probability r_d/n_d
  and then has in expectation (t-1)(r_d-1)/(n_d-1) relevant items before it in its group, so
      AP_T = 1/R sum_d r_d/n_d sum_{t=1}^{n_d} (R_d + 1 + (t-1)(r_d-1)/(n_d-1)) / (N_d + t),
  a sum of harmonic-number differences (exact; no sampling).
- Optimistic / pessimistic AP: the relevant items of each group ranked first / last in it.
- AP@K (K = 1000, 5000, capped at the database size): the standard (DeepHash) definition
  sum_{k<=K} P(k) rel(k) / (number of relevant items in the top K), tie-aware as the *ratio of the
  expectations* of numerator and denominator under random tie order (the group cut at K keeps
  its first m = K - N_d positions); 0 when no relevant item can reach the top K.
- Queries with no relevant database item have no defined AP: they are excluded from every AP
  mean (``*_queries_no_relevant`` counts them). They still count in the precision means.
- Precision within Hamming radius r: relevant / all items at distance <= r; an empty ball scores
  0 (as the standard MATLAB evaluation). ``precision_r2`` is its mean over queries at r = 2 and
  ``precision_r2_nonempty`` the share of queries whose radius-2 ball is not empty.
- PR curve: for every radius r = 0..n_bits, the mean over queries of that precision and of the
  recall (relevant items within r) / R (over the queries with R > 0).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from .bits import check_packed, iter_chunks, rows_per_chunk

BLOCK_BYTES = 256 * 2**20
# Per (query, database item) while histogramming: int32 distance, int64 flat index and its
# temporary, bool mask, with room for the selected indices.
_PAIR_BYTES = 24
TOP_K = (1000, 5000)


@dataclass(frozen=True)
class RetrievalResult:
    """Means over queries (see the module docstring) and the PR curve (index = radius)."""
    map: float
    map_optimistic: float
    map_pessimistic: float
    map_at: dict[int, float]
    precision_r2: float
    precision_r2_nonempty: float
    pr_precision: np.ndarray
    pr_recall: np.ndarray
    n_query: int
    n_db: int
    n_no_relevant: int

    def as_metrics(self, prefix: str = "test/", suffix: str = "", curves: bool = True) -> dict:
        """Flat metric names: ``{prefix}map{suffix}`` etc. (suffix such as ``/lsh_pixels/32``)."""
        out = {f"{prefix}map{suffix}": self.map,
               f"{prefix}map_optimistic{suffix}": self.map_optimistic,
               f"{prefix}map_pessimistic{suffix}": self.map_pessimistic,
               **{f"{prefix}map@{k}{suffix}": v for k, v in self.map_at.items()},
               f"{prefix}precision_r2{suffix}": self.precision_r2,
               f"{prefix}precision_r2_nonempty{suffix}": self.precision_r2_nonempty}
        if curves:
            out[f"{prefix}pr_curve{suffix}/precision"] = [float(v) for v in self.pr_precision]
            out[f"{prefix}pr_curve{suffix}/recall"] = [float(v) for v in self.pr_recall]
        return out


def hamming_block(query: np.ndarray, db: np.ndarray) -> np.ndarray:
    """Exact (len(query), len(db)) int32 Hamming distances between packed codes of equal width."""
    if query.shape[1] != db.shape[1]:
        raise ValueError(f"query codes have {query.shape[1]} bytes, database codes {db.shape[1]}")
    try:
        import faiss
    except ImportError:
        faiss = None
    if faiss is None or query.shape[1] == 0:
        out = np.zeros((query.shape[0], db.shape[0]), dtype=np.int32)
        for lo, hi in iter_chunks(db.shape[0], rows_per_chunk(query.shape[0] * max(1, db.shape[1]))):
            out[:, lo:hi] = np.bitwise_count(query[:, None, :] ^ db[None, lo:hi, :]).sum(axis=2)
        return out
    width = -(-max(query.shape[1], 4) // 8) * 8 if query.shape[1] > 4 else 4
    q, d = (np.pad(a, ((0, 0), (0, width - a.shape[1]))) for a in (query, db))  # zeros: same distance
    out = np.empty((q.shape[0], d.shape[0]), dtype=np.int32)
    if out.size:
        faiss.hammings(faiss.swig_ptr(np.ascontiguousarray(q)), faiss.swig_ptr(np.ascontiguousarray(d)),
                       q.shape[0], d.shape[0], width, faiss.swig_ptr(out))
    return out


def distance_histograms(query: np.ndarray, query_labels: np.ndarray, db: np.ndarray,
                        db_labels: np.ndarray, n_bits: int, *, block_bytes: int = BLOCK_BYTES
                        ) -> Iterator[tuple[slice, np.ndarray, np.ndarray]]:
    """Yield (query slice, rel, tot) per query chunk: int64 arrays (chunk, n_bits + 1) counting
    the relevant / all database items at each Hamming distance."""
    query = check_packed(query, n_bits, "query codes")
    db = check_packed(db, n_bits, "database codes")
    qy, dy = np.asarray(query_labels), np.asarray(db_labels)
    if qy.shape != (query.shape[0],) or dy.shape != (db.shape[0],):
        raise ValueError(f"labels: {qy.shape} and {dy.shape} for {query.shape[0]} query and "
                         f"{db.shape[0]} database codes")
    n_d = n_bits + 1
    chunk = rows_per_chunk(max(1, db.shape[0]) * _PAIR_BYTES, block_bytes)
    # the database is read (and zero-padded for faiss) block by block: never copied whole, so a
    # memory-mapped database streams, one pass per query chunk
    db_block = rows_per_chunk(2 * (db.shape[1] + 8), max(1, block_bytes // 4))
    for lo, hi in iter_chunks(query.shape[0], chunk):
        q = np.asarray(query[lo:hi])
        dist = np.empty((hi - lo, db.shape[0]), dtype=np.int32)
        for dlo, dhi in iter_chunks(db.shape[0], db_block):
            dist[:, dlo:dhi] = hamming_block(q, np.asarray(db[dlo:dhi]))
        flat = dist + (np.arange(hi - lo, dtype=np.int64) * n_d)[:, None]
        tot = np.bincount(flat.ravel(), minlength=(hi - lo) * n_d).reshape(hi - lo, n_d)
        same = qy[lo:hi, None] == dy[None, :]
        rel = np.bincount(flat[same], minlength=(hi - lo) * n_d).reshape(hi - lo, n_d)
        yield slice(lo, hi), rel, tot


def _harmonic(n: int) -> np.ndarray:
    """H[k] = sum_{i=1}^k 1/i for k = 0..n (float64)."""
    h = np.zeros(n + 1)
    np.cumsum(1.0 / np.arange(1, n + 1), out=h[1:])
    return h


def _groups(rel: np.ndarray, tot: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per (query, distance): items and relevant items at smaller distances (N_d, R_d)."""
    before_n = np.cumsum(tot, axis=1) - tot
    before_r = np.cumsum(rel, axis=1) - rel
    return before_n, before_r


def _tie_slope(rel: np.ndarray, tot: np.ndarray) -> np.ndarray:
    """(r_d - 1) / (n_d - 1): expected relevant share among the others of a group (0 if n_d <= 1)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(tot > 1, (rel - 1) / np.maximum(tot - 1, 1), 0.0)


def ap_tie_aware(rel: np.ndarray, tot: np.ndarray, h: np.ndarray | None = None) -> np.ndarray:
    """Expected AP per query under random tie order (NaN where a query has no relevant item)."""
    rel, tot = np.asarray(rel, dtype=np.int64), np.asarray(tot, dtype=np.int64)
    h = _harmonic(int(tot.sum(axis=1).max(initial=0))) if h is None else h
    n_before, r_before = _groups(rel, tot)
    num = _group_sums(rel, tot, n_before, r_before, tot, h)
    return _normalise(num.sum(axis=1), rel.sum(axis=1))


def _group_sums(rel, tot, n_before, r_before, m, h) -> np.ndarray:
    """Expected sum of P(k) rel(k) over the first m positions of every group (closed form:
    sum_{t<=m} (a + b(t-1)) / (N + t) = (a - b(N+1)) (H[N+m] - H[N]) + b m)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(tot > 0, rel / np.maximum(tot, 1), 0.0)
    b = _tie_slope(rel, tot)
    a = r_before + 1.0
    harm = h[n_before + m] - h[n_before]
    return np.where(rel > 0, share * ((a - b * (n_before + 1)) * harm + b * m), 0.0)


def _normalise(num: np.ndarray, denom: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denom > 0, num / np.where(denom > 0, denom, 1), np.nan)


def ap_optimistic(rel: np.ndarray, tot: np.ndarray, h: np.ndarray | None = None) -> np.ndarray:
    """AP per query with the relevant items of every tie group ranked first in it."""
    rel, tot = np.asarray(rel, dtype=np.int64), np.asarray(tot, dtype=np.int64)
    h = _harmonic(int(tot.sum(axis=1).max(initial=0))) if h is None else h
    n0, r0 = _groups(rel, tot)
    # sum_{j<=r} (R0 + j) / (N0 + j) = r + (R0 - N0) (H[N0 + r] - H[N0])
    num = rel + (r0 - n0) * (h[n0 + rel] - h[n0])
    return _normalise(num.sum(axis=1), rel.sum(axis=1))


def ap_pessimistic(rel: np.ndarray, tot: np.ndarray, h: np.ndarray | None = None) -> np.ndarray:
    """AP per query with the relevant items of every tie group ranked last in it."""
    rel, tot = np.asarray(rel, dtype=np.int64), np.asarray(tot, dtype=np.int64)
    h = _harmonic(int(tot.sum(axis=1).max(initial=0))) if h is None else h
    n0, r0 = _groups(rel, tot)
    start = n0 + tot - rel  # items ranked before the group's first relevant item
    num = rel + (r0 - start) * (h[start + rel] - h[start])
    return _normalise(num.sum(axis=1), rel.sum(axis=1))


def ap_at_k_parts(rel: np.ndarray, tot: np.ndarray, k: int, h: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Expected numerator sum_{i<=k} P(i) rel(i) and expected number of relevant items in the
    top k, per query, under random tie order (k capped at the database size)."""
    rel, tot = np.asarray(rel, dtype=np.int64), np.asarray(tot, dtype=np.int64)
    h = _harmonic(int(tot.sum(axis=1).max(initial=0))) if h is None else h
    n0, r0 = _groups(rel, tot)
    m = np.clip(k - n0, 0, tot)  # positions of each group inside the top k
    num = _group_sums(rel, tot, n0, r0, m, h).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        found = np.where(tot > 0, m * rel / np.maximum(tot, 1), 0.0).sum(axis=1)
    return num, found


def ap_at_k(rel: np.ndarray, tot: np.ndarray, k: int, h: np.ndarray | None = None) -> np.ndarray:
    """Tie-aware AP@k per query (ratio of expectations; 0 when no relevant item reaches the top
    k; NaN when the query has no relevant item at all)."""
    num, found = ap_at_k_parts(rel, tot, k, h)
    out = np.where(found > 0, num / np.where(found > 0, found, 1), 0.0)
    return np.where(np.asarray(rel).sum(axis=1) > 0, out, np.nan)


def precision_at_radius(rel: np.ndarray, tot: np.ndarray) -> np.ndarray:
    """(queries, n_bits + 1) precision within every radius; an empty ball scores 0."""
    crel, ctot = np.cumsum(rel, axis=1), np.cumsum(tot, axis=1)
    return np.where(ctot > 0, crel / np.maximum(ctot, 1), 0.0)


def retrieval_metrics(query: np.ndarray, query_labels: np.ndarray, db: np.ndarray,
                      db_labels: np.ndarray, n_bits: int, *, top_k: Sequence[int] = TOP_K,
                      block_bytes: int = BLOCK_BYTES, backend: str = "sklearn", device=None,
                      max_bytes: int | None = None) -> RetrievalResult:
    """Every retrieval metric of the module docstring, exact, for packed query/database codes.
    ``backend="torch"``: the distance histograms by GEMM on ``device`` (metrics/torch_backend.py),
    the database streamed block by block when its unpacked copy exceeds a quarter of ``max_bytes``."""
    top_k = tuple(int(k) for k in top_k)
    if any(k < 1 for k in top_k):
        raise ValueError(f"top_k={list(top_k)}: every value must be >= 1")
    n_q, n_db = int(np.asarray(query).shape[0]), int(np.asarray(db).shape[0])
    if n_q == 0 or n_db == 0:
        raise ValueError(f"retrieval needs at least one query and one database code ({n_q}, {n_db})")
    h = _harmonic(n_db)
    sums = {"map": 0.0, "opt": 0.0, "pes": 0.0, **{k: 0.0 for k in top_k}}
    prec_sum = np.zeros(n_bits + 1)
    rec_sum = np.zeros(n_bits + 1)
    n_valid = 0
    nonempty = 0
    if backend == "torch":
        from .torch_backend import distance_histograms as histograms
        blocks = histograms(check_packed(query, n_bits, "query codes"), query_labels,
                            check_packed(db, n_bits, "database codes"), db_labels, n_bits,
                            device=device, block_bytes=block_bytes, max_bytes=max_bytes)
    else:
        blocks = distance_histograms(query, query_labels, db, db_labels, n_bits, block_bytes=block_bytes)
    for _, rel, tot in blocks:
        n_rel = rel.sum(axis=1)
        valid = n_rel > 0
        n_valid += int(valid.sum())
        sums["map"] += float(np.nansum(ap_tie_aware(rel, tot, h)))
        sums["opt"] += float(np.nansum(ap_optimistic(rel, tot, h)))
        sums["pes"] += float(np.nansum(ap_pessimistic(rel, tot, h)))
        for k in top_k:
            sums[k] += float(np.nansum(ap_at_k(rel, tot, min(k, n_db), h)))
        prec_sum += precision_at_radius(rel, tot).sum(axis=0)
        rec_sum += (np.cumsum(rel[valid], axis=1) / n_rel[valid, None]).sum(axis=0)
        nonempty += int((tot[:, : min(3, n_bits + 1)].sum(axis=1) > 0).sum())
    mean = (lambda s: s / n_valid) if n_valid else (lambda s: float("nan"))
    prec = prec_sum / n_q
    return RetrievalResult(
        map=mean(sums["map"]), map_optimistic=mean(sums["opt"]), map_pessimistic=mean(sums["pes"]),
        map_at={k: mean(sums[k]) for k in top_k},
        precision_r2=float(prec[min(2, n_bits)]), precision_r2_nonempty=nonempty / n_q,
        pr_precision=prec, pr_recall=rec_sum / n_valid if n_valid else np.full(n_bits + 1, np.nan),
        n_query=n_q, n_db=n_db, n_no_relevant=n_q - n_valid)
