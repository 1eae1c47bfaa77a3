"""Retrieval metrics against brute-force definitions, exact enumeration of tie orders,
Monte-Carlo estimates and scikit-learn."""

from itertools import permutations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from activation_hash.metrics import retrieval as rt


def _pack(bits):
    return np.packbits(np.asarray(bits, dtype=np.uint8), axis=1)


def _dist(q_bits, d_bits):
    return (np.asarray(q_bits)[:, None, :] != np.asarray(d_bits)[None, :, :]).sum(axis=2)


def _ap_of_ranking(relevant):
    """Brute-force AP of one ranked 0/1 relevance list (NaN if nothing is relevant)."""
    relevant = np.asarray(relevant, dtype=float)
    if relevant.sum() == 0:
        return np.nan
    prec = np.cumsum(relevant) / np.arange(1, relevant.size + 1)
    return float((prec * relevant).sum() / relevant.sum())


def _ap_at_k_of_ranking(relevant, k):
    """DeepHash's AP@k: sum_{i<=k} P(i) rel(i) / relevant in top k (0 if none)."""
    top = np.asarray(relevant[:k], dtype=float)
    if top.sum() == 0:
        return 0.0
    return float((np.cumsum(top) / np.arange(1, top.size + 1) * top).sum() / top.sum())


def _hist(dist, rel, n_bits):
    tot = np.bincount(dist, minlength=n_bits + 1)[None]
    r = np.bincount(dist[rel], minlength=n_bits + 1)[None]
    return r, tot


def _heavy_tie_case(rng, n_db, n_bits=3, n_classes=3):
    d_bits = rng.integers(0, 2, (n_db, n_bits))
    q_bits = rng.integers(0, 2, (1, n_bits))
    labels = rng.integers(0, n_classes, n_db)
    dist = _dist(q_bits, d_bits)[0]
    return dist, labels == 0, n_bits


def test_histograms_match_brute_force_and_chunking():
    rng = np.random.default_rng(0)
    n_bits = 37
    qb, db = rng.integers(0, 2, (23, n_bits)), rng.integers(0, 2, (41, n_bits))
    qy, dy = rng.integers(0, 4, 23), rng.integers(0, 4, 41)
    dist = _dist(qb, db)
    chunks = list(rt.distance_histograms(_pack(qb), qy, _pack(db), dy, n_bits, block_bytes=41 * 24 * 5))
    assert len(chunks) == 5  # 23 queries, 5 per chunk
    for sl, rel, tot in chunks:
        for i, q in enumerate(range(sl.start, sl.stop)):
            np.testing.assert_array_equal(tot[i], np.bincount(dist[q], minlength=n_bits + 1))
            np.testing.assert_array_equal(rel[i], np.bincount(dist[q][dy == qy[q]], minlength=n_bits + 1))
    a = rt.retrieval_metrics(_pack(qb), qy, _pack(db), dy, n_bits, block_bytes=41 * 24 * 5)
    b = rt.retrieval_metrics(_pack(qb), qy, _pack(db), dy, n_bits)
    assert a.map == pytest.approx(b.map) and a.map_at == pytest.approx(b.map_at)


def test_hamming_block_numpy_path_equals_faiss_path(monkeypatch):
    rng = np.random.default_rng(1)
    for n_bits in (1, 7, 33, 130):
        q, d = _pack(rng.integers(0, 2, (9, n_bits))), _pack(rng.integers(0, 2, (13, n_bits)))
        expected = _dist(np.unpackbits(q, axis=1, count=n_bits), np.unpackbits(d, axis=1, count=n_bits))
        np.testing.assert_array_equal(rt.hamming_block(q, d), expected)
    import sys
    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss -> ImportError: numpy path
    np.testing.assert_array_equal(rt.hamming_block(q, d), expected)


def test_ap_without_ties_equals_sklearn():
    rng = np.random.default_rng(2)
    n_bits, n_db = 64, 40
    for _ in range(20):
        # Query 0 XOR a mask; database item i at a distinct distance weights[i]: no ties.
        mask = rng.integers(0, 2, n_bits)
        weights = rng.permutation(n_bits + 1)[:n_db]
        d_bits = np.zeros((n_db, n_bits), dtype=int)
        for i, w in enumerate(weights):
            d_bits[i, rng.permutation(n_bits)[:w]] = 1
        d_bits ^= mask
        labels = rng.integers(0, 3, n_db)
        res = rt.retrieval_metrics(_pack(mask[None]), np.array([0]), _pack(d_bits), labels, n_bits)
        relevant = labels == 0
        if not relevant.any():
            continue
        expected = average_precision_score(relevant, -weights)
        assert res.map == pytest.approx(expected, abs=1e-12)
        assert res.map_optimistic == pytest.approx(expected, abs=1e-12)
        assert res.map_pessimistic == pytest.approx(expected, abs=1e-12)
        ranking = relevant[np.argsort(weights)]
        for k in (1, 5, 17, 40, 1000):
            r, t = _hist(weights, relevant, n_bits)
            assert rt.ap_at_k(r, t, k)[0] == pytest.approx(_ap_at_k_of_ranking(ranking, k), abs=1e-12)


def test_tie_aware_ap_equals_exact_enumeration_of_tie_orders():
    rng = np.random.default_rng(3)
    for _ in range(6):
        dist, rel, n_bits = _heavy_tie_case(rng, n_db=7)
        if not rel.any():
            continue
        aps, at3_num, at3_found, at3 = [], [], [], []
        for perm in permutations(range(7)):  # every order; a stable sort by distance keeps it in ties
            perm = np.array(perm)
            ranking = rel[perm][np.argsort(dist[perm], kind="stable")]
            aps.append(_ap_of_ranking(ranking))
            top = ranking[:3].astype(float)
            at3_num.append((np.cumsum(top) / np.arange(1, 4) * top).sum())
            at3_found.append(top.sum())
        r, t = _hist(dist, rel, n_bits)
        assert rt.ap_tie_aware(r, t)[0] == pytest.approx(np.mean(aps), abs=1e-12)
        assert rt.ap_optimistic(r, t)[0] == pytest.approx(max(aps), abs=1e-12)
        assert rt.ap_pessimistic(r, t)[0] == pytest.approx(min(aps), abs=1e-12)
        num, found = rt.ap_at_k_parts(r, t, 3)
        assert num[0] == pytest.approx(np.mean(at3_num), abs=1e-12)
        assert found[0] == pytest.approx(np.mean(at3_found), abs=1e-12)


def test_tie_aware_ap_equals_monte_carlo_on_heavy_ties():
    rng = np.random.default_rng(4)
    n_bits, n_db = 4, 300
    d_bits = rng.integers(0, 2, (n_db, n_bits))
    labels = rng.integers(0, 3, n_db)
    q_bits = rng.integers(0, 2, (5, n_bits))
    q_labels = np.arange(5) % 3
    res = rt.retrieval_metrics(_pack(q_bits), q_labels, _pack(d_bits), labels, n_bits)
    dist = _dist(q_bits, d_bits)
    samples = []
    for _ in range(2000):
        key = rng.random(n_db)
        aps = [_ap_of_ranking((labels == q_labels[q])[np.lexsort((key, dist[q]))]) for q in range(5)]
        samples.append(np.mean(aps))
    samples = np.array(samples)
    assert res.map == pytest.approx(samples.mean(), abs=4 * samples.std() / np.sqrt(samples.size))
    assert res.map_pessimistic < samples.min() <= samples.max() < res.map_optimistic


def test_precision_radius_2_and_pr_curve_brute_force_with_empty_balls():
    rng = np.random.default_rng(5)
    n_bits, n_q, n_db = 12, 40, 30
    qb, db = rng.integers(0, 2, (n_q, n_bits)), rng.integers(0, 2, (n_db, n_bits))
    qy, dy = rng.integers(0, 3, n_q), rng.integers(0, 3, n_db)
    qy[0] = 7  # no relevant item in the database
    dist = _dist(qb, db)
    res = rt.retrieval_metrics(_pack(qb), qy, _pack(db), dy, n_bits)
    prec = np.zeros((n_q, n_bits + 1))
    recall = []
    for q in range(n_q):
        relevant = dy == qy[q]
        for r in range(n_bits + 1):
            ball = dist[q] <= r
            prec[q, r] = (relevant & ball).sum() / ball.sum() if ball.any() else 0.0
        if relevant.any():
            recall.append([(relevant & (dist[q] <= r)).sum() / relevant.sum() for r in range(n_bits + 1)])
    nonempty = (dist <= 2).any(axis=1)
    assert 0 < nonempty.mean() < 1  # the case has empty balls
    assert res.precision_r2 == pytest.approx(prec[:, 2].mean())
    assert res.precision_r2_nonempty == pytest.approx(nonempty.mean())
    np.testing.assert_allclose(res.pr_precision, prec.mean(axis=0))
    np.testing.assert_allclose(res.pr_recall, np.mean(recall, axis=0))
    assert res.pr_recall[-1] == pytest.approx(1.0)


def test_queries_without_relevant_items_are_excluded_from_ap_means():
    rng = np.random.default_rng(6)
    n_bits = 16
    qb, db = rng.integers(0, 2, (10, n_bits)), rng.integers(0, 2, (50, n_bits))
    dy = rng.integers(0, 2, 50)
    qy = np.array([0, 1, 0, 1, 0, 5, 5, 1, 0, 9])
    dist = _dist(qb, db)
    res = rt.retrieval_metrics(_pack(qb), qy, _pack(db), dy, n_bits, top_k=(3, 1000))
    assert res.n_no_relevant == 3
    keep = [q for q in range(10) if (dy == qy[q]).any()]
    exp = []
    for q in keep:
        r, t = _hist(dist[q], dy == qy[q], n_bits)
        exp.append(rt.ap_tie_aware(r, t)[0])
    assert res.map == pytest.approx(np.mean(exp))
    # AP@k of a query whose relevant items all miss the top k is 0, and it stays in the mean.
    r, t = _hist(np.array([0, 0, 1, 5]), np.array([False, False, False, True]), n_bits)
    assert rt.ap_at_k(r, t, 2)[0] == 0.0
    assert rt.ap_at_k(r, t, 4)[0] == pytest.approx(0.25)  # found at rank 4 of 4
    nothing = np.zeros_like(r)
    assert np.isnan(rt.ap_tie_aware(nothing, t)[0]) and np.isnan(rt.ap_at_k(nothing, t, 2)[0])


def test_as_metrics_names():
    rng = np.random.default_rng(7)
    b = _pack(rng.integers(0, 2, (20, 8)))
    res = rt.retrieval_metrics(b[:5], np.zeros(5, int), b[5:], rng.integers(0, 2, 15), 8)
    names = res.as_metrics()
    for name in ("test/map", "test/map_optimistic", "test/map_pessimistic", "test/map@1000",
                 "test/map@5000", "test/precision_r2", "test/precision_r2_nonempty"):
        assert isinstance(names[name], float)
    assert len(names["test/pr_curve/precision"]) == 9
    assert "test/map/lsh_pixels/32" in res.as_metrics(suffix="/lsh_pixels/32")


# --- the `retrieval` metric family -------------------------------------------------------------

def _codeset(rng, n_train=300, n_test=200, d=20, layer_units=(24, 16)):
    from activation_hash.metrics.registry import CodeSet
    centres = rng.standard_normal((5, d)) * 3
    ytr, yte = rng.integers(0, 5, n_train), np.repeat(np.arange(5), n_test // 5)
    xtr = centres[ytr] + rng.standard_normal((n_train, d))
    xte = centres[yte] + rng.standard_normal((n_test, d))
    w = rng.standard_normal((d, sum(layer_units)))
    w[:, 3] = 0.0  # a constant unit (always off)
    code = lambda x: np.packbits(x @ w > 0, axis=1)
    extras = {"train/inputs": xtr.astype(np.float32), "test/inputs": xte.astype(np.float32),
              "train/penultimate": np.maximum(xtr @ w[:, -16:], 0).astype(np.float32),
              "test/penultimate": np.maximum(xte @ w[:, -16:], 0).astype(np.float32)}
    return CodeSet(code(xtr), ytr, code(xte), yte, sum(layer_units), extras, ("l1", "l2"), layer_units)


def test_family_split_1k_names_budgets_and_baselines():
    from activation_hash.metrics.families.retrieval import FAMILY
    from activation_hash.metrics.registry import get
    assert get("retrieval") is FAMILY
    codes = _codeset(np.random.default_rng(8))
    out = FAMILY.compute(codes, retrieval={"protocol": "split_1k", "bits": [8, 16, 32, "full"], "queries_per_class": 10,
                                           "top_k": [50, 5000]})
    assert out["test/retrieval_n_query"] == 50 and out["test/retrieval_db_from_test"] == 150
    assert out["test/retrieval_db_size"] == 450
    # The whole code through the family equals the metric on the same split directly.
    from activation_hash.metrics.families.retrieval import split
    q, extra = split(codes, "split_1k", 10, 0)
    db = np.concatenate([codes.train_codes, codes.test_codes[extra]])
    dby = np.concatenate([codes.train_labels, codes.test_labels[extra]])
    direct = rt.retrieval_metrics(codes.test_codes[q], codes.test_labels[q], db, dby, 40, top_k=(50, 5000))
    assert out["test/map"] == pytest.approx(direct.map) and out["test/map@50"] == pytest.approx(direct.map_at[50])
    assert out["test/map/neural_all/full"] == pytest.approx(out["test/map"])
    assert out["test/map@5000"] == pytest.approx(out["test/map"])  # K capped at the database: all of it
    for name in ("neural_all/8", "neural_all/32", "neural_last_layer/16", "neural_last_layer/full",
                 "neural_random/32", "neural_balanced/16", "lsh_pixels/32", "itq_pixels/16",
                 "pcah_pixels/8", "lsh_penultimate/32", "itq_penultimate/16"):
        assert 0.0 <= out[f"test/map/{name}"] <= 1.0, name
        assert out[f"test/map_pessimistic/{name}"] <= out[f"test/map/{name}"] <= out[f"test/map_optimistic/{name}"]
    assert "test/map/neural_last_layer/32" not in out  # the last layer has only 16 units
    assert "test/map/itq_pixels/32" not in out  # 20 pixel features: PCA-based methods stop at 20 bits
    assert len(out["test/pr_curve/lsh_pixels/32/precision"]) == 33
    # random/balanced draw only units that vary: 39 of 40 here
    assert "test/map/neural_random/full" not in out


def test_family_test_vs_train_and_last_layer_bits():
    from activation_hash.metrics.families.retrieval import FAMILY, unit_order
    codes = _codeset(np.random.default_rng(9))
    out = FAMILY.compute(codes, retrieval={"protocol": "test_vs_train", "bits": [16], "units": ["last_layer"],
                                           "baselines": [], "pr_curves": False})
    assert out["test/retrieval_n_query"] == 200 and out["test/retrieval_db_size"] == 300
    assert not any("pr_curve" in k for k in out)
    direct_keep = np.zeros(40, bool)
    direct_keep[24:] = True  # the last layer's 16 units: the whole layer at budget 16
    from activation_hash.metrics.bits import select_bits
    direct = rt.retrieval_metrics(select_bits(codes.test_codes, 40, direct_keep), codes.test_labels,
                                  select_bits(codes.train_codes, 40, direct_keep), codes.train_labels, 16)
    assert out["test/map/neural_last_layer/16"] == pytest.approx(direct.map)
    # balanced: firing rates on the database closest to 0.5 first; the constant unit comes last
    order = unit_order("balanced", codes, codes.test_codes, codes.train_codes, np.random.default_rng(0))
    rates = np.unpackbits(codes.train_codes, axis=1, count=40).mean(axis=0)
    assert order[-1] == 3 and np.all(np.diff(np.abs(rates[order] - 0.5)) >= 0)


@pytest.mark.parametrize("options, match", [
    ({"protocol": "bogus"}, "metrics.retrieval.protocol='bogus'"),
    ({"bits": [0]}, "metrics.retrieval.bits"),
    ({"bits": ["half"]}, "metrics.retrieval.bits"),
    ({"units": ["best"]}, "metrics.retrieval.units"),
    ({"baselines": ["sh"]}, "metrics.retrieval.baselines"),
    ({"baseline_features": ["hog"]}, "metrics.retrieval.baseline_features"),
    ({"top_k": [0]}, "metrics.retrieval.top_k"),
    ({"queries_per_class": 0}, "metrics.retrieval.queries_per_class"),
    ({"pr_curves": "maybe"}, "metrics.retrieval.pr_curves"),
    ({"protcol": "split_1k"}, "unknown option"),
])
def test_family_bad_options(options, match):
    from activation_hash.metrics.families.retrieval import check_options
    with pytest.raises(ValueError, match=match.replace(".", r"\.").replace("[", r"\[")):
        check_options(options)


def test_family_split_1k_small_test_sets_give_half_of_each_class():
    from activation_hash.metrics.families.retrieval import FAMILY
    out = FAMILY.compute(_codeset(np.random.default_rng(10)), retrieval={"protocol": "split_1k", "baselines": []})
    assert out["test/retrieval_n_query"] == 5 * 20  # 40 test images per class: 20 queries each
    assert out["test/retrieval_db_from_test"] == 100 and out["test/retrieval_db_size"] == 400


def test_family_returns_only_names_it_declares():
    from activation_hash.metrics.families.retrieval import FAMILY, metric_names
    opts = {"protocol": "split_1k", "bits": [8, 16, 32, "full"], "queries_per_class": 10, "top_k": [50, 5000]}
    out = FAMILY.compute(_codeset(np.random.default_rng(11)), retrieval=opts)
    assert set(out) <= set(metric_names(opts))
    assert {"test/map", "test/map@1000", "test/map/itq_penultimate/64", "test/map/neural_all/full"} <= set(FAMILY.names)


def test_family_runs_on_codes_without_extras():
    """A codes file carries no inputs/penultimate: the baselines are skipped, nothing else."""
    from dataclasses import replace
    from activation_hash.metrics.families.retrieval import FAMILY
    assert FAMILY.needs == () and set(FAMILY.wants) == {"inputs", "penultimate"}
    codes = replace(_codeset(np.random.default_rng(12)), extras={})
    out = FAMILY.compute(codes, retrieval={"bits": [16]})
    assert "test/map" in out and "test/map/neural_all/16" in out
    assert not any("lsh" in k or "itq" in k or "pcah" in k for k in out)
