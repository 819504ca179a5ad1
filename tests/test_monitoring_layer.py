"""The monitoring package stands alone: no Lightning, no TensorBoard, no callbacks; and
the package keeps its files small."""

from __future__ import annotations

import ast
from pathlib import Path

import lightning_viz.monitoring
from tests.conftest import run_python

_FORBIDDEN = ("lightning", "pytorch_lightning", "lightning_fabric", "tensorboard")
_PACKAGE = Path(lightning_viz.monitoring.__file__).parent


def test_importing_monitoring_pulls_in_neither_lightning_nor_tensorboard():
    code = (
        "import sys, lightning_viz.monitoring as m;"
        "m.compare_summaries(m.RunSummary(), m.RunSummary());"
        f"roots = {set(_FORBIDDEN)!r};"
        "bad = sorted(n for n in sys.modules if n.split('.')[0] in roots"
        " or n.startswith(('lightning_viz.callbacks', 'lightning_viz._runtime')));"
        "print(bad)"
    )
    assert run_python(code).strip() == "[]"


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    return names


def test_no_module_of_monitoring_imports_callbacks_runtime_or_lightning():
    files = sorted(_PACKAGE.glob("*.py"))
    assert {f.name for f in files} >= {"record.py", "rule.py", "stats.py", "compare.py"}
    for f in files:
        for name in _imports(f):
            assert name.split(".")[0] not in _FORBIDDEN, (f.name, name)
            assert not name.startswith(("lightning_viz.callbacks", "lightning_viz._runtime")), (
                f.name,
                name,
            )


def test_no_module_of_the_package_is_over_600_lines():
    """Issue 18's rule: a file that grows past it is split by topic."""
    root = Path(lightning_viz.__file__).parent
    sizes = {
        str(path.relative_to(root)): len(path.read_text().splitlines())
        for path in root.rglob("*.py")
    }
    assert sizes and not {name: n for name, n in sizes.items() if n > 600}
