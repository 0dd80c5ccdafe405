"""Roles, states and access are declared once (review/enums.py, review/policy.py): the navigation,
the page guards, the domain's checks and the CLI derive from them, no code spells a role or a
state out, and docs/access.md shows the table as it is. A new role is one member and its rows."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import click
import pytest

from db.models import Base
from review.accounts.check import AccountRefused, check_account
from review.cli import cli
from review.enums import AssignmentStatus, JobStatus, RatingSource, Role, Verdict, WorkItemState
from review.policy import HOME, LINK_ONLY, POLICY, ROLE_WORDS, Action, may, roles_for, typed_roles
from review.ui.app import PAGE_INFO, menu

ROOT = Path(__file__).resolve().parent.parent
PAGES = ROOT / "review" / "ui" / "pages"
ACCESS_DOC = ROOT / "docs" / "access.md"

#: An attribute, variable or keyword of one of these names holds a role or a state.
VOCABULARY = {"role": Role, "status": (AssignmentStatus, JobStatus), "state": WorkItemState,
              "source": RatingSource, "verdict": Verdict}
WORDS = {str(v) for group in VOCABULARY.values()
         for enum in (group if isinstance(group, tuple) else (group,)) for v in enum}
#: A quoted word compared or listed in SQL text: `status = 'done'`, `IN ('leased', ...`.
SQL_WORD = re.compile(r"(?:=|<>|IN \(|, )\s*'(\w+)'")


def _named(node: ast.AST) -> bool:
    """`x.status`, `status` or a frame's `df["status"]`."""
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
        return node.slice.value in VOCABULARY
    name = node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else ""
    return name in VOCABULARY


def _words(node: ast.AST) -> list[str]:
    """The vocabulary words an expression spells out: a string, a tuple, list or set of them, or
    either branch of a conditional (not what a call returns)."""
    if isinstance(node, ast.Constant):
        return [node.value] if node.value in WORDS else []
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return [w for e in node.elts for w in _words(e)]
    if isinstance(node, ast.IfExp):
        return _words(node.body) + _words(node.orelse)
    return []


def spelt_out(source: str) -> list[tuple[int, str]]:
    """(line, word) where code compares, assigns or passes a role or state as a bare string, or
    SQL text (outside docstrings) names one."""
    tree = ast.parse(source)
    docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                  if isinstance(n, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
                  and n.body and isinstance(n.body[0], ast.Expr)}
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(_named(s) for s in sides):
                found += [(node.lineno, w) for s in sides for w in _words(s)]
        elif isinstance(node, ast.keyword) and node.arg in VOCABULARY:
            found += [(node.value.lineno, w) for w in _words(node.value)]
        elif isinstance(node, ast.Assign):
            targets = [e for t in node.targets for e in (t.elts if isinstance(t, ast.Tuple) else [t])]
            values = node.value.elts if isinstance(node.value, ast.Tuple) else [node.value]
            found += [(node.lineno, w) for t, v in zip(targets, values, strict=False) if _named(t)
                      for w in _words(v)]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "in_" \
                and _named(node.func.value):
            found += [(node.lineno, w) for a in node.args for w in _words(a)]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            found += [(node.lineno, w) for w in SQL_WORD.findall(node.value) if w in WORDS]
    return found


def _sources() -> list[Path]:
    return sorted(p for folder in ("review", "db") for p in (ROOT / folder).rglob("*.py")
                  if "migrations" not in p.parts and p != ROOT / "db" / "vocabulary.py")


def test_no_code_spells_a_role_or_a_state_out() -> None:
    found = [f"{p.relative_to(ROOT)}:{line}: {word!r}" for p in _sources()
             for line, word in spelt_out(p.read_text())]
    assert found == [], "use the members of review/enums.py (db/vocabulary.py):\n" + "\n".join(found)


@pytest.mark.parametrize("source", [
    'if user.role == "admin":\n    pass\n',
    'q = select(A).where(A.status.in_(("done", "skipped")))\n',
    'job.status, job.finished_at = "cancelled", now\n',
    'q = update(W).values(state="done" if ok else "failed")\n',
    'add(Rating(source="qa"))\n',
    'SQL = "UPDATE assignments SET status = \'done\'"\n',
    'ok = role not in ("reviewer", "admin")\n',
    'corrected = df["source"] == "qa"\n',
])
def test_the_check_sees_a_planted_literal(source: str) -> None:
    assert spelt_out(source) != []


def test_every_action_has_a_row_and_every_row_names_known_roles() -> None:
    assert set(POLICY) == set(Action)
    assert all(roles and roles <= set(Role) for roles in POLICY.values())
    assert set(HOME) <= set(Role) and set(ROLE_WORDS) <= set(Role)


def test_each_page_script_guards_with_its_pages_action() -> None:
    """Each script in pages/ checks the action the menu lists it under (directly, or through
    the render function it calls, whose first statement is the guard)."""
    for name, info in PAGE_INFO.items():
        text = (PAGES / f"{name}.py").read_text()
        guards = set(re.findall(r"require\(Action\.(\w+)\)", text))
        if not guards:  # the script calls a function of review/ui that guards itself
            called = re.search(r"from (review\.ui\.\w+) import (\w+)", text)
            assert called is not None, name
            module = (ROOT / called.group(1).replace(".", "/")).with_suffix(".py").read_text()
            body = module.split(f"def {called.group(2)}(", 1)[1]
            guards = set(re.findall(r"require\(Action\.(\w+)\)", body.split("\ndef ", 1)[0]))
        assert guards == {Action(info.action).name}, name


def test_the_menus_as_they_were() -> None:
    """The derived menus are the ones the app showed when each role listed its own pages."""
    assert menu(Role.REVIEWER) == ("rate", "try_photo")
    assert menu(Role.QA) == ("qa", "disagreements", "answer", "try_photo", "guidelines")
    assert menu(Role.ADMIN) == ("study", "study_setup", "generate", "guideline_admin", "qa", "disagreements",
                                "analysis", "answer", "try_photo", "crowd", "users", "audit", "rate")


def test_a_new_role_is_one_row() -> None:
    """A role that rates and, once done, tries a photo: naming it in those two rows of the table
    gives it its menu, its guards, its refusals and the rating's session check (a `HOME` row picks
    another landing page than its menu's first); the CLI, the Users page and the users table's
    CHECK list every member of `Role`."""
    trainee = "trainee"
    table = {a: roles | {trainee} if a in (Action.RATE, Action.TRY_PHOTO) else roles
             for a, roles in POLICY.items()}
    assert menu(trainee, table) == ("try_photo", "rate")
    assert menu(trainee, table, {**HOME, trainee: Action.RATE}) == ("rate", "try_photo")
    assert menu(trainee) == ()  # not in today's table: no page at all
    assert may(trainee, Action.RATE, table) and not may(trainee, Action.TRY_PHOTO_ANYTIME, table)
    assert roles_for(Action.RATE, table) == (Role.ADMIN, Role.REVIEWER, trainee)
    check_account(True, trainee, roles_for(Action.RATE, table), "rate")
    with pytest.raises(AccountRefused, match="Only admins and QA reviewers can settle"):
        check_account(True, trainee, roles_for(Action.DISAGREEMENTS_SETTLE, table), "settle")
    # what lists every role reads the enum
    role_option = next(p for p in cli.commands["users"].commands["add"].params if p.name == "role")
    assert isinstance(role_option.type, click.Choice) and tuple(role_option.type.choices) == typed_roles()
    assert set(typed_roles()) == set(Role) - LINK_ONLY
    check = next(str(c.sqltext) for c in Base.metadata.tables["users"].constraints
                 if c.name == "ck_users_role")
    assert check == f"role IN ({', '.join(repr(str(r)) for r in Role)})"


def access_table() -> str:
    """docs/access.md's table: one row per action, a column per role."""
    roles = list(Role)
    lines = ["| action | what | " + " | ".join(roles) + " |", "|---" * (len(roles) + 2) + "|"]
    for action in Action:
        marks = ["yes" if may(r, action) else "" for r in roles]
        lines.append(f"| `{action}` | {action.what} | " + " | ".join(marks) + " |")
    return "\n".join(lines)


def test_the_access_doc_shows_the_policy_table() -> None:
    assert access_table() in ACCESS_DOC.read_text(), (
        "docs/access.md's table differs from review/policy.py; paste this one:\n" + access_table())
