"""The package layout follows the data flow, and this test keeps it that way.

accounts (users, sessions, audit) under media (images, blur, restorers) -> labeling (studies,
assignment, ratings, QA, guidelines) -> analysis (agreement, reports, exports) -> answer (the
boundary, Try your photo); generation (plans, workers, proposals) runs restorers into studies;
review/ui sits on top and db/ underneath. Every import in
every module (module level or inside a function) is checked, so a shortcut against the flow
fails here rather than in a reviewer's browser.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: Top-level modules every layer may use: settings, errors, the roles and states (review.enums,
#: read from db/vocabulary.py), who may do what (review.policy) and the performance tricks, each
#: behind one named function (review.performance).
FOUNDATION = ("review.config", "review.errors", "review.enums", "review.policy", "review.performance")

#: What each part of the code may import from the project (prefixes; anything else is refused).
ALLOWED: dict[str, tuple[str, ...]] = {
    "db": ("db",),
    "review.media": ("review.media", *FOUNDATION, "db"),
    # Accounts sit below labeling: a rating write checks its browser session in its transaction.
    "review.accounts": ("review.accounts", *FOUNDATION, "db"),
    "review.labeling": ("review.labeling", "review.accounts", "review.media", *FOUNDATION, "db"),
    "review.analysis": ("review.analysis", "review.labeling", "review.accounts", "review.media",
                        *FOUNDATION, "db"),
    # The answer reads the ratings through analysis; analysis never reaches up into it.
    "review.answer": ("review.answer", "review.analysis", "review.labeling", "review.accounts",
                      "review.media", *FOUNDATION, "db"),
    # Generation runs restorers (media) into studies (labeling), in worker processes that open the
    # lab themselves (review.database); proposals come from the answer.
    "review.generation": ("review.generation", "review.answer", "review.labeling", "review.accounts",
                          "review.media", "review.database", *FOUNDATION, "db"),
    # Top-level modules span the groups (jobs add restorations to studies, the demo fills one,
    # the CLI runs everything) but never reach into the UI.
    "review": ("review.media", "review.accounts", "review.labeling", "review.analysis", "review.answer",
               "review.generation", "review", "db"),
    # The floor's vocabulary and policy import nothing above them (every layer imports them).
    "review.enums": ("db.vocabulary",),
    "review.policy": ("review.enums",),
    "review.performance": (),
    # Pages and commands call domain functions: no db models, engine or sessions.
    "review.ui": ("review",),
    "review.cli": ("review",),
}

#: Heavy or UI libraries and the only packages that may import them.
CONFINED = {
    "streamlit": ("review.ui",),
    "torch": ("review.media.restore",),
    "diffusers": ("review.media.restore",),
    "transformers": ("review.media.restore",),
}

#: Libraries a package must not import: the pages never query the database themselves.
BARRED = {"sqlalchemy": ("review.ui", "review.cli")}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> list[Path]:
    return sorted(p for folder in ("review", "db") for p in (ROOT / folder).rglob("*.py")
                  if "migrations" not in p.parts)


@functools.cache  # each planted-import case re-reads every module; parse each text once
def _imports(source: str, path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the source, at any depth."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source, filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from review import x` imports the module review.x when x is one.
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def _group(module: str) -> str:
    """The most specific key of ALLOWED that the module belongs to."""
    best = ""
    for key in ALLOWED:
        if (module == key or module.startswith(key + ".")) and len(key) > len(best):
            best = key
    return best


def _inside(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _project_target(name: str) -> str | None:
    """The project module an import refers to (`review.x.Name` -> `review.x`), or None."""
    if name.split(".")[0] not in ("review", "db"):
        return None
    parts = name.split(".")
    while parts:
        candidate = ROOT.joinpath(*parts)
        if candidate.with_suffix(".py").is_file() or (candidate / "__init__.py").is_file():
            return ".".join(parts)
        parts.pop()
    return name


def flow_violations(read: Callable[[Path], str] = Path.read_text) -> list[str]:
    problems: list[str] = []
    for path in _modules():
        module = _module_name(path)
        group = _group(module)
        allowed = ALLOWED[group]
        for line, name in _imports(read(path), path):
            where = f"{path.relative_to(ROOT)}:{line}"
            target = _project_target(name)
            if target is not None:
                if _inside(target, ("review.ui",)) and group != "review.ui":
                    problems.append(f"{where}: {module} imports the UI ({target})")
                elif not _inside(target, allowed):
                    problems.append(f"{where}: {module} ({group}) imports {target}, against the flow")
                continue
            top = name.split(".")[0]
            if top in CONFINED and not _inside(module, CONFINED[top]):
                problems.append(f"{where}: {module} imports {top}; only {CONFINED[top]} may")
            if top in BARRED and _inside(module, BARRED[top]):
                problems.append(f"{where}: {module} imports {top}; {BARRED[top]} may not")
    return problems


def test_every_import_follows_the_data_flow() -> None:
    assert flow_violations() == []


@pytest.mark.parametrize("source, expected", [
    ("review/media/catalog.py", "from review.labeling.study import add_item\n"),
    ("review/labeling/ratings.py", "from review.analysis import agreement\n"),
    ("review/analysis/report.py", "def f():\n    import streamlit\n"),
    ("review/labeling/qa.py", "def f():\n    from review.ui.common import run_action\n"),
    ("review/generation/workers.py", "import torch\n"),
    ("review/analysis/export.py", "def f():\n    from review.answer import boundary\n"),
    ("review/accounts/users.py", "from review.labeling.study import add_item\n"),
    ("review/media/catalog.py", "from review.generation.plan import GenerationPlan\n"),
    ("db/models.py", "from review.config import Settings\n"),
    ("db/vocabulary.py", "from review.enums import Role\n"),
    ("review/policy.py", "from review.labeling.qa import QA_ROLES\n"),
    ("review/ui/rate.py", "def f():\n    from db.models import Study\n"),
    ("review/ui/admin.py", "import sqlalchemy.orm\n"),
    ("review/cli.py", "def f():\n    from db.models import Study\n"),
    ("review/cli.py", "from review.ui import common\n"),
])
def test_the_check_catches_a_shortcut(source: str, expected: str) -> None:
    """Each rule fails on a planted import (the checker is not vacuous)."""
    planted = ROOT / source

    def read(path: Path) -> str:
        return path.read_text() + ("\n\n" + expected if path == planted else "")

    problems = flow_violations(read)
    assert len(problems) == 1 and problems[0].startswith(source), problems
