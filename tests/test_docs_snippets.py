"""The Python examples in the README and docs name what exists.

Every ```python block parses; every name it imports from lightning_viz exists; every
keyword it passes to one of our callables (also through ``**common`` with ``common =
dict(...)``) is one of that callable's parameters; a block that defines every name it
uses and asserts something runs, and its assertions hold.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import inspect
import re
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def _blocks() -> list[tuple[str, str]]:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    out = []
    for path in files:
        text = path.read_text(encoding="utf-8")
        for match in _BLOCK.finditer(text):
            line = text.count("\n", 0, match.start()) + 2
            out.append((f"{path.relative_to(ROOT)}:{line}", textwrap.dedent(match.group(1))))
    return out


BLOCKS = _blocks()


def _namespace(tree: ast.Module) -> dict[str, object]:
    """The lightning_viz objects the block's imports bind, by local name."""
    names: dict[str, object] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("lightning_viz"):
                    module = importlib.import_module(alias.name)
                    names[alias.asname or alias.name.split(".")[0]] = (
                        module if alias.asname else importlib.import_module("lightning_viz")
                    )
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lightning_viz"):
            module = importlib.import_module(node.module)
            for alias in node.names:
                assert hasattr(module, alias.name), f"{node.module} has no {alias.name}"
                names[alias.asname or alias.name] = getattr(module, alias.name)
    return names


def _callee(func: ast.expr, names: dict[str, object]) -> object | None:
    if isinstance(func, ast.Name):
        return names.get(func.id)
    if isinstance(func, ast.Attribute):
        owner = _callee(func.value, names)
        if owner is None:
            return None
        assert hasattr(owner, func.attr), f"{getattr(owner, '__name__', owner)} has no {func.attr}"
        return getattr(owner, func.attr)
    return None


def _parameters(target: object) -> set[str] | None:
    """The keywords ``target`` accepts; a class whose ``__init__`` takes ``**kwargs``
    passes them to its base (a callback's common options): its bases' too. ``None``
    when any keyword is accepted."""
    classes = inspect.getmro(target) if inspect.isclass(target) else (None,)
    names: set[str] = set()
    for cls in classes:
        if cls is not None and "__init__" not in vars(cls):
            continue
        params = inspect.signature(target if cls is None else cls.__init__).parameters
        names |= set(params)
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            return names
    return None


def test_the_docs_have_python_examples() -> None:
    assert len(BLOCKS) >= 15, [where for where, _ in BLOCKS]


@pytest.mark.parametrize(("where", "code"), BLOCKS, ids=[w for w, _ in BLOCKS])
def test_a_docs_example_names_what_exists(where: str, code: str) -> None:
    tree = ast.parse(code, filename=where)
    names = _namespace(tree)
    dicts = {  # common = dict(a=..., b=...)
        node.targets[0].id: [k.arg for k in node.value.keywords]
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        and isinstance(node.targets[0], ast.Name)
        and isinstance(node.value, ast.Call)
        and isinstance(node.value.func, ast.Name)
        and node.value.func.id == "dict"
    }
    for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call)):
        target = _callee(call.func, names)
        if target is None or inspect.ismodule(target):
            continue
        params = _parameters(target)
        if params is None:
            continue
        given = [k.arg for k in call.keywords if k.arg is not None]
        for k in call.keywords:
            if k.arg is None and isinstance(k.value, ast.Name):
                given += dicts.get(k.value.id, [])
        unknown = sorted(set(given) - params)
        assert not unknown, f"{where}: {ast.unparse(call.func)} has no parameter {unknown}"


def _closed(tree: ast.Module) -> bool:
    """Whether the block binds every name it reads (a fragment reads ``model``)."""
    bound = set(dir(builtins))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            bound |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            bound.add(node.id)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.ClassDef | ast.FunctionDef):
            bound.add(node.name)
    read = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    return read <= bound


def test_a_docs_example_that_asserts_holds() -> None:
    ran = []
    for where, code in BLOCKS:
        tree = ast.parse(code, filename=where)
        if _closed(tree) and any(isinstance(n, ast.Assert) for n in ast.walk(tree)):
            exec(compile(tree, where, "exec"), {"__name__": "docs_example"})  # noqa: S102
            ran.append(where.split(":")[0])
    # among them the loggers page's and the custom view's (a VizCallback subclass, a fit)
    assert {"docs/loggers.md", "docs/reference/api-callbacks.md"} <= set(ran), ran
