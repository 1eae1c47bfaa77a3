"""Plain nn.Module architectures (free of Lightning) and the one LightningModule wrapper."""

from activation_hash.models.classifier import Classifier, NonFiniteLossError
from activation_hash.models.mlp import MLP, hidden_widths

__all__ = ["MLP", "Classifier", "NonFiniteLossError", "hidden_widths"]
