"""Fixtures of the data and model tests."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch


@pytest.fixture()
def restore_seeds(monkeypatch):
    """``pl.seed_everything`` seeds python, numpy and torch and sets PL_GLOBAL_SEED."""
    monkeypatch.delenv("PL_GLOBAL_SEED", raising=False)
    python_state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng():
        yield
    random.setstate(python_state)
    np.random.set_state(numpy_state)
