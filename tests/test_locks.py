"""The locks match pyproject.toml, and the check `make lint` runs (.ci/check_locks.py) sees each
kind of drift planted in a copy: a dependency added, removed or re-specified without `make lock`,
torch in the base lock, a pin without its hash."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHECK = ROOT / ".ci" / "check_locks.py"
FILES = ("pyproject.toml", "requirements.lock", "requirements-sd15.lock", "requirements-nodeps.lock")


def _check(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(CHECK), str(root)], capture_output=True, text=True,
                          timeout=60)


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.count(old) >= 1, old
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_the_locks_match_pyproject() -> None:
    done = _check(ROOT)
    assert done.returncode == 0, done.stderr


def test_the_base_lock_has_no_torch_and_the_full_one_its_cpu_wheel() -> None:
    base = (ROOT / "requirements.lock").read_text(encoding="utf-8")
    full = (ROOT / "requirements-sd15.lock").read_text(encoding="utf-8")
    for name in ("torch", "diffusers", "transformers", "safetensors"):
        assert not re.search(rf"^{name}==", base, re.M) and re.search(rf"^{name}==", full, re.M)
    assert re.search(r"^torch==2\.13\.0\+cpu \\$", full, re.M)


def _add_dependency(root: Path) -> None:
    _edit(root / "pyproject.toml", '"click~=8.5",', '"click~=8.5",\n    "tabulate~=0.9",')


def _move_a_specifier(root: Path) -> None:
    _edit(root / "pyproject.toml", '"numpy~=2.4"', '"numpy~=2.5"')


def _remove_dependency(root: Path) -> None:
    _edit(root / "pyproject.toml", '    "orjson~=3.13",\n', "")


def _move_to_another_extra(root: Path) -> None:
    _edit(root / "pyproject.toml", '    "hypothesis~=6.170",\n', "")
    _edit(root / "pyproject.toml", '"diffusers~=0.42.1",', '"diffusers~=0.42.1",\n    "hypothesis~=6.170",')


def _torch_in_the_base_lock(root: Path) -> None:
    full = (root / "requirements-sd15.lock").read_text(encoding="utf-8")
    torch = re.search(r"^torch==.*?(?=^\S)", full, re.M | re.S)
    assert torch is not None
    with (root / "requirements.lock").open("a", encoding="utf-8") as lock:
        lock.write(torch.group(0))


def _drop_a_hash(root: Path) -> None:
    lock = root / "requirements.lock"
    lock.write_text(re.sub(r"^(click==\S+) \\\n(    --hash=\S+ \\\n)*    --hash=\S+\n", r"\1\n",
                           lock.read_text(encoding="utf-8"), count=1, flags=re.M), encoding="utf-8")


@pytest.mark.parametrize("plant, says", [
    (_add_dependency, "tabulate~=0.9 is declared in pyproject.toml but not pinned"),
    (_move_a_specifier, "numpy==2.4.6 does not satisfy numpy~=2.5"),
    (_remove_dependency, "orjson comes from pyproject.toml by the lock, which no longer declares it"),
    (_move_to_another_extra, "requirements.lock: hypothesis comes from pyproject.toml"),
    (_torch_in_the_base_lock, "requirements.lock: torch belongs to the full lock only"),
    (_drop_a_hash, "requirements.lock: click has no hash"),
])
def test_a_planted_mismatch_fails_the_check(tmp_path: Path, plant: Callable[[Path], None],
                                            says: str) -> None:
    for name in FILES:
        shutil.copy(ROOT / name, tmp_path / name)
    assert _check(tmp_path).returncode == 0
    plant(tmp_path)
    done = _check(tmp_path)
    assert done.returncode == 1 and says in done.stderr, done.stderr
    assert "run `make lock`" in done.stderr
