"""Prints the installed version of Python and of every runtime dependency of lightning-viz.

    .venv/bin/python scripts/installed_versions.py
    .venv-oldest/bin/python scripts/installed_versions.py --check constraints/oldest.txt

With ``--check FILE`` (pip constraints, ``name==version`` lines) it exits 1 when an
installed version differs from its pin, so CI knows the oldest versions really ran.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import platform
import re
import sys


def canonical(name: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def runtime_dependencies() -> list[str]:
    """The names of lightning-viz's runtime dependencies (no extras), as declared."""
    names = []
    for requirement in importlib.metadata.requires("lightning-viz") or []:
        if "extra ==" in requirement:
            continue
        names.append(canonical(re.split(r"[ <>=!~;\[]", requirement, maxsplit=1)[0]))
    return names


def pins(path: str) -> dict[str, str]:
    """``name==version`` lines of a constraints file, by canonical name."""
    found = {}
    with open(path, encoding="utf-8") as file:
        for line in file:
            line = line.split("#", 1)[0].strip()
            if line:
                name, version = line.split("==")
                found[canonical(name)] = version.strip()
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, allow_abbrev=False)
    parser.add_argument(
        "--check",
        metavar="FILE",
        default=None,
        help="constraints file whose pins must equal the installed versions (default: none)",
    )
    args = parser.parse_args(argv)
    print(f"python {platform.python_version()}")
    installed = {}
    for name in runtime_dependencies():
        installed[name] = importlib.metadata.version(name)
        print(f"{name} {installed[name]}")
    if args.check is None:
        return 0
    wanted = pins(args.check)
    wrong = [
        f"{name}: installed {installed.get(name, 'nothing')}, pinned {version}"
        for name, version in wanted.items()
        if installed.get(name) != version
    ]
    missing = sorted(set(installed) - set(wanted))
    for line in wrong:
        print(f"version mismatch: {line}", file=sys.stderr)
    for name in missing:
        print(f"{name} is a runtime dependency without a pin in {args.check}", file=sys.stderr)
    return 1 if wrong or missing else 0


if __name__ == "__main__":
    sys.exit(main())
