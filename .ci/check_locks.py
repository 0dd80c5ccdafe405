"""Fail when a lock file no longer matches pyproject.toml (`make lint` runs this).

`make lock` writes two locks with pip-compile: requirements.lock (the base install: the app, the
test and dev extras, never torch) and requirements-sd15.lock (everything, the sd15 extra included,
constrained to the base lock's pins). Resolving again to compare (`pip-compile --dry-run`) takes a
minute and the network; this reads the files instead, in well under a second, offline:

- every requirement pyproject.toml declares for a lock is pinned there (`name==version`, hashed)
  and the pin satisfies its specifier;
- every package the lock says comes from pyproject.toml (`# via fidelity-review-lab
  (pyproject.toml)`) is still declared there: a removed or moved dependency shows;
- the base lock holds none of the sd15 extra's packages, and each of its pins is the full lock's;
- requirements-nodeps.lock pins each package exactly, with a hash.

Transitive pins are pip-compile's to choose and are not re-checked. Usage:
`python .ci/check_locks.py [ROOT]` (ROOT defaults to the repository); exit status 1 with one line per
mismatch, 0 when the locks match.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

# Which extras each lock holds (the base lock: every extra except these).
BASE_LOCK = "requirements.lock"
FULL_LOCK = "requirements-sd15.lock"
NODEPS_LOCK = "requirements-nodeps.lock"
EXTRAS_ONLY_IN_FULL = ("sd15",)
VIA_PYPROJECT = "fidelity-review-lab (pyproject.toml)"

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")


def read_lock(path: Path) -> tuple[dict[str, Version], dict[str, bool], set[str]]:
    """The pins of a pip-compile lock, whether each has a hash, and the packages annotated as
    coming straight from pyproject.toml."""
    pins: dict[str, Version] = {}
    hashed: dict[str, bool] = {}
    from_pyproject: set[str] = set()
    current = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        match = PIN.match(line)
        if match:
            current = canonicalize_name(match.group(1))
            pins[current] = Version(match.group(2))
            hashed[current] = "--hash=" in line
        elif current and "--hash=sha256:" in line:
            hashed[current] = True
        elif current and line.strip().lstrip("#").strip().removeprefix("via ").strip() == VIA_PYPROJECT:
            from_pyproject.add(current)
    return pins, hashed, from_pyproject


def declared(pyproject: dict, extras: list[str]) -> list[Requirement]:
    """The project's requirements with the given extras, those whose marker holds here."""
    project = pyproject["project"]
    texts = list(project.get("dependencies", []))
    for extra in extras:
        texts += project.get("optional-dependencies", {}).get(extra, [])
    reqs = [Requirement(text) for text in texts]
    return [req for req in reqs if req.marker is None or req.marker.evaluate({"extra": ""})]


def check_lock(name: str, pins: dict[str, Version], hashed: dict[str, bool], from_pyproject: set[str],
               reqs: list[Requirement]) -> list[str]:
    """One line per way the lock differs from the requirements pyproject.toml declares for it."""
    problems = []
    wanted = {canonicalize_name(req.name) for req in reqs}
    for req in reqs:
        key = canonicalize_name(req.name)
        if key not in pins:
            problems.append(f"{name}: {req} is declared in pyproject.toml but not pinned")
        elif not req.specifier.contains(pins[key], prereleases=True):
            problems.append(f"{name}: {key}=={pins[key]} does not satisfy {req} from pyproject.toml")
    for key in sorted(from_pyproject - wanted):
        problems.append(f"{name}: {key} comes from pyproject.toml by the lock, which no longer declares it")
    for key in sorted(k for k, has in hashed.items() if not has):
        problems.append(f"{name}: {key} has no hash")
    return problems


def check(root: Path) -> list[str]:
    """Every mismatch between pyproject.toml and the three lock files under root."""
    pyproject = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    all_extras = sorted(pyproject["project"].get("optional-dependencies", {}))
    base_extras = [extra for extra in all_extras if extra not in EXTRAS_ONLY_IN_FULL]
    base_pins, base_hashed, base_direct = read_lock(root / BASE_LOCK)
    full_pins, full_hashed, full_direct = read_lock(root / FULL_LOCK)
    problems = check_lock(BASE_LOCK, base_pins, base_hashed, base_direct, declared(pyproject, base_extras))
    problems += check_lock(FULL_LOCK, full_pins, full_hashed, full_direct, declared(pyproject, all_extras))
    for req in declared(pyproject, list(EXTRAS_ONLY_IN_FULL)):
        if req not in declared(pyproject, base_extras) and canonicalize_name(req.name) in base_pins:
            problems.append(f"{BASE_LOCK}: {req.name} belongs to the full lock only")
    for key, version in sorted(base_pins.items()):
        if full_pins.get(key) != version:
            problems.append(f"{FULL_LOCK}: {key} is {full_pins.get(key)}, the base lock pins {version}")
    _, nodeps_hashed, _ = read_lock(root / NODEPS_LOCK)
    problems += [f"{NODEPS_LOCK}: {key} has no hash" for key, has in nodeps_hashed.items() if not has]
    return problems


def main(argv: list[str]) -> int:
    root = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent.parent
    problems = check(root)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print("The locks no longer match pyproject.toml: run `make lock` and commit the locks.",
              file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
