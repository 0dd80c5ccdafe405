"""The performance tricks live behind the named, documented functions of review/performance.py:
nothing else in review/ or db/ turns the garbage collector off, leaves the process with os._exit
or starts its own thread pool, so every trick is found by name and costed in one docstring."""

from __future__ import annotations

import ast
import gc
from pathlib import Path

import pytest

from review.performance import running_beside, without_gc

ROOT = Path(__file__).resolve().parent.parent
HOME = "review/performance.py"

#: Calls that are a performance trick (matched on the called name as written in the source).
TRICKS = ("gc.disable", "gc.freeze", "os._exit", "ThreadPoolExecutor", "ProcessPoolExecutor",
          "threading.Thread", "Thread", "multiprocessing.Pool")

#: (path, call) -> why this one is no performance trick.
NOT_TRICKS = {
    ("review/generation/workers.py", "threading.Thread"):
        "the job lease's heartbeat: keeps a slow item leased while its worker lives",
}


def _called_name(node: ast.expr) -> str:
    """`a.b.c` for a call of a.b.c, `` for anything not a plain dotted name."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return ""
    return ".".join([node.id, *reversed(parts)])


def tricks_in(source: str, path: str) -> list[str]:
    """`path:line call` for each trick called in the source outside review/performance.py."""
    if path == HOME:
        return []
    found = []
    for node in ast.walk(ast.parse(source, filename=path)):
        if isinstance(node, ast.Call):
            name = _called_name(node.func)
            if any(name == t or name.endswith("." + t) for t in TRICKS) and (path, name) not in NOT_TRICKS:
                found.append(f"{path}:{node.lineno} {name}")
    return found


def test_no_performance_trick_outside_its_named_function() -> None:
    found = []
    for folder in ("review", "db"):
        for file in sorted((ROOT / folder).rglob("*.py")):
            rel = file.relative_to(ROOT).as_posix()
            found += tricks_in(file.read_text(encoding="utf-8"), rel)
    assert found == []


@pytest.mark.parametrize("planted", [
    "import gc\ngc.disable()\n",
    "import os\nos._exit(0)\n",
    "from concurrent.futures import ThreadPoolExecutor\nwith ThreadPoolExecutor(2) as p:\n    pass\n",
    "import concurrent.futures\nconcurrent.futures.ThreadPoolExecutor()\n",
    "import threading\nthreading.Thread(target=print).start()\n",
])
def test_a_planted_trick_is_found(planted: str) -> None:
    assert len(tricks_in(planted, "review/analysis/report.py")) == 1
    assert tricks_in(planted, HOME) == []


def test_without_gc_restores_the_collector_even_when_the_block_raises() -> None:
    assert gc.isenabled()
    with pytest.raises(RuntimeError), without_gc():
        assert not gc.isenabled()
        raise RuntimeError("inside")
    assert gc.isenabled()
    gc.disable()
    try:
        with without_gc():
            pass
        assert not gc.isenabled()  # it was off before: it stays off
    finally:
        gc.enable()


def test_running_beside_returns_the_result_and_its_exception() -> None:
    with running_beside(sum, [1, 2, 3]) as running:
        assert running.result() == 6
    with running_beside(int, "not a number") as running, pytest.raises(ValueError):
        running.result()
