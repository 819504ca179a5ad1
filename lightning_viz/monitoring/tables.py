"""The one table renderer: aligned plain text (console) and Markdown (TensorBoard, PRs).

Example:
    >>> print("\\n".join(text_table(["metric", "value"], [["a", "0.5"], ["bb", "1"]], rule=True)))
    metric  value
    ------  -----
    a       0.5
    bb      1
    >>> markdown_table(["metric", "value"], [["a|b", "0.5"]], align="lr")
    ['| metric | value |', '|---|---:|', '| a\\\\|b | 0.5 |']
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["format_p", "markdown_table", "text_table"]


def format_p(p: float | None) -> str:
    """A p-value in two significant digits (``1.2e-05`` below ``1e-4``); ``-`` for none/NaN."""
    if p is None or math.isnan(p):
        return "-"
    return f"{p:.2g}" if p >= 1e-4 else f"{p:.1e}"


def text_table(
    header: Sequence[str] | None,
    rows: Sequence[Sequence[str]],
    *,
    indent: str = "",
    rule: bool = False,
) -> list[str]:
    """Left-aligned columns two spaces apart, trailing spaces stripped.

    Args:
        header: The column names, or ``None`` for a table without one.
        rows: The cells, each row as long as the header.
        indent: Put before every line.
        rule: Draw a line of dashes under the header.

    Returns:
        The lines (no newline characters).
    """
    table = [list(r) for r in ([header] if header is not None else []) + list(rows)]
    if not table:
        return []
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    lines = [
        indent + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in table
    ]
    if rule and header is not None:
        lines.insert(1, indent + "  ".join("-" * w for w in widths))
    return lines


def markdown_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], *, align: str | None = None
) -> list[str]:
    """A GitHub-flavoured Markdown table; ``|`` inside a cell is escaped.

    Args:
        header: The column names.
        rows: The cells, each row as long as the header.
        align: One letter per column, ``"l"`` (left) or ``"r"`` (right). Default: all left.

    Returns:
        The lines (no newline characters).
    """
    align = align or "l" * len(header)
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|",
    ]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return lines
