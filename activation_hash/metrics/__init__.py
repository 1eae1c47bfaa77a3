"""Encoding metrics of neural codes: pure functions on packed 0/1 code arrays.

Codes are ``np.packbits(bits, axis=1)`` uint8 arrays (see ``bits``). ``compute_families`` runs
the registered metric families (``registry``; built-in ones in ``families/``: redundancy,
kmeans, knn, logreg) on a ``CodeSet``; ``encoding_metrics`` is its keyword form. Importing this
package loads numpy and scipy only: scikit-learn, faiss and torch are imported inside the
functions that use them (torch only for a GPU device).
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
from .encoding import WHICH, compute_families, encoding_metrics, validate_options
from .families.kmeans import (contingency, hungarian_accuracy, kmeans_accuracy, kmeans_clusters,
                              majority_accuracy, streaming_lloyd)
from .families.knn import KNNResult, hamming_distances, knn_neighbors, knn_predict, possible_winners, win_probability
from .families.logreg import MODES as LOGREG_MODES
from .families.logreg import LogRegModel, logreg_accuracy, logreg_fit, logreg_predict
from .families.redundancy import n_unique_rows, redundancy_ratio
from .registry import CodeSet, MetricFamily, families, register
from .threads import thread_limit

__all__ = [
    "CHUNK_BYTES", "MAX_DENSE_BYTES", "METRIC_NAMES", "WHICH", "LOGREG_MODES", "CodeSet", "KNNResult",
    "LogRegModel", "MetricFamily", "check_packed", "compute_families", "contingency", "drop_constant_bits",
    "encoding_metrics", "families", "hamming_distances", "hungarian_accuracy", "kmeans_accuracy",
    "kmeans_clusters", "knn_neighbors", "knn_predict", "logreg_accuracy", "logreg_fit", "logreg_predict",
    "majority_accuracy", "n_unique_rows", "packed_width", "popcount", "possible_winners", "redundancy_ratio",
    "register", "select_bits", "streaming_lloyd", "thread_limit", "unique_rows", "unpack_rows",
    "validate_options", "varying_bits", "win_probability",
]


def __getattr__(name: str):
    if name == "METRIC_NAMES":  # derived from the registry, so discovered lazily
        from .encoding import _metric_names
        return _metric_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
