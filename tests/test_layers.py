"""Data flows one way (DESIGN.md §2): ui → assistant → retrieval ← training; benchmarks/ and tests/ sit outside.

Every ``.py`` file under the four packages is parsed with ``ast`` and every
import is checked, those inside functions and ``TYPE_CHECKING`` blocks included
(an import hidden in a function to dodge a cycle is still the cycle), as are
``importlib.import_module("…")`` / ``__import__("…")`` calls with a literal name.
Tests and benchmarks may import anything; they are not scanned, and they are not installed, so no installed
package may import them.
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("assistant", "retrieval", "training", "ui")
DEMO_WORLD = "training.world"
NOT_INSTALLED = ("benchmarks", "tests")


def _under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


@dataclass(frozen=True)
class Rule:
    """One forbidden edge: files of ``packages`` must not import a module ``forbids`` matches."""

    packages: tuple[str, ...]
    forbids: Callable[[str], bool]
    why: str


RULES = (
    Rule(("retrieval",), lambda m: any(_under(m, p) for p in ("assistant", "training", "ui")),
         "retrieval must not import assistant, training or ui (it is the lowest layer)"),
    Rule(("assistant",), lambda m: _under(m, "training") or _under(m, "ui"),
         "assistant must not import training or ui"),
    Rule(("assistant",), lambda m: _under(m, "gradio") or _under(m, "gradio_client"),
         "assistant must know nothing of Gradio"),
    Rule(("training",), lambda m: _under(m, "assistant"),
         "training must not import assistant (it sits beside it, on retrieval; a caller hands it an assistant)"),
    Rule(("assistant", "retrieval", "training"), lambda m: _under(m, "ui"),
         "only ui/ may import ui (tests and benchmarks aside)"),
    Rule(("assistant", "retrieval", "ui"), lambda m: _under(m, DEMO_WORLD),
         "only training may import the demo-world generator (a catalog's vocabulary comes from its schema)"),
    Rule(PACKAGES, lambda m: any(_under(m, p) for p in NOT_INSTALLED),
         "installed packages must not import benchmarks or tests (neither is installed)"),
)


@dataclass(frozen=True)
class Violation:
    """One import statement that breaks one or more rules (``why`` names them all)."""

    path: str
    line: int
    statement: str
    why: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: `{self.statement}`: {self.why}"


def _module_of(path: str) -> str:
    parts = list(Path(path).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(node: ast.ImportFrom, path: str) -> str:
    """The absolute module a ``from … import`` names, relative ones resolved against the file's package."""
    if not node.level:
        return node.module or ""
    package = _module_of(path).split(".")
    if not path.endswith("__init__.py"):
        package.pop()
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def imports(tree: ast.AST, path: str) -> Iterator[tuple[ast.AST, list[str]]]:
    """Each import statement (or literal dynamic import) with the module names it may bring in."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield node, [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = _resolve(node, path)
            # ``from training import world`` brings in ``training.world``
            yield node, [module, *(f"{module}.{alias.name}" if module else alias.name for alias in node.names)]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                yield node, [node.args[0].value]


def check_source(source: str, path: str) -> list[Violation]:
    """The violations in one file; ``path`` is relative to the repository root (its first part is the package)."""
    package = Path(path).parts[0]
    rules = [rule for rule in RULES if package in rule.packages]
    found = []
    for node, modules in imports(ast.parse(source, filename=path), path):
        broken = [rule.why for rule in rules if any(rule.forbids(m) for m in modules)]
        if broken:
            found.append(Violation(path, node.lineno, ast.unparse(node), "; ".join(broken)))
    return sorted(found, key=lambda v: (v.path, v.line))


def check_tree(root: Path = ROOT) -> list[Violation]:
    found = []
    for package in PACKAGES:
        for file in sorted((root / package).rglob("*.py")):
            found += check_source(file.read_text(encoding="utf-8"), file.relative_to(root).as_posix())
    return found


def test_the_scanned_packages_are_the_installed_ones():
    """pyproject installs exactly the scanned packages: not benchmarks/ or tests/, and nothing unscanned."""
    find = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    assert sorted(pattern.removesuffix("*") for pattern in find["include"]) == sorted(PACKAGES)


def test_imports_follow_the_layers():
    scanned = sum(1 for p in PACKAGES for _ in (ROOT / p).rglob("*.py"))
    assert scanned > 20, "the layer check found almost nothing to scan"
    violations = check_tree()
    if violations:
        pytest.fail(f"{len(violations)} import(s) break the layering of DESIGN.md §2 "
                    "(ui → assistant → retrieval ← training):\n" + "\n".join(map(str, violations)), pytrace=False)


@pytest.mark.parametrize(("path", "source", "line", "why"), [
    ("retrieval/x.py", "import os\n\ndef f():\n    from assistant.conversation import Turn\n", 4, "lowest layer"),
    ("retrieval/x.py", "import training.registry as r\n", 1, "lowest layer"),
    ("assistant/x.py", "from training.registry import Registry\n", 1, "assistant must not import training"),
    ("assistant/x.py", "import gradio as gr\n", 1, "Gradio"),
    ("assistant/x.py", "from ui import app\n", 1, "only ui/ may import ui"),
    ("training/x.py", "def f():\n    import ui.cli\n", 2, "only ui/ may import ui"),
    ("ui/x.py", "from training import world\n", 1, "demo-world generator"),
    ("ui/x.py", "import training.world\n", 1, "demo-world generator"),
    ("retrieval/sub/x.py", "from ...training.world import VALUES\n", 1, "demo-world generator"),
    ("assistant/x.py", "import importlib\nW = importlib.import_module('training.world')\n", 2, "demo-world"),
    ("ui/x.py", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from training.world import World\n", 3,
     "demo-world generator"),
    ("ui/x.py", "def bench():\n    from benchmarks.cir import main\n", 2, "must not import benchmarks or tests"),
    ("training/x.py", "import benchmarks.report\n", 1, "must not import benchmarks or tests"),
    ("retrieval/x.py", "from tests.server_harness import free_port\n", 1, "must not import benchmarks or tests"),
    ("assistant/x.py", "from tests import server_harness\n", 1, "must not import benchmarks or tests"),
])
def test_the_checker_reports_a_violation(path, source, line, why):
    violations = check_source(source, path)
    assert any(v.line == line and why in v.why and v.path == path for v in violations), violations
    assert all(str(v).startswith(f"{path}:{v.line}: `") for v in violations)


@pytest.mark.parametrize(("path", "source"), [
    ("ui/x.py", "import gradio\nfrom assistant.conversation import Turn\nfrom ui.cli import app\n"),
    ("training/x.py", "from training.world import World\nfrom retrieval.durable_files import write_atomically\n"),
    ("assistant/x.py", "from retrieval.data_home import default_data_dir\nfrom . import triplet_log\n"),
    ("retrieval/x.py", "from .durable_files import append_line\n"),
    ("assistant/x.py", "import gradio_stubs_are_not_gradio\n"),
    ("training/x.py", "import testscenarios\nfrom benchmarking_lib import run\n"),
])
def test_the_checker_allows_what_the_layers_allow(path, source):
    assert check_source(source, path) == []
