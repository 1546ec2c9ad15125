"""Rules about the code base itself: declared dependencies, where dev tools live."""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
APP = [REPO / "function_app.py", *sorted((REPO / "shared").rglob("*.py"))]
NOT_TESTS = [
    p
    for top in ("shared", "scripts", "bench", "emulator", "segexp", "devtools")
    for p in sorted((REPO / top).rglob("*.py"))
] + [REPO / "function_app.py"]


def imported_modules(path: Path) -> set[str]:
    """Top-level names of every module imported anywhere in the file (lazy imports too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def declared(requirements: Path) -> set[str]:
    out: set[str] = set()
    for line in requirements.read_text(encoding="utf-8").splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            name = re.split(r"[\s<>=!~;\[]", line, maxsplit=1)[0]
            out.add(re.sub(r"[-_.]+", "-", name).lower())
    return out


def test_every_third_party_import_of_the_app_is_in_requirements_txt() -> None:
    by_module = packages_distributions()
    runtime = declared(REPO / "requirements.txt")
    local = {"shared", "function_app"}
    missing: dict[str, str] = {}
    for path in APP:
        for module in imported_modules(path) - local - set(sys.stdlib_module_names):
            dists = {re.sub(r"[-_.]+", "-", d).lower() for d in by_module.get(module, [])}
            if dists and not dists & runtime:
                missing[module] = f"{path.relative_to(REPO)} ({', '.join(sorted(dists))})"
    assert not missing, f"imported but not in requirements.txt: {missing}"


def test_nothing_outside_tests_imports_tests() -> None:
    offenders = [str(p.relative_to(REPO)) for p in NOT_TESTS if "tests" in imported_modules(p)]
    assert not offenders, f"these import the test package: {offenders}"
