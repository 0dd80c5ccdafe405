"""Test modules never import each other: what two of them share lives in tests/support*.py under a
public name. A test module imported by another drags its fixtures and collection along, and its
private helpers change without warning to the importer."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent


def _is_test_module(name: str) -> bool:
    """`tests.test_x`, `test_x` or `.test_x`: a test module, not support or conftest."""
    return any(part.startswith("test_") for part in name.split(".") if part)


def cross_imports(source: str, path: str) -> list[str]:
    """`path:line what` for each import of a test module, or of a private name from tests/."""
    found = []
    for node in ast.walk(ast.parse(source, filename=path)):
        if isinstance(node, ast.Import):
            found += [f"{path}:{node.lineno} imports {a.name}" for a in node.names
                      if a.name.startswith("tests.") and _is_test_module(a.name)]
        elif isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            ours = node.level > 0 or module == "tests" or module.startswith("tests.")
            if not ours and not _is_test_module(module):
                continue
            for alias in node.names:
                if _is_test_module(module) or _is_test_module(alias.name):
                    found.append(f"{path}:{node.lineno} imports {module}.{alias.name}")
                elif alias.name.startswith("_"):
                    found.append(f"{path}:{node.lineno} imports the private {module}.{alias.name}")
    return found


def test_no_test_module_imports_another_or_a_private_helper() -> None:
    found = []
    for file in sorted(TESTS.glob("*.py")):
        found += cross_imports(file.read_text(encoding="utf-8"), file.name)
    assert found == []


@pytest.mark.parametrize("planted", [
    "from tests.test_analyst_page import _rated_study\n",
    "from tests.test_cli import runner\n",
    "import tests.test_cli\n",
    "from tests import test_cli\n",
    "from .test_cli import runner\n",
    "from test_cli import runner\n",
    "from tests.support import _pg_bin\n",
])
def test_a_planted_cross_import_is_found(planted: str) -> None:
    assert len(cross_imports(planted, "test_x.py")) == 1


def test_support_imports_pass() -> None:
    assert cross_imports("from tests.support import make_study\nimport pytest\n"
                         "from review.cli import _process_is_ours\n", "test_x.py") == []
