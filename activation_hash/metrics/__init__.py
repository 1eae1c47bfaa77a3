"""Encoding metrics of neural codes: pure functions on packed 0/1 code arrays.

Codes are ``np.packbits(bits, axis=1)`` uint8 arrays (see ``bits``). ``encoding_metrics``
computes the whole set under stable names; the per-metric modules can be used on their own:
``redundancy`` (exact duplicate counting), ``kmeans`` (K-Means + majority / Hungarian mapping),
``knn`` (exact Hamming K-NN with a deterministic tie rule), ``logreg`` (batched one-vs-one,
one-vs-rest or multinomial logistic regression), ``diameter`` (stochastic activation diameter).
"""

from .bits import (
    CHUNK_BYTES,
    MAX_DENSE_BYTES,
    check_packed,
    drop_constant_bits,
    packed_width,
    popcount,
    select_bits,
    unique_rows,
    unpack_rows,
    varying_bits,
)
from .diameter import (Diameters, diameter_summary, exact_diameters, grid_diameters, random_directions_like,
                       uniform_like)
from .compute import compute_families
from .encoding import METRIC_NAMES, WHICH, encoding_metrics, thread_limit
from .kmeans import (
    contingency,
    hungarian_accuracy,
    kmeans_accuracy,
    kmeans_clusters,
    majority_accuracy,
    streaming_lloyd,
)
from .knn import KNNResult, hamming_distances, knn_neighbors, knn_predict
from .logreg import MODES as LOGREG_MODES
from .logreg import LogRegModel, logreg_accuracy, logreg_fit, logreg_predict
from .redundancy import n_unique_rows, redundancy_ratio

__all__ = [
    "Diameters", "diameter_summary", "exact_diameters", "grid_diameters", "random_directions_like", "uniform_like",
    "CHUNK_BYTES", "MAX_DENSE_BYTES", "METRIC_NAMES", "WHICH", "LOGREG_MODES", "KNNResult",
    "check_packed", "compute_families", "contingency", "drop_constant_bits", "encoding_metrics", "hamming_distances",
    "hungarian_accuracy", "kmeans_accuracy", "kmeans_clusters", "knn_neighbors", "knn_predict",
    "LogRegModel", "logreg_accuracy", "logreg_fit", "logreg_predict", "majority_accuracy", "n_unique_rows", "packed_width",
    "popcount", "redundancy_ratio", "select_bits", "streaming_lloyd", "unique_rows", "unpack_rows",
    "thread_limit", "varying_bits",
]
