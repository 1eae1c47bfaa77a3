"""Metric family ``binary_encoding``: binarity, same-encoding fraction, neural collapse and
Mahalanobis reliability of the latent z = the network's penultimate features (input of its last
nn.Linear), on the test set; predictions are argmax of the logits (see
``activation_hash.metrics.binary_encoding`` for the definitions).

A network without a latent layer (``model.variant=no_pen``) gives NaN for every metric and the
reason in ``test/binary_encoding_note``: when the capture names its layers, the latent is the
layer whose name ends in ``latent_layer`` (default ``latent_code``); when it does not, the
penultimate features count as a latent only if they have at most ``max_latent_dim`` dimensions.
``test/latent_hist_counts`` / ``test/latent_hist_edges``: per-dimension histograms (lists) of the
test latents, for the report's bimodality picture.
"""

from __future__ import annotations

from activation_hash.metrics import binary_encoding as be
from activation_hash.metrics.registry import CodeSet, MetricFamily

SCALARS = ("test/binarity_separation", "test/binarity_separation_std", "test/binarity_sigma",
           "test/same_encoding_frac", "test/nc1", "test/equinorm", "test/equiangularity", "test/maxangle",
           "test/reliability_auroc")
NAMES = SCALARS + ("test/latent_hist_counts", "test/latent_hist_edges", "test/binary_encoding_note")


def _no_latent_reason(codes: CodeSet, width: int, latent_layer: str, max_latent_dim: int) -> str | None:
    if codes.layer_names:
        if not any(name.split(".")[-1] == latent_layer for name in codes.layer_names):
            return f"no latent layer: no code layer named {latent_layer!r} (e.g. model.variant=no_pen)"
        return None
    if width > max_latent_dim:
        return f"no latent layer: penultimate width {width} > metrics.max_latent_dim={max_latent_dim}"
    return None


def _compute(codes: CodeSet, *, gmm_seed: int = 0, hist_bins: int = 30, latent_layer: str = "latent_code",
             max_latent_dim: int = 64) -> dict:
    train_z, test_z = codes.extras["train/penultimate"], codes.extras["test/penultimate"]
    reason = _no_latent_reason(codes, test_z.shape[1], latent_layer, max_latent_dim)
    if reason is not None:
        return {**{name: float("nan") for name in SCALARS}, "test/binary_encoding_note": reason}
    train_pred = codes.extras["train/logits"].argmax(1)
    test_pred = codes.extras["test/logits"].argmax(1)
    bin_ = be.binarity(test_z, seed=gmm_seed)
    nc = be.neural_collapse(test_z, codes.test_labels)
    hist = be.latent_histograms(test_z, bins=hist_bins)
    return {"test/binarity_separation": bin_["separation"], "test/binarity_separation_std": bin_["separation_std"],
            "test/binarity_sigma": bin_["sigma"],
            "test/same_encoding_frac": be.same_encoding_fraction(test_z, test_pred),
            **{f"test/{k}": v for k, v in nc.items()},
            "test/reliability_auroc": be.reliability_auroc(train_z, codes.train_labels, train_pred,
                                                           test_z, codes.test_labels, test_pred),
            "test/latent_hist_counts": hist["counts"], "test/latent_hist_edges": hist["edges"]}


def _check(options) -> None:
    for key in ("hist_bins", "max_latent_dim"):
        if options[key] < 1:
            raise ValueError(f"metrics.{key}={options[key]}: must be >= 1")


FAMILY = MetricFamily(name="binary_encoding", names=NAMES, compute=_compute,
                      options={"gmm_seed": 0, "hist_bins": 30, "latent_layer": "latent_code", "max_latent_dim": 64},
                      needs=("penultimate", "logits"), drop_constant=False, needs_bits=False, check=_check, reads_codes=False,
                      description="latent binarity, same-encoding fraction, neural collapse, reliability")
