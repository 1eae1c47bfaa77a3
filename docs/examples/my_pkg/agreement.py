"""The metric-family plugin of the docs' example (docs/extending.md):

    PYTHONPATH=docs/examples python -m activation_hash 'metrics.plugins=[my_pkg.agreement]' 'metrics.which=[redundancy,agreement]'
"""

# --8<-- [start:family]
import numpy as np

from activation_hash.metrics.registry import CodeSet, MetricFamily


def agreement(codes: CodeSet, *, scale: float = 1.0) -> dict[str, float]:
    logits = codes.extras["test/logits"]
    return {"test/agreement": scale * float(np.mean(logits.argmax(1) == codes.test_labels))}


FAMILY = MetricFamily(name="agreement", names=("test/agreement",), compute=agreement,
                      options={"scale": 1.0}, needs=("logits",))
# --8<-- [end:family]
