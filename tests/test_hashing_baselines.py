"""Learning-to-hash baselines on cases with a known answer."""

import numpy as np
import pytest
from sklearn.decomposition import PCA

from activation_hash.metrics import hashing


def test_lsh_collision_probability_is_one_minus_theta_over_pi():
    rng = np.random.default_rng(0)
    n_bits = 20000
    for theta in (0.3, 1.0, 2.0, 2.9):
        a = np.array([1.0, 0.0, 0.0])
        b = np.array([np.cos(theta), np.sin(theta), 0.0])
        # Centring subtracts the rows' mean; fit on a symmetric set whose mean is 0.
        hasher = hashing.fit_hasher("lsh", np.stack([a, b, -a, -b]), n_bits, seed=int(theta * 10))
        np.testing.assert_allclose(hasher.mean, 0.0, atol=1e-12)
        bits = np.unpackbits(hasher.encode(np.stack([a, b])), axis=1, count=n_bits)
        collide = np.mean(bits[0] == bits[1])
        p = 1 - theta / np.pi
        assert collide == pytest.approx(p, abs=4 * np.sqrt(p * (1 - p) / n_bits))


def test_itq_quantisation_loss_never_increases():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((500, 30)) @ rng.standard_normal((30, 30))
    for n_bits in (4, 16):
        hasher = hashing.fit_hasher("itq", x, n_bits, seed=3)
        losses = np.array(hasher.losses)
        assert losses.size == hashing.ITQ_ITERATIONS
        assert np.all(np.diff(losses) <= 1e-9 * losses[0])
        assert losses[-1] < losses[0]  # it does improve on the random rotation
        # The rotation is orthogonal: ITQ codes are signs of a rotated PCA projection.
        pca = PCA(n_bits).fit(x)
        v = (x - pca.mean_) @ pca.components_.T
        rotation = np.linalg.lstsq(v, hasher.project(x), rcond=None)[0]
        np.testing.assert_allclose(rotation @ rotation.T, np.eye(n_bits), atol=1e-8)


def test_pcah_is_the_sign_of_the_top_principal_components():
    rng = np.random.default_rng(2)
    basis, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    scales = np.array([10.0, 6.0, 3.0, 1.0, 0.5, 0.1])
    coords = rng.standard_normal((2000, 6)) * scales  # known principal axes: the basis rows
    x = coords @ basis.T + 5.0
    hasher = hashing.fit_hasher("pcah", x, 3, seed=0)
    bits = np.unpackbits(hasher.encode(x), axis=1, count=3).astype(bool)
    centred = (x - x.mean(axis=0)) @ basis[:, :3]
    for j in range(3):
        agree = np.mean(bits[:, j] == (centred[:, j] > 0))
        assert agree > 0.97 or agree < 0.03  # the same axis, up to PCA's sign convention
    with pytest.raises(ValueError, match="at most"):
        hashing.fit_hasher("pcah", x, 7)


def test_bad_input_is_rejected():
    x = np.zeros((10, 4))
    with pytest.raises(ValueError, match="method='foo'"):
        hashing.fit_hasher("foo", x, 2)
    with pytest.raises(ValueError, match="n_bits=0"):
        hashing.fit_hasher("lsh", x, 0)
