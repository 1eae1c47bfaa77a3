"""The CNN zoo: builds on CIFAR and MNIST shapes, trains, exposes every ReLU unit to the hooks,
and its unit counts equal counts derived here from the published architecture definitions."""

from __future__ import annotations

import functools
import math
import time

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from activation_hash.codes import describe_units
from activation_hash.models.classifier import Classifier
from activation_hash.models.densenet import DenseNet
from activation_hash.models.resnet import ResNet
from activation_hash.models.vgg import VGG
from activation_hash.models.zoo import CNN_ZOO, MODEL_CONF
from tests.zoo import build
from tests.conftest import compose_config

CIFAR, MNIST = (3, 32, 32), (1, 28, 28)
NAMES = ["vgg16", "vgg19", "resnet18", "resnet20", "resnet32", "resnext", "densenet"]
# cheap variants of every architecture, for forward/backward/training tests on CPU
REDUCED: dict[str, dict[str, object]] = {
    "vgg16": {"width_multiplier": 0.125}, "vgg19": {"width_multiplier": 0.125},
    "resnet18": {"base_width": 8}, "resnet20": {"base_width": 4}, "resnet32": {"base_width": 4},
    "resnext": {"bottleneck_width": 2}, "densenet": {"depth": 22, "growth_rate": 6},
}


def test_the_zoo_is_the_model_config_folder() -> None:
    assert sorted(CNN_ZOO) == sorted(NAMES)
    assert all((MODEL_CONF / f"{name}.yaml").is_file() and (MODEL_CONF / "tiny" / f"{name}.yaml").is_file()
               for name in NAMES)
    with pytest.raises(ValueError, match=r"model='vgg11': no conf/model/vgg11.yaml; choose one of \[.*'resnet20'"):
        build("vgg11", CIFAR, 10)


@pytest.mark.parametrize("shape", [CIFAR, MNIST], ids=["cifar", "mnist"])
@pytest.mark.parametrize("name", NAMES)
def test_reduced_variant_trains_fast(name: str, shape: tuple[int, int, int]) -> None:
    torch.manual_seed(0)
    net = build(name, shape, 10, **REDUCED[name])
    relus = [m for m in net.modules() if isinstance(m, nn.ReLU)]
    assert len({id(m) for m in relus}) == len(relus) and not any(m.inplace for m in relus)
    assert len(describe_units(net, shape)) == len(relus)  # every module is one call site
    x, y = torch.rand(8, *shape), torch.randint(0, 10, (8,))
    started = time.process_time()  # CPU time: the CPU is shared, wall time is noisy
    logits = net(x)
    F.cross_entropy(logits, y).backward()
    elapsed = time.process_time() - started
    assert logits.shape == (8, 10)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    assert sum(p.numel() for p in net.parameters()) < 500_000
    # one step takes ~0.1 s of CPU (up to ~1 s for the first convolutions of a process)
    assert elapsed < 10.0, f"reduced {name} took {elapsed:.2f}s of CPU for one step on 8 images"


@functools.cache
def default_units(name: str, shape: tuple[int, int, int]) -> tuple[list[int], int]:
    """Units per ReLU call site of the default-size network, and its number of nn.ReLU modules.

    Built on the meta device: shapes propagate, nothing is computed, so the 90M-parameter
    ResNeXt costs nothing; real forward and backward passes run on the reduced variants."""
    with torch.device("meta"):
        net = build(name, shape, 10)
        assert net(torch.zeros(2, *shape)).shape == (2, 10)
    units = describe_units(net, shape)
    return [n for _, n in units], sum(isinstance(m, nn.ReLU) for m in net.modules())


@pytest.mark.parametrize("name", NAMES)
def test_default_size_builds_and_exposes_units(name: str) -> None:
    for shape in (CIFAR, MNIST):
        units, n_modules = default_units(name, shape)
        assert len(units) == n_modules and all(n > 0 for n in units)
    cifar, mnist = default_units(name, CIFAR)[0], default_units(name, MNIST)[0]
    assert len(cifar) == len(mnist) and sum(mnist) < sum(cifar)


def _side(size: int, halvings: int) -> int:
    for _ in range(halvings):  # 2x2 pooling / stride-2 3x3 conv with padding 1: ceil(size / 2)
        size = math.ceil(size / 2)
    return size


def vgg19_units(shape: tuple[int, int, int]) -> list[int]:
    """Simonyan & Zisserman config E: stages of 2, 2, 4, 4, 4 convs of 64, 128, 256, 512, 512."""
    stages = [(2, 64), (2, 128), (4, 256), (4, 512), (4, 512)]
    return [width * _side(shape[1], i) * _side(shape[2], i) for i, (n, width) in enumerate(stages) for _ in range(n)]


def resnet_units(shape: tuple[int, int, int], blocks: list[int], base: int) -> list[int]:
    """Stem ReLU, then two ReLUs per BasicBlock; stage i has width base * 2^i at 1/2^i the size."""
    units = [base * shape[1] * shape[2]]
    for i, n in enumerate(blocks):
        units += [base * 2 ** i * _side(shape[1], i) * _side(shape[2], i)] * (2 * n)
    return units


def densenet_bc_units(shape: tuple[int, int, int], depth: int, k: int) -> list[int]:
    """Per bottleneck layer: ReLU on its c input channels and on 4k; transitions: ReLU on c, then c/2."""
    n, c, units = (depth - 4) // 6, 2 * k, []
    for block in range(3):
        area = _side(shape[1], block) * _side(shape[2], block)
        for _ in range(n):
            units += [c * area, 4 * k * area]
            c += k
        units.append(c * area)  # the transition's ReLU, or the final BN-ReLU after the last block
        c //= 2
    return units


@pytest.mark.parametrize("shape", [CIFAR, MNIST], ids=["cifar", "mnist"])
def test_unit_counts_match_architecture_definitions(shape: tuple[int, int, int]) -> None:
    assert default_units("vgg19", shape)[0] == vgg19_units(shape)
    assert default_units("resnet18", shape)[0] == resnet_units(shape, [2, 2, 2, 2], 64)
    assert default_units("resnet20", shape)[0] == resnet_units(shape, [3, 3, 3], 16)
    assert default_units("resnet32", shape)[0] == resnet_units(shape, [5, 5, 5], 16)
    assert default_units("densenet", shape)[0] == densenet_bc_units(shape, 100, 12)
    if shape == CIFAR:  # the sizes quoted for the paper's models
        assert 290_000 < sum(vgg19_units(shape)) < 310_000
        assert sum(resnet_units(shape, [3, 3, 3], 16)) == 16 * 1024 * 7 + 32 * 256 * 6 + 64 * 64 * 6


def test_init_is_deterministic_under_a_seed() -> None:
    def weights(seed: int) -> dict[str, torch.Tensor]:
        torch.manual_seed(seed)
        return build("resnet20", CIFAR, 10, base_width=4).state_dict()

    a, b, c = weights(3), weights(3), weights(4)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())


def test_batch_norm_switch_and_widths() -> None:
    plain = VGG(CIFAR, 10, depth=11, batch_norm=False)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in plain.modules())
    assert all(m.bias is not None for m in plain.modules() if isinstance(m, nn.Conv2d))
    assert [m.out_channels for m in VGG(CIFAR, 10, depth=11, width_multiplier=0.5).modules()
            if isinstance(m, nn.Conv2d)] == [32, 64, 128, 128, 256, 256, 256, 256]
    head = VGG(CIFAR, 10, depth=11, classifier_widths=[40])
    assert describe_units(head, CIFAR)[-1] == ("classifier.2", 40)
    projection = ResNet(CIFAR, 10, num_blocks=[1, 1], base_width=4, shortcut="B")
    padded = ResNet(CIFAR, 10, num_blocks=[1, 1], base_width=4, shortcut="A")
    n_params = [sum(p.numel() for p in net.parameters()) for net in (projection, padded)]
    assert n_params[0] - n_params[1] == 4 * 8 + 2 * 8  # the 1x1 conv and its batch norm


@pytest.mark.parametrize("make, match", [
    (lambda: VGG(CIFAR, 10, depth=12), "VGG depth must be one of"),
    (lambda: ResNet(CIFAR, 10, shortcut="C"), "model.shortcut='C'"),
    (lambda: DenseNet(CIFAR, 10, depth=41), "needs depth = 6n \\+ 4"),
    (lambda: ResNet((784,), 10), "needs image inputs"),
])
def test_bad_options_are_named(make, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make()


class FunctionalNet(nn.Module):
    """An outside network in the kuangliu style: functional ReLUs, no input_shape argument."""

    def __init__(self, classes: int, batch_norm: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4) if batch_norm else nn.Identity()
        self.fc = nn.Linear(4, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn(self.conv(x)))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1).relu())


def test_custom_config_brings_an_outside_network() -> None:
    resnet = ["model=custom", "model.network._target_=activation_hash.models.resnet.ResNet",
              "+model.network.num_blocks=[1,1,1]", "+model.network.base_width=8", "+model.network.shortcut=A"]
    example = instantiate(compose_config(resnet).model)(input_shape=MNIST, num_classes=10)
    assert example(torch.rand(2, *MNIST)).shape == (2, 10) and describe_units(example, MNIST)
    # the user's class receives only what the user set: no example keys of conf/model/custom.yaml
    cfg = compose_config(["model=custom", f"model.network._target_={__name__}.FunctionalNet",
                          "model.num_classes_arg=classes", "model.input_shape_arg=null", "regularizer=batch_norm"])
    net = instantiate(cfg.model)(input_shape=MNIST, num_classes=7)
    assert describe_units(net, MNIST) == [("relu", 4 * 28 * 28), ("relu_1", 4)]
    assert isinstance(net.bn, nn.BatchNorm2d) and net(torch.rand(3, *MNIST)).shape == (3, 7)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("name", ["vgg19", "resnet20"])
def test_classifier_trains_a_cnn_with_lightning(name: str) -> None:
    torch.manual_seed(0)
    net = build(name, CIFAR, 10, **REDUCED[name])
    module = Classifier(net, 10, optimizer=functools.partial(torch.optim.SGD, lr=0.01))
    data = TensorDataset(torch.rand(32, *CIFAR), torch.randint(0, 10, (32,)))
    before = [p.detach().clone() for p in net.parameters()]
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_checkpointing=False, limit_train_batches=2, enable_model_summary=False)
    trainer.fit(module, DataLoader(data, batch_size=8))
    assert trainer.global_step == 2
    assert any(not torch.equal(a, p) for a, p in zip(before, net.parameters()))


def test_custom_config_names_no_network_of_its_own(tmp_path) -> None:
    """model=custom alone is refused with one line naming the key to set (no hidden example network)."""
    from activation_hash.schema import ConfigError
    from activation_hash.validate import check_config
    cfg = compose_config(["model=custom"], output_dir=tmp_path)
    assert set(cfg.model.network.keys()) == {"_target_", "_partial_"}
    with pytest.raises(ConfigError, match=r"model.network._target_=\?\?\?: must name a class"):
        check_config(cfg)
