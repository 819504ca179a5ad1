"""Metric names that MLflow accepts, and back.

MLflow's metric names and image keys allow only letters, digits, ``_ - . /`` and
spaces (Lightning's ``MLFlowLogger`` drops any other character). A lightning-viz tag
such as ``robustness/pgd_acc@8/255`` is spelled ``robustness/pgd_acc_at_8/255``: ``@``
becomes ``_at_``, any other character outside that set becomes ``_x<hex>_`` (its code
point). :func:`tag_of` reverses it for every name lightning-viz makes (none holds
``_at_`` or ``_x<hex>_`` itself); a user's layer name or ``tag_prefix`` that holds one
reads back with ``@`` (or the escaped character) there.
"""

from __future__ import annotations

import re

__all__ = ["mlflow_name", "tag_of"]

_ALLOWED = re.compile(r"[A-Za-z0-9_\-./ ]")
_ESCAPED = re.compile(r"_at_|_x([0-9a-f]+)_")


def mlflow_name(tag: str) -> str:
    """The MLflow spelling of a tag (``"a@8/255"`` -> ``"a_at_8/255"``)."""
    return "".join(
        c if _ALLOWED.fullmatch(c) else "_at_" if c == "@" else f"_x{ord(c):x}_" for c in tag
    )


def tag_of(name: str) -> str:
    """The tag an MLflow name spells (the inverse of :func:`mlflow_name`)."""
    return _ESCAPED.sub(lambda m: "@" if m.group(1) is None else chr(int(m.group(1), 16)), name)
