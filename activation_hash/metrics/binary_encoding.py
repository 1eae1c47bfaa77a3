"""Latent binary-encoding metrics of Sbailò & Ghiringhelli (arXiv 2310.08224), pure functions of
latent arrays ``z`` (n, d), labels and predictions.

- ``binarity``: per latent dimension, standardise, fit a 2-component GaussianMixture (seeded);
  separation |mu1 - mu2| / mean(sigma1, sigma2); mean and std over dimensions, and the mean sigma.
- ``same_encoding_fraction``: per predicted class, the share of its samples whose sign pattern
  1[z > 0] equals the class's most frequent pattern, pooled over classes (= matches / n).
- ``neural_collapse``: NC1 = Tr(Sigma_W Sigma_B^+)/C, equinorm = CV of the centred class-mean norms,
  equiangularity = std of pairwise cosines of centred class means, max-angle = mean |cos + 1/(C-1)|.
- ``reliability_auroc``: class-conditional Gaussians (class means, one shared covariance) on train
  latents of correctly classified samples; a test point's score is minus its Mahalanobis distance
  to its predicted class; AUROC of correct vs misclassified (NaN when one kind is absent).
- ``latent_histograms``: per-dimension histogram counts and edges (lists) for the report.
"""

from __future__ import annotations

import numpy as np


def binarity(z: np.ndarray, seed: int = 0) -> dict[str, float]:
    from sklearn.mixture import GaussianMixture  # imported here: the metrics package loads numpy only
    z = np.asarray(z, dtype=np.float64)
    separations, sigmas = [], []
    for column in z.T:
        std = column.std()
        x = ((column - column.mean()) / (std if std > 0 else 1.0)).reshape(-1, 1)
        gmm = GaussianMixture(n_components=2, random_state=seed).fit(x)
        mu = gmm.means_.ravel()
        sigma = np.sqrt(gmm.covariances_.ravel())
        separations.append(abs(mu[0] - mu[1]) / sigma.mean())
        sigmas.append(sigma.mean())
    return {"separation": float(np.mean(separations)), "separation_std": float(np.std(separations)),
            "sigma": float(np.mean(sigmas))}


def same_encoding_fraction(z: np.ndarray, predicted: np.ndarray) -> float:
    bits = np.asarray(z) > 0
    predicted = np.asarray(predicted)
    matches = 0
    for c in np.unique(predicted):
        patterns, counts = np.unique(bits[predicted == c], axis=0, return_counts=True)
        matches += counts.max()
    return float(matches / len(predicted))


def neural_collapse(z: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    z = np.asarray(z, dtype=np.float64)
    labels = np.asarray(labels)
    classes = np.unique(labels)
    C = len(classes)
    mu_g = z.mean(0)
    means = np.stack([z[labels == c].mean(0) for c in classes])
    centred = means - mu_g
    sigma_b = centred.T @ centred / C
    within = z - means[np.searchsorted(classes, labels)]
    sigma_w = within.T @ within / len(z)
    nc1 = float(np.trace(sigma_w @ np.linalg.pinv(sigma_b)) / C)
    norms = np.linalg.norm(centred, axis=1)
    unit = centred / norms[:, None]
    cos = (unit @ unit.T)[np.triu_indices(C, k=1)]
    return {"nc1": nc1, "equinorm": float(norms.std() / norms.mean()), "equiangularity": float(cos.std()),
            "maxangle": float(np.mean(np.abs(cos + 1.0 / (C - 1))))}


def reliability_auroc(train_z: np.ndarray, train_labels: np.ndarray, train_predicted: np.ndarray,
                      test_z: np.ndarray, test_labels: np.ndarray, test_predicted: np.ndarray) -> float:
    ok = np.asarray(train_labels) == np.asarray(train_predicted)
    z, y = np.asarray(train_z, np.float64)[ok], np.asarray(train_labels)[ok]
    classes = np.unique(y)
    means = np.stack([z[y == c].mean(0) for c in classes])
    within = z - means[np.searchsorted(classes, y)]
    precision = np.linalg.pinv(within.T @ within / len(z))
    test_z = np.asarray(test_z, np.float64)
    test_predicted = np.asarray(test_predicted)
    # a predicted class absent from the correct training samples gets the largest distance
    index = np.searchsorted(classes, test_predicted).clip(0, len(classes) - 1)
    known = classes[index] == test_predicted
    diff = test_z - means[index]
    distance = np.sqrt(np.einsum("ij,jk,ik->i", diff, precision, diff).clip(min=0))
    distance[~known] = np.inf
    correct = test_predicted == np.asarray(test_labels)
    return auroc(correct, -distance)


def auroc(positive: np.ndarray, scores: np.ndarray) -> float:
    """roc_auc_score of ``positive`` (bool) by ``scores``; NaN when only one class is present."""
    positive = np.asarray(positive, dtype=bool)
    if positive.all() or not positive.any():
        return float("nan")
    scores = np.nan_to_num(np.asarray(scores, np.float64), neginf=-1e300, posinf=1e300)
    from sklearn.metrics import roc_auc_score
    return float(roc_auc_score(positive, scores))


def latent_histograms(z: np.ndarray, bins: int = 30) -> dict[str, list]:
    counts, edges = [], []
    for column in np.asarray(z, np.float64).T:
        c, e = np.histogram(column, bins=bins)
        counts.append(c.tolist())
        edges.append(e.tolist())
    return {"counts": counts, "edges": edges}
