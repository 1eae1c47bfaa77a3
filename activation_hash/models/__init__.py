"""Plain nn.Module architectures (free of Lightning) and the one LightningModule wrapper."""

from activation_hash.models.classifier import Classifier, NonFiniteLossError
from activation_hash.models.densenet import DenseNet
from activation_hash.models.mlp import MLP, hidden_widths
from activation_hash.models.resnet import ResNet
from activation_hash.models.resnext import ResNeXt
from activation_hash.models.vgg import VGG
from activation_hash.models.zoo import CNN_ZOO, custom

__all__ = ["CNN_ZOO", "MLP", "VGG", "Classifier", "DenseNet", "NonFiniteLossError", "ResNeXt", "ResNet",
           "custom", "hidden_widths"]
