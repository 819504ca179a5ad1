"""The package's promises about itself: the declared version ranges are the tested
ones, the version has one source, the README stays a front page."""

from __future__ import annotations

import pathlib
import re

import pytest

import lightning_viz
from tests.conftest import run_python

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _release(version: str) -> tuple[int, ...]:
    """``"2.1"`` and ``"2.1.0"`` -> ``(2, 1)``: release numbers without trailing zeros."""
    parts = [int(p) for p in version.split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def declared_lower_bounds() -> dict[str, str]:
    """``name -> lower bound`` of every runtime dependency in pyproject.toml."""
    text = (ROOT / "pyproject.toml").read_text()
    block = re.search(r"^dependencies = \[(.*?)^\]", text, re.S | re.M).group(1)
    bounds = {}
    for requirement in re.findall(r'"([^"]+)"', block):
        name = re.split(r"[ <>=!~;\[]", requirement, maxsplit=1)[0]
        lower = re.search(r">=\s*([0-9][0-9.]*)", requirement)
        assert lower, f"{requirement!r} declares no lower bound"
        bounds[_canonical(name)] = lower.group(1)
    return bounds


def oldest_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints" / "oldest.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[_canonical(name)] = version.strip()
    return pins


def test_constraints_pin_every_runtime_dependency_at_its_declared_lower_bound():
    bounds, pins = declared_lower_bounds(), oldest_pins()
    assert set(bounds) == set(pins), (sorted(bounds), sorted(pins))
    for name, lower in bounds.items():
        assert _release(pins[name]) == _release(lower), (name, lower, pins[name])


def test_version_has_one_source():
    text = (ROOT / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in text
    assert 'version = { attr = "lightning_viz.__version__" }' in text
    assert not re.search(r'^version\s*=\s*"', text, re.M)  # no second, static version
    assert re.fullmatch(r"\d+\.\d+\.\d+", lightning_viz.__version__)
    assert (ROOT / "lightning_viz" / "py.typed").is_file()


def test_readme_is_a_front_page_with_the_two_quickstart_commands():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    assert "\nbash scripts/demo.sh " in readme and "\nbash scripts/test.sh " in readme


def test_subpackages_are_attributes_of_the_package_in_a_fresh_process():
    # `import lightning_viz as lv; lv.callbacks.__all__` (the benchmarks' form) failed
    # unless something had imported lightning_viz.callbacks first
    code = (
        "import lightning_viz as lv;"
        "print(lv.callbacks.AdversarialProbe.__name__, lv.functional.pgd.__name__,"
        " type(lv.monitoring.RunSummary()).__name__)"
    )
    assert run_python(code).split() == ["AdversarialProbe", "pgd", "RunSummary"]
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        lightning_viz.nothing  # noqa: B018
