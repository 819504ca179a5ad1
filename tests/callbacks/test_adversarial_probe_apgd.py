"""AdversarialProbe's APGD attacks, AutoAttack's sanity checks and the catastrophic-
overfitting alert."""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from lightning_viz.callbacks._overfitting import chance_accuracy
from lightning_viz.callbacks.robustness import AdversarialProbe
from lightning_viz.functional.apgd import apgd_mask
from tests.conftest import fit, read_events

EPS = 8 / 255


class FixedLit(pl.LightningModule):
    """A fixed (lr 0) flatten-linear model, optionally ending in ``tail``."""

    def __init__(self, tail: nn.Module | None = None, classes: int = 5):
        super().__init__()
        layers = [nn.Flatten(), nn.Linear(3 * 32 * 32, classes)]
        self.net = nn.Sequential(*layers, *([tail] if tail is not None else []))

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        logits = self(batch[0])
        if logits.shape[1] == 1:
            return F.binary_cross_entropy_with_logits(logits[:, 0], batch[1].float().clamp(0, 1))
        return F.cross_entropy(logits, batch[1])

    def validation_step(self, batch, batch_idx):
        return None

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


class Jitter(nn.Module):
    """Adds fresh noise at every call, also in eval mode (a randomized defense)."""

    def forward(self, x):
        return x + 0.1 * torch.randn_like(x)


def probe_data(model, n=32):
    x = torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model(x).argmax(1)
    return x, y


def test_apgd_attacks_tags_and_worst_case(tmp_path):
    attacks = ("fgsm", "pgd", "apgd-ce", "apgd-t")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = FixedLit()
    x, y = probe_data(model)
    cb = AdversarialProbe(
        attacks=attacks,
        eps=(2 / 255, EPS),
        probe=(x, y),
        apgd_steps=10,
        n_target_classes=3,
        on_error="raise",
    )
    fit(tmp_path, [cb], model=model, epochs=1)
    scalars = read_events(str(tmp_path))["scalars"]
    for attack in attacks:
        assert f"robustness/{attack}_acc@8/255" in scalars
    last = {k: v[-1][1] for k, v in scalars.items()}
    worst = last["robustness/worst_acc@8/255"]
    assert worst == pytest.approx(min(last[f"robustness/{a}_acc@8/255"] for a in attacks))
    # a stronger attack: APGD-T (10 steps, 4 target classes) not above PGD-10 here
    assert last["robustness/apgd-t_acc@8/255"] <= last["robustness/pgd_acc@8/255"] + 1 / 32


@pytest.mark.parametrize(
    ("tail", "kind"),
    [
        (nn.Softmax(dim=1), "probabilities"),
        (Jitter(), "randomized"),
    ],
)
def test_sanity_checks_warn_once_with_the_reason(tmp_path, tail, kind):
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = FixedLit(tail)
    x, y = probe_data(model)
    cb = AdversarialProbe(eps=(EPS,), probe=(x, y), on_error="raise")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(tmp_path, [cb], model=model, epochs=2)
    texts = [str(w.message) for w in caught if f"sanity check failed ({kind})" in str(w.message)]
    assert len(texts) == 1, [str(w.message) for w in caught]
    assert kind in cb._masking_warned


class OverflowLit(FixedLit):
    """The fixed model with a half-precision head whose logits overflow to inf (trained
    on the finite logits before it): every input gradient of the probe is NaN."""

    def forward(self, x):
        return (self.net(x) * 1e6).to(torch.float16)

    def training_step(self, batch, batch_idx):
        return F.cross_entropy(self.net(batch[0]), batch[1])


def test_logits_overflowing_to_inf_are_flagged_as_gradient_masking(tmp_path):
    """NaN input gradients move no sample: the robust accuracy equalled the clean one,
    and the zero-gradient check (exactly 0) said nothing."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = OverflowLit()
    x, y = probe_data(model)
    cb = AdversarialProbe(eps=(EPS,), probe=(x, y), on_error="raise")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(tmp_path, [cb], model=model, epochs=1)
    said = [
        str(w.message) for w in caught if "sanity check failed (zero_gradients)" in str(w.message)
    ]
    assert len(said) == 1 and "exactly zero or not finite" in said[0]


def test_a_healthy_model_raises_no_sanity_flag(tmp_path):
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = FixedLit()
    x, y = probe_data(model)
    cb = AdversarialProbe(eps=(EPS,), probe=(x, y), on_error="raise")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(tmp_path, [cb], model=model, epochs=1)
    assert not [w for w in caught if "sanity check" in str(w.message)]


class QuantizedLit(FixedLit):
    """The fixed linear model on inputs rounded to 1/8: zero input gradients."""

    def forward(self, x):
        return self.net(torch.round(x * 8) / 8)


@pytest.mark.parametrize("masked", [True, False])
def test_black_box_check_flags_a_masked_model_only(tmp_path, masked):
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = QuantizedLit() if masked else FixedLit()
    x, y = probe_data(model)
    cb = AdversarialProbe(eps=(EPS,), probe=(x, y), black_box_queries=300, on_error="raise")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(tmp_path, [cb], model=model, epochs=2)
    texts = [str(w.message) for w in caught if "sanity check failed (black_box)" in str(w.message)]
    assert len(texts) == (1 if masked else 0), [str(w.message) for w in caught]
    if masked:  # Square leaves fewer correct than the white-box attacks, said with numbers
        assert "Square Attack (300 queries, no gradients) leaves" in texts[0]
        assert "of 32 probe samples correct at eps 8/255" in texts[0]


def test_black_box_check_needs_linf():
    with pytest.raises(ValueError, match="black_box_queries.*norm='l2'"):
        AdversarialProbe(eps=(0.5,), norm="l2", black_box_queries=100)
    with pytest.raises(ValueError, match="`black_box_queries` must be an int >= 0"):
        AdversarialProbe(black_box_queries=-1)


def test_apgd_t_falls_back_to_ce_for_a_binary_model(tmp_path):
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = FixedLit(classes=1)
    x = torch.rand(16, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = (model(x)[:, 0] > 0).long()
    cb = AdversarialProbe(
        attacks=("apgd-t",), eps=(EPS,), probe=(x, y), apgd_steps=5, on_error="raise"
    )
    with pytest.warns(UserWarning, match="'apgd-t' needs a multiclass model"):
        trainer, _ = fit(tmp_path, [cb], model=model, epochs=1)
    view = model.net.eval()
    expect = apgd_mask(view, x, y, EPS, steps=5, generator=torch.Generator().manual_seed(cb.seed))
    got = trainer.callback_metrics["robustness/apgd-t_acc@8/255"].item()
    assert got == pytest.approx(expect.float().mean().item(), abs=1 / 16 + 1e-9)


# ----------------------------------------------------- catastrophic overfitting
def _ctx(epoch):
    return SimpleNamespace(trainer=SimpleNamespace(current_epoch=epoch), task="multiclass")


LABELS = torch.arange(100) % 4  # four balanced classes: chance accuracy 0.25


def _co(cb, epoch: int, fgsm_ok: int, pgd_ok: int, clean_ok: int = 60, labels=LABELS):
    """The rule's messages at ``epoch`` when the first ``fgsm_ok`` samples survive FGSM,
    the first ``pgd_ok`` PGD and the first ``clean_ok`` are classified correctly."""
    n = len(labels)
    f, p, c = (torch.arange(n) < k for k in (fgsm_ok, pgd_ok, clean_ok))
    return cb._overfitting_messages(_ctx(epoch), {"fgsm": {EPS: f}, "pgd": {EPS: p}}, c, labels)


def test_catastrophic_overfitting_rule():
    cb = AdversarialProbe(eps=(EPS,), tolerance=0.02, alpha=0.01)
    assert _co(cb, 0, 40, 30) == []  # reference: gap 10
    assert _co(cb, 1, 45, 33) == []  # gap 12, PGD rose
    # gap grows to 14 only: not significant (4 entered, 0 left: p = 1/16)
    assert _co(cb, 2, 44, 30) == []
    (msg,) = _co(cb, 3, 50, 10)  # gap 40, PGD fell
    assert "catastrophic overfitting at eps 8/255, started at epoch 1" in msg
    assert "PGD accuracy fell from 0.3000 (epoch 0) to 0.1000 (epoch 3)" in msg
    assert "FGSM accuracy went from 0.4000 to 0.5000" in msg
    assert cb.catastrophic_overfitting["started"] == 1
    assert _co(cb, 4, 55, 5) == []  # once per fit


def test_no_alert_for_the_slow_decline_of_standard_training():
    """Plain training (the demo) lets PGD accuracy decline while FGSM's holds and the
    gap grows significantly, by a few samples; below a fifth of the probe it is no
    catastrophic overfitting."""
    cb = AdversarialProbe(eps=(EPS,), tolerance=0.02, alpha=0.01)
    assert _co(cb, 0, 29, 29) == []  # reference: gap 0
    assert _co(cb, 1, 30, 22) == []  # gap 8 of 100 (p = 1/256): the demo's numbers
    assert _co(cb, 2, 33, 14) == []  # gap 19 of 100
    assert cb.catastrophic_overfitting is None
    (msg,) = _co(cb, 3, 34, 14)  # gap 20 of 100: FGSM far above PGD
    assert "PGD accuracy fell from 0.2900 (epoch 0) to 0.1400 (epoch 3)" in msg
    assert "Read PGD's accuracy" in msg


def test_no_alert_when_fgsm_falls_too():
    cb = AdversarialProbe(eps=(EPS,))
    assert _co(cb, 0, 60, 50) == []
    # both fall (the model just gets less robust): FGSM lower by more than tolerance
    assert _co(cb, 1, 40, 5) == []
    assert cb.catastrophic_overfitting is None
    only_pgd = AdversarialProbe(eps=(EPS,), attacks=("pgd",))
    mask = torch.ones(4, dtype=torch.bool)
    assert only_pgd._overfitting_messages(_ctx(0), {"pgd": {EPS: mask}}, mask, LABELS[:4]) == []


def test_no_alert_for_a_model_at_chance():
    """An untrained model at chance (a plain run once warned here): its predictions move
    at random, so PGD can 'fall' and the gap 'grow' significantly. Not above chance: no
    alert; the same accuracies above chance: the alert."""
    # clean 30 of 100 with chance 0.25: P(X >= 30) = 0.15 for Binomial(100, 0.25)
    at_chance = AdversarialProbe(eps=(EPS,), alpha=0.01)
    assert _co(at_chance, 0, 13, 13, clean_ok=30) == []
    assert _co(at_chance, 1, 25, 2, clean_ok=30) == []
    assert at_chance.catastrophic_overfitting is None
    above = AdversarialProbe(eps=(EPS,), alpha=0.01)  # clean 40 of 100: p = 0.0007
    assert _co(above, 0, 13, 13, clean_ok=40) == []
    assert len(_co(above, 1, 25, 2, clean_ok=40)) == 1
    # chance is the most frequent class's share: 40 correct of 100 where one class
    # holds 40 % is no better than always predicting that class
    skewed = torch.cat([torch.zeros(40, dtype=torch.long), torch.arange(60) % 3 + 1])
    constant = AdversarialProbe(eps=(EPS,), alpha=0.01)
    assert _co(constant, 0, 13, 13, clean_ok=40, labels=skewed) == []
    assert _co(constant, 1, 25, 2, clean_ok=40, labels=skewed) == []


def test_chance_accuracy():
    assert chance_accuracy(torch.tensor([3, 3, 1, 0]), "multiclass") == 0.5
    assert chance_accuracy(torch.tensor([1, 1, 1, 0]), "binary") == 0.75
    # multilabel: per label the more frequent value, then the mean (0.75 and 1.0)
    ml = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 0.0], [1.0, 0.0]])
    assert chance_accuracy(ml, "multilabel") == 0.875
    assert chance_accuracy(torch.zeros(0, dtype=torch.long), "multiclass") == 0.0


def test_black_box_check_skips_a_multilabel_model_once(tmp_path):
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = FixedLit(classes=5)
    x = torch.rand(16, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    y = (torch.rand(16, 5, generator=torch.Generator().manual_seed(2)) > 0.5).float()
    cb = AdversarialProbe(
        eps=(EPS,), probe=(x, y), task="multilabel", black_box_queries=50, on_error="raise"
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(tmp_path, [cb], model=model, epochs=2)
    texts = [str(w.message) for w in caught if "black-box check" in str(w.message)]
    assert len(texts) == 1 and "multilabel" in texts[0]
    assert "robustness/pgd_label_acc@8/255" in read_events(str(tmp_path))["scalars"]
