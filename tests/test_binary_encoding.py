"""The binary-encoding head, its metrics and the DeepFool probe against constructions with known answers."""

from __future__ import annotations

import functools
import itertools

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from torch import nn

from activation_hash.codes.probes.deepfool import PROBE, deepfool
from activation_hash.metrics import binary_encoding as be
from activation_hash.metrics.families.binary_encoding import FAMILY
from activation_hash.metrics.registry import CodeSet
from activation_hash.models.binary_encoding import BinaryEncodingNet
from activation_hash.models.loss_terms import Geometric
from activation_hash.models.mlp import MLP
from activation_hash.models.resnet import ResNet
from tests.conftest import compose_config

# ---------------------------------------------------------------- metrics


def _vertices(d: int = 4, per: int = 50, noise: float = 0.0, seed: int = 0):
    """Samples at the 2^d vertices {-1, 1}^d, one class per vertex (C = 2^d)."""
    rng = np.random.default_rng(seed)
    corners = np.array(list(itertools.product([-1.0, 1.0], repeat=d)))
    labels = np.repeat(np.arange(len(corners)), per)
    return corners[labels] + noise * rng.standard_normal((len(labels), d)), labels


def test_hypercube_vertices_are_one_encoding_per_class_and_well_separated():
    z, y = _vertices(noise=0.01)
    assert be.same_encoding_fraction(z, y) == 1.0
    result = be.binarity(z)
    # standardised, each dim is +-1 with sigma 0.01 -> separation 2 / 0.01 = 200
    assert result["separation"] == pytest.approx(200, rel=0.05)
    assert result["sigma"] == pytest.approx(0.01, rel=0.05)


def test_same_encoding_fraction_counts_the_modal_pattern_per_predicted_class():
    z = np.array([[1, 1], [1, 1], [1, -1], [-1, -1], [-1, -1], [-1, -1]], float)
    predicted = np.array([0, 0, 0, 1, 1, 1])
    assert be.same_encoding_fraction(z, predicted) == pytest.approx(5 / 6)


def test_binarity_of_a_two_peak_mixture_matches_its_analytic_separation():
    # 0.5 N(-a, 1) + 0.5 N(a, 1) standardised: means +-a / sqrt(1 + a^2), sigma 1 / sqrt(1 + a^2) -> 2a
    rng = np.random.default_rng(1)
    a = 3.0
    z = rng.choice([-a, a], size=(20000, 2)) + rng.standard_normal((20000, 2))
    assert be.binarity(z)["separation"] == pytest.approx(2 * a, rel=0.03)


def test_binarity_of_an_isotropic_gaussian_is_low():
    # The population 2-GMM likelihood of N(0, 1) is maximal at zero separation but almost flat, so EM
    # (scikit-learn's default tol 1e-3) stops near separation 1.53, sigma 0.79 (Monte-Carlo, 1e5
    # samples, 3 seeds: 1.525-1.534 and 0.794-0.795); far below a bimodal latent's (6 above, 200 on vertices).
    z = np.random.default_rng(0).standard_normal((20000, 3))
    result = be.binarity(z)
    assert 1.3 < result["separation"] < 1.8
    assert result["sigma"] == pytest.approx(0.795, abs=0.03)


def _simplex_etf(C: int = 5, d: int = 8, per: int = 20, scale: float = 3.0):
    rng = np.random.default_rng(0)
    basis, _ = np.linalg.qr(rng.standard_normal((d, C)))
    means = scale * (np.eye(C) - 1.0 / C) @ basis.T          # C centred vertices of a simplex, equal norms
    labels = np.repeat(np.arange(C), per)
    return means[labels] + 7.0, labels                        # global offset: NC metrics centre it away


def test_neural_collapse_on_a_simplex_etf():
    z, y = _simplex_etf()
    nc = be.neural_collapse(z, y)
    assert nc["nc1"] == pytest.approx(0, abs=1e-12)
    assert nc["maxangle"] == pytest.approx(0, abs=1e-9)
    assert nc["equinorm"] == pytest.approx(0, abs=1e-9)
    assert nc["equiangularity"] == pytest.approx(0, abs=1e-9)


def test_nc1_against_its_brute_force_definition():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 4, 300)
    z = rng.standard_normal((300, 3)) + np.eye(4, 3)[y] * 2
    mu = z.mean(0)
    sw = sum(np.outer(v - z[y == c].mean(0), v - z[y == c].mean(0)) for c in range(4) for v in z[y == c]) / len(z)
    sb = sum(np.outer(z[y == c].mean(0) - mu, z[y == c].mean(0) - mu) for c in range(4)) / 4
    expected = np.trace(sw @ np.linalg.pinv(sb)) / 4
    assert be.neural_collapse(z, y)["nc1"] == pytest.approx(expected, rel=1e-9)


def test_auroc_on_perfectly_separated_scores_is_one():
    correct = np.array([True] * 30 + [False] * 10)
    scores = np.r_[np.linspace(1, 2, 30), np.linspace(-2, -1, 10)]
    assert be.auroc(correct, scores) == 1.0
    assert np.isnan(be.auroc(np.ones(5, bool), np.arange(5.0)))


def test_reliability_scores_far_points_as_unreliable():
    z, y = _vertices(d=2, per=100, noise=0.1)
    test_z = np.r_[z[:40], z[:10] * 5.0]                      # 10 far-out points, predicted wrongly
    test_pred = y[np.r_[np.arange(40), np.arange(10)]]
    test_labels = np.r_[test_pred[:40], (test_pred[40:] + 1) % 4]
    assert be.reliability_auroc(z, y, y, test_z, test_labels, test_pred) == 1.0


def _codeset(train_z, train_y, test_z, test_y, layer_names=("features.2", "latent_code")):
    logits = lambda z, y: np.eye(int(max(train_y.max(), test_y.max())) + 1, dtype=np.float32)[y]  # noqa: E731
    empty = np.zeros((len(train_y), 1), np.uint8)
    return CodeSet(train_codes=empty, train_labels=train_y, test_codes=np.zeros((len(test_y), 1), np.uint8),
                   test_labels=test_y, n_bits=8, layer_names=layer_names,
                   extras={"train/penultimate": train_z.astype(np.float32), "test/penultimate": test_z.astype(np.float32),
                           "train/logits": logits(train_z, train_y), "test/logits": logits(test_z, test_y)})


def test_family_on_vertices_and_without_a_latent_layer():
    z, y = _vertices(d=3, per=40, noise=0.05)
    result = FAMILY.compute(_codeset(z, y, z, y), **FAMILY.options)
    assert set(result) <= set(FAMILY.names)
    assert result["test/same_encoding_frac"] == 1.0 and result["test/binarity_separation"] > 20
    assert np.isnan(result["test/reliability_auroc"])          # every test point correct: AUROC undefined
    assert len(result["test/latent_hist_counts"]) == 3
    skipped = FAMILY.compute(_codeset(z, y, z, y, layer_names=("features.2",)), **FAMILY.options)
    assert np.isnan(skipped["test/binarity_separation"]) and "no latent layer" in skipped["test/binary_encoding_note"]
    wide = np.random.default_rng(0).standard_normal((len(y), 100))
    from activation_hash.metrics import compute_families
    via = compute_families(_codeset(z, y, z, y), ["redundancy", "binary_encoding"], {"hist_bins": 10})
    assert via["test/same_encoding_frac"] == 1.0 and len(via["test/latent_hist_counts"][0]) == 10
    with pytest.raises(ValueError, match="metrics.hist_bins=0: must be >= 1"):
        compute_families(_codeset(z, y, z, y), ["binary_encoding"], {"hist_bins": 0})
    unnamed = FAMILY.compute(_codeset(wide, y, wide, y, layer_names=()), **FAMILY.options)
    assert "penultimate width 100" in unnamed["test/binary_encoding_note"]


# ---------------------------------------------------------------- DeepFool


def test_deepfool_on_a_linear_classifier_matches_the_closed_form():
    torch.manual_seed(0)
    model = nn.Linear(5, 4).double()
    x = torch.randn(50, 5, dtype=torch.float64)
    r = deepfool(model, x, overshoot=0.02, max_iter=50)
    W, b = model.weight.detach(), model.bias.detach()
    f = x @ W.T + b
    k0 = f.argmax(1)
    dist = (f - f.gather(1, k0[:, None])).abs() / (W[None] - W[k0][:, None]).norm(dim=2).clamp_min(1e-30)
    dist[torch.arange(50), k0] = float("inf")
    l = dist.argmin(1)
    wnorm = (W[l] - W[k0]).norm(dim=1)
    expected = 1.02 * (dist.min(1).values + 1e-4 / wnorm)
    assert torch.allclose(r.norm(dim=1), expected, rtol=1e-9)
    assert (model(x + r).argmax(1) != k0).all()


def test_deepfool_probe_flips_a_small_network():
    class Data:
        def test_batch(self, n):
            return torch.randn(n, 1, 4, 4, generator=torch.Generator().manual_seed(1)), torch.zeros(n, dtype=torch.long)
    torch.manual_seed(0)
    net = MLP((1, 4, 4), 3, width=8)
    result = PROBE.compute(net, Data(), None, **{**PROBE.options, "n_samples": 20, "pool": 40})
    assert 0 < result["test/deepfool_ratio"] < 10


# ---------------------------------------------------------------- model


@pytest.mark.parametrize("variant", ["bin_enc", "lin_pen", "nonlin_pen", "no_pen"])
@pytest.mark.parametrize("backbone,shape", [
    (functools.partial(MLP, width=16), (1, 8, 8)),
    (functools.partial(ResNet, num_blocks=[1, 1], base_width=4, shortcut="A"), (3, 8, 8))])
def test_forward_shapes_per_variant_and_backbone(variant, backbone, shape):
    net = BinaryEncodingNet(shape, 10, backbone, variant=variant, latent_dim=6)
    assert net(torch.zeros(3, *shape)).shape == (3, 10)
    assert hasattr(net, "latent_code") == (variant != "no_pen")
    assert not any(isinstance(m, nn.Linear) and m.out_features == 10 for m in net.features.modules())
    terms = net.loss_terms()
    assert [t.name for t in terms] == (["latent_l2"] if variant in ("bin_enc", "lin_pen") else [])


def test_silu_backbone_has_no_relu_modules():
    net = BinaryEncodingNet((1, 8, 8), 10, functools.partial(MLP, width=16, activation="silu"))
    assert not any(isinstance(m, nn.ReLU) for m in net.modules())
    assert any(isinstance(m, nn.SiLU) for m in net.modules())


def test_gamma_follows_its_schedule_exactly():
    net = BinaryEncodingNet((1, 8, 8), 10, functools.partial(MLP, width=16), gamma0=0.01, gamma_growth=1.3,
                            gamma_max=1.0)
    gammas = []
    for epoch in range(25):
        net.set_epoch(epoch)
        gammas.append(net.gamma)
    expected, g = [], 0.01
    for _ in range(25):            # the authors' loop: train with gamma, then `if gamma < max: gamma *= growth`
        expected.append(g)
        if g < 1.0:
            g *= 1.3
    assert gammas == expected
    assert gammas[-1] == gammas[-2] >= 1.0
    assert Geometric(0.01, 1.05, 1e6)(10) == pytest.approx(0.01 * 1.05 ** 10, rel=1e-12)


def test_lin_pen_trains_with_gamma_zero():
    torch.manual_seed(0)
    net = BinaryEncodingNet((1, 8, 8), 10, functools.partial(MLP, width=16), variant="lin_pen")
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x, y = torch.randn(32, 1, 8, 8), torch.randint(0, 10, (32,))
    for epoch in range(3):
        net.set_epoch(epoch)
        logits = net(x)
        ce = nn.functional.cross_entropy(logits, y)
        (term,) = net.loss_terms()
        assert term.weight == 0.0 and term.weight_name == "gamma" and term.value > 0
        loss = ce + term.weight * term.value
        assert loss.item() == ce.item()
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_config_builds_each_variant_and_rejects_bad_values():
    for variant in ["bin_enc", "no_pen"]:
        cfg = compose_config(["model=binary_encoding", f"model.variant={variant}"])
        net = instantiate(cfg.model)(input_shape=(1, 8, 8), num_classes=10)
        assert net(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    cfg = compose_config(["model=binary_encoding", "model.variant=bogus"])
    with pytest.raises(ValueError, match="model.variant=bogus: allowed"):
        instantiate(cfg.model)(input_shape=(1, 8, 8), num_classes=10)
    cfg = compose_config(["model=binary_encoding", "model@model.backbone=tiny/resnet18", "model.backbone.activation=tanh"])
    with pytest.raises(ValueError, match="model.backbone.activation=tanh"):
        instantiate(cfg.model)(input_shape=(3, 8, 8), num_classes=10)


# ---------------------------------------------------------------- augmentation


def test_flip_crop_shifts_or_flips_each_sample_and_loader_applies_it_to_training_batches_only():
    from activation_hash.data.augment import flip_crop, make_augment
    from activation_hash.data.tensor_loader import TensorBatchLoader
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).view(2, 1, 6, 6) + 1
    out = flip_crop(x, np.random.default_rng(0), pad=2)
    assert out.shape == x.shape
    for a, b in zip(x, out):  # every output is a (possibly flipped) shifted window of the zero-padded input
        padded = nn.functional.pad(torch.stack([a, a.flip(2)]), (2, 2, 2, 2))
        assert any(torch.equal(padded[f, :, i:i + 6, j:j + 6], b) for f in range(2) for i in range(5) for j in range(5))
    y = torch.zeros(2, dtype=torch.long)
    plain = next(iter(TensorBatchLoader(x, y, 2)))[0]
    augmented = [next(iter(TensorBatchLoader(x, y, 2, seed=s, augment=make_augment("flip_crop"))))[0] for s in (1, 1)]
    assert torch.equal(plain, x) and torch.equal(*augmented)
    with pytest.raises(ValueError, match="data.augment=jitter: allowed"):
        make_augment("jitter")


# ---------------------------------------------------------------- report section


def test_latent_histogram_section_draws_first_and_last_capture_per_arm(tmp_path):
    import json as _json

    from activation_hash.analysis.binary_encoding_figures import histogram_rows, latent_histograms
    hist = _json.dumps([[1, 5, 1], [2, 2, 2]])
    edges = _json.dumps([[0, 1, 2, 3], [0, 1, 2, 3]])
    rows = [{"study": "binary_encoding", "model.variant": v, "seed": s, "run_dir": f"{v}{s}", "epoch": e,
             "test/latent_hist_counts": hist if v != "no_pen" else None,
             "test/latent_hist_edges": edges if v != "no_pen" else None}
            for v in ("bin_enc", "no_pen") for s in (0, 1) for e in (0, 5, 10)]
    table = pd_table = __import__("pandas").DataFrame(rows)
    picked = histogram_rows(pd_table)
    assert list(picked["epoch"]) == [0, 10] and set(picked["run_dir"]) == {"bin_enc0"}
    written = []
    lines = latent_histograms(table, tmp_path, 50, lambda fig, path, dpi: written.append(path))
    assert written == [tmp_path / "latent_histograms.png"] and "latent histograms" in lines[0]
    assert latent_histograms(table.assign(study="other"), tmp_path, 50, None) == []


# ---------------------------------------------------------------- end to end


def test_run_logs_gamma_and_the_binary_encoding_metrics(tmp_path):
    import json as _json

    import pandas as pd

    from activation_hash.run import run
    cfg = compose_config(["model=binary_encoding", "model.backbone.width=16", "model.gamma_growth=2.0",
                          "trainer.max_epochs=2", "codes.epochs=[0,2]", "data.train_size=300", "data.test_size=200",
                          "progress_bar=none", "codes.verbose=false", "logger=csv",
                          "metrics.which=[redundancy,binary_encoding]", "metrics.deepfool.enabled=true",
                          "metrics.deepfool.n_samples=10"], output_dir=tmp_path / "run")
    run(cfg)
    rows = [_json.loads(line) for line in (tmp_path / "run" / "encoding.jsonl").read_text().splitlines()]
    test_rows = [r for r in rows if r["split"] == "test"]
    assert [r["epoch"] for r in test_rows] == [0, 2]
    for r in test_rows:
        assert 0 <= r["test/same_encoding_frac"] <= 1 and r["test/binarity_separation"] > 0
        assert r["test/deepfool_ratio"] > 0 and len(r["test/latent_hist_counts"]) == 6
    logged = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert logged["train/gamma"].dropna().tolist() == pytest.approx([0.01, 0.02], rel=1e-6)  # float32 in Lightning
    assert logged["train/loss_latent_l2"].dropna().gt(0).all()


def test_step_after_holds_the_rate_then_halves_it_every_step_size_epochs():
    from activation_hash.models.schedulers import step_after
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = step_after(optimizer, hold=250, step_size=50, gamma=0.5)
    rates = []
    for _ in range(420):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    expected = [1.0 if e < 250 else 0.5 ** ((e - 250) // 50) for e in range(420)]
    assert rates == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match="scheduler.hold=0"):
        step_after(optimizer, hold=0)
