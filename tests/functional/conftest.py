"""Small hand-built models shared by the functional tests (32 px, a few channels)."""

from __future__ import annotations

import copy
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn


def make(factory, seed: int = 0) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = factory()
    return model.eval()


class SmallCNN(nn.Module):
    """conv-relu-conv-relu-pool-conv-relu-gap-linear; ``relu`` selects how ReLU is called.

    ``relu``: ``"module"`` (nn.ReLU), ``"inplace"`` (nn.ReLU(inplace=True)),
    ``"functional"`` (F.relu) or ``"torch"`` (torch.relu / Tensor.relu).
    """

    def __init__(self, relu: str = "module", classes: int = 5, in_ch: int = 3) -> None:
        super().__init__()
        self.relu_kind = relu
        self.conv1 = nn.Conv2d(in_ch, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.conv3 = nn.Conv2d(6, 8, 3, padding=1)
        self.fc = nn.Linear(8, classes)
        if relu in ("module", "inplace"):
            self.act1 = nn.ReLU(inplace=relu == "inplace")
            self.act2 = nn.ReLU(inplace=relu == "inplace")
            self.act3 = nn.ReLU(inplace=relu == "inplace")

    def _relu(self, i: int, x: Tensor) -> Tensor:
        if self.relu_kind == "functional":
            return F.relu(x)
        if self.relu_kind == "torch":
            return torch.relu(x) if i % 2 else x.relu()
        return getattr(self, f"act{i}")(x)

    def forward(self, x: Tensor) -> Tensor:
        x = self._relu(1, self.conv1(x))
        x = self.pool(self._relu(2, self.conv2(x)))  # (N, 6, 16, 16)
        x = self._relu(3, self.conv3(x))  # (N, 8, 16, 16)
        return self.fc(x.mean(dim=(2, 3)))


class FullResCNN(nn.Module):
    """Two convs keeping 32x32 resolution; CAMs on ``conv2`` need no upsampling."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 5, 3, padding=1)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(5, 6, 3, padding=1)
        self.head = nn.Sequential(
            nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, classes)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.conv2(self.relu(self.conv1(x))))


class SmoothCNN(nn.Module):
    """A smooth (softplus/tanh) conv net, for Integrated Gradients completeness."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 5, stride=2, padding=2)
        self.fc = nn.Linear(6 * 16 * 16, classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(torch.tanh(F.softplus(self.conv(x))).flatten(1))


class LinearNet(nn.Module):
    """logits = W flatten(x) + b: its input gradient is the row W_c, by hand."""

    def __init__(self, shape=(2, 4, 4), classes: int = 3) -> None:
        super().__init__()
        self.shape = shape
        self.fc = nn.Linear(shape[0] * shape[1] * shape[2], classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(x.flatten(1))


class MLP(nn.Module):
    """No conv layer at all."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(3 * 32 * 32, 8)
        self.fc2 = nn.Linear(8, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


class RaisingCNN(SmallCNN):
    """Runs conv1 (so layer hooks fire) then raises inside forward."""

    def forward(self, x: Tensor) -> Tensor:
        self.conv3(self.pool(self.conv2(self.conv1(x))))
        raise RuntimeError("boom inside forward")


def out_of_place(model: nn.Module) -> nn.Module:
    """A deep copy with every nn.ReLU set to inplace=False."""
    twin = copy.deepcopy(model)
    for m in twin.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False
    return twin


@pytest.fixture
def images() -> Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.rand(4, 3, 32, 32, generator=g)


@pytest.fixture
def small_cnn() -> nn.Module:
    return make(SmallCNN)


def snapshot(model: nn.Module) -> dict:
    """Everything a method must leave unchanged."""
    return {
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grad": [p.grad for p in model.parameters()],
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "rng": torch.get_rng_state(),
    }


def assert_unchanged(model: nn.Module, before: dict) -> None:
    from lightning_viz._hooks import has_hooks

    after = snapshot(model)
    assert after["training"] == before["training"]
    assert after["requires_grad"] == before["requires_grad"]
    assert all(a is b for a, b in zip(after["grad"], before["grad"], strict=True))
    for k, v in before["state"].items():
        assert torch.equal(after["state"][k], v), k
    assert torch.equal(after["rng"], before["rng"])
    assert not has_hooks(model)


def messy_state(model: nn.Module) -> nn.Module:
    """Training mode with one submodule in eval, mixed requires_grad, one .grad set."""
    model.train()
    first = next(m for m in model.children())
    first.eval()
    params = list(model.parameters())
    params[0].requires_grad_(False)
    params[-1].grad = torch.ones_like(params[-1])
    return model


# ------------------------------------------------- attacks (test_attacks*.py)
def attack_cnn(channels: int = 1, classes: int = 10, size: int = 16, bn: bool = True) -> nn.Module:
    """Tiny CNN; with BatchNorm and Dropout so train/eval mode matters."""
    layers: list[nn.Module] = [nn.Conv2d(channels, 8, 3, padding=1)]
    if bn:
        layers.append(nn.BatchNorm2d(8))
    layers += [
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Dropout(0.2),
        nn.Linear(16 * (size // 4) ** 2, classes),
    ]
    return nn.Sequential(*layers)


def random_attack_cnn(seed: int = 0, **kwargs) -> nn.Module:
    """``attack_cnn(**kwargs)`` initialized from ``seed`` (global RNG untouched), in train mode."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return attack_cnn(**kwargs)


def attack_batch(n: int = 12, channels: int = 1, size: int = 16, classes: int = 10, seed: int = 1):
    """Random images in ``[0, 1]`` ``(n, channels, size, size)`` and labels ``(n,)``."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, channels, size, size, generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    return x, y


@pytest.fixture(scope="session")
def fx():
    """This module: the test files reach the models and helpers as ``fx.SmallCNN`` etc."""
    return sys.modules[__name__]


@pytest.fixture(scope="session")
def digits_model():
    """An MLP trained (2 s on a CPU) on sklearn's bundled 8x8 digits; 256 held-out
    images in [0, 1] (1, 8, 8) with their labels."""
    datasets = pytest.importorskip("sklearn.datasets")
    d = datasets.load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(d.target)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
        opt = torch.optim.Adam(model.parameters(), 1e-2)
        for _ in range(30):
            perm = torch.randperm(1400)
            for i in range(0, 1400, 100):
                b = perm[i : i + 100]
                loss = nn.functional.cross_entropy(model(x[b]), y[b])
                opt.zero_grad()
                loss.backward()
                opt.step()
    model.eval()
    for p in model.parameters():
        p.grad = None
    return model, x[1400:1656], y[1400:1656]
