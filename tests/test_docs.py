"""The documentation follows the code (the way datasette keeps its documentation honest): the
command reference (docs/cli.md) shows every command `python -m review --help` defines, and every
`python -m review ...` line, `make` target and relative link that the README or a docs/ page shows
is real; the module map (docs/architecture.md) names every module of review/ and db/ and no
module that does not exist; the README's command index is `make help`'s."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from review.cli import cli

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
CLI_REFERENCE = ROOT / "docs" / "cli.md"
ARCHITECTURE = ROOT / "docs" / "architecture.md"
#: The README and every page under docs/: each is held to the same checks.
DOCS = [README, *sorted(ROOT.joinpath("docs").glob("*.md"))]


def doc_id(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()
#: `python -m review` and what follows it up to the end of the code, a comment or the line.
INVOCATION = re.compile(r"python -m review((?:[ \t]+[^\s`#]+)*)")


def command_paths(group: click.Group = cli,
                  prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], click.Command]:
    """Every runnable command by its words, e.g. ("users", "add"); groups are walked, not listed."""
    ctx = click.Context(group)
    out: dict[tuple[str, ...], click.Command] = {}
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if isinstance(command, click.Group):
            out.update(command_paths(command, (*prefix, name)))
        else:
            out[(*prefix, name)] = command
    return out


def shown_invocations(markdown: str) -> list[list[str]]:
    """The words of each `python -m review ...` the Markdown shows; an indented `[--option ...]`
    line right after one inside a code block continues it."""
    out: list[list[str]] = []
    in_code = False
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            in_code = not in_code
            continue
        if in_code and out and re.match(r"^\s+\[", line) and "python -m review" not in line:
            out[-1].extend(line.split("#")[0].split())
            continue
        out.extend(match.group(1).split() for match in INVOCATION.finditer(line))
    return out


def resolve(words: list[str]) -> tuple[tuple[str, ...], click.Command]:
    """The command the words name (its path and object); raises LookupError for an unknown one."""
    command: click.Command = cli
    path: tuple[str, ...] = ()
    for word in words:
        if not isinstance(command, click.Group) or word.startswith("-"):
            break
        sub = command.get_command(click.Context(command), word)
        if sub is None:
            raise LookupError(f"`python -m review {' '.join((*path, word))}`: no such command")
        command, path = sub, (*path, word)
    if isinstance(command, click.Group) and path:
        raise LookupError(f"`python -m review {' '.join(path)}` is a group, not a command")
    return path, command


def option_names(command: click.Command) -> set[str]:
    names = {"-h", "--help"}
    for param in command.params:
        if isinstance(param, click.Option):
            names.update(param.opts, param.secondary_opts)
    return names


def drift(markdown: str, *, complete: bool = True) -> list[str]:
    """Everything that differs between the Markdown's commands and the CLI's, one line each; with
    `complete`, a command the Markdown does not show is a difference too."""
    problems: list[str] = []
    shown: set[tuple[str, ...]] = set()
    for words in shown_invocations(markdown):
        try:
            path, command = resolve(words)
        except LookupError as exc:
            problems.append(str(exc))
            continue
        shown.add(path)
        for word in words:
            option = re.match(r"^\[?(--?[A-Za-z][\w-]*)", word)
            if option and option.group(1) not in option_names(command):
                problems.append(f"`python -m review {' '.join(path)}` has no option {option.group(1)}")
    if complete:
        problems += [f"`python -m review {' '.join(path)}` is not shown"
                     for path in sorted(command_paths().keys() - shown)]
    return problems


def test_the_command_reference_shows_every_command_and_only_real_ones():
    assert drift(CLI_REFERENCE.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_every_command_a_page_shows_is_real(doc):
    assert drift(doc.read_text(encoding="utf-8"), complete=False) == []


def test_the_check_sees_a_missing_command_an_unknown_one_and_a_renamed_option():
    reference = CLI_REFERENCE.read_text(encoding="utf-8")
    assert "python -m review users list\n" in reference
    problems = drift(reference.replace("python -m review users list\n", "")
                     + "\n```sh\npython -m review users purge NAME\n"
                       "python -m review studies create NAME\n        [--raters 3]\n```\n")
    assert problems == ["`python -m review users purge`: no such command",
                        "`python -m review studies create` has no option --raters",
                        "`python -m review users list` is not shown"]


@pytest.mark.parametrize("words", [["users"], ["studies"]])
def test_a_group_alone_is_not_a_command(words):
    with pytest.raises(LookupError, match="is a group"):
        resolve(words)


def module_map(markdown: str) -> dict[str, str]:
    """The module map (the code block under "## Module map") as sections: each top-level path (a
    line that starts in the first column) -> the text of its lines."""
    section = markdown.split("## Module map", 1)[1]
    block = section.split("```", 2)[1]
    sections: dict[str, str] = {}
    key = ""
    for line in block.splitlines():
        if line and not line[0].isspace():
            key = line.split()[0]
        sections[key] = sections.get(key, "") + "\n" + line
    return sections


def unmapped_modules(markdown: str) -> list[str]:
    """Modules of review/ and db/ the map does not name: each must appear under the longest
    top-level path that holds it, by file stem, with every folder on the way named `folder/`."""
    sections = module_map(markdown)
    missing = []
    for path in sorted([*ROOT.joinpath("review").rglob("*.py"), *ROOT.joinpath("db").rglob("*.py")]):
        rel = path.relative_to(ROOT).as_posix()
        if path.name == "__init__.py" or rel.startswith("db/migrations/"):
            continue
        tops = [k for k in sections if rel.startswith(k)]
        if not tops:
            missing.append(rel)
            continue
        top = max(tops, key=len)
        text, rest = sections[top], rel[len(top):].split("/")
        named = all(f"{folder}/" in text for folder in rest[:-1])
        if not (named and re.search(rf"(?<![\w.]){re.escape(path.stem)}\b", text)):
            missing.append(rel)
    return missing


def phantom_modules(markdown: str) -> list[str]:
    """What the map names that does not exist: a top-level path, or a `name.py` or `folder/`
    under a top-level path that holds no such file or folder."""
    phantoms = []
    for top, text in module_map(markdown).items():
        if not top:
            continue
        base = ROOT / top
        if not base.exists():
            phantoms.append(top)
            continue
        inside = list(base.rglob("*")) if base.is_dir() else [base]
        files = {p.name for p in inside if p.is_file()}
        folders = {p.name for p in inside if p.is_dir()}
        body = text.split(top, 1)[1]
        phantoms += [f"{top}: {name}" for name in re.findall(r"(?<![\w*.$/-])(\w+\.py)\b", body)
                     if name not in files]
        phantoms += [f"{top}: {name}/" for name in re.findall(r"(?<![\w.$/-])(\w+)/(?![\w/])", body)
                     if name not in folders]
    return phantoms


def test_module_map_names_every_module():
    assert unmapped_modules(ARCHITECTURE.read_text(encoding="utf-8")) == []


def test_module_map_names_no_module_that_does_not_exist():
    assert phantom_modules(ARCHITECTURE.read_text(encoding="utf-8")) == []


def test_module_map_check_catches_a_module_that_does_not_exist():
    text = ARCHITECTURE.read_text(encoding="utf-8")
    assert "  qa_stats.py " in text and "  restore/ " in text
    planted = text.replace("  qa_stats.py ", "  qa_statistics.py ").replace("  restore/ ", "  restorers/ ")
    assert set(phantom_modules(planted)) - set(phantom_modules(text)) == {
        "review/media/: restorers/", "review/analysis/: qa_statistics.py"}


def test_module_map_check_catches_a_missing_module():
    text = ARCHITECTURE.read_text(encoding="utf-8")
    before = set(unmapped_modules(text))
    assert set(unmapped_modules(text.replace("  qa_stats.py ", "  qa_statistics.py "))) - before == {
        "review/analysis/qa_stats.py"}
    assert "review/media/restore/sd15_checkpoint.py" in unmapped_modules(
        text.replace("sd15_checkpoint.py", "sd15_file.py"))


MAKEFILE = ROOT / "Makefile"


def make_targets() -> set[str]:
    """The Makefile's targets (rules whose name is a plain word, not a variable)."""
    return set(re.findall(r"^([a-z][\w-]*):(?!=)", MAKEFILE.read_text(encoding="utf-8"), re.M))


def shown_make_targets(markdown: str) -> list[str]:
    """The target of each `make ...` the Markdown shows in code: an inline span or a code block
    line that starts with `make` (variables such as `LOCK_ARGS=...` are skipped)."""
    lines = []
    in_code = False
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            in_code = not in_code
            continue
        if in_code:
            lines.append(line.strip())
        lines += re.findall(r"`([^`]+)`", line) if not in_code else []
    targets = []
    for code in lines:
        words = code.split("#")[0].split()
        if words[:1] == ["make"]:
            targets += [w for w in words[1:] if "=" not in w][:1]
    return targets


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_every_make_target_a_page_shows_exists(doc):
    assert [t for t in shown_make_targets(doc.read_text(encoding="utf-8"))
            if t not in make_targets()] == []


def test_the_make_target_check_sees_an_unknown_target():
    assert shown_make_targets("Run `make tests` or\n```sh\nmake lock LOCK_ARGS=--upgrade\n```\n") \
        == ["tests", "lock"]
    assert "tests" not in make_targets()


def help_targets() -> list[str]:
    """The targets `make help` lists, in its order."""
    return re.findall(r'@echo "make ([\w-]+)', MAKEFILE.read_text(encoding="utf-8"))


def readme_command_index(markdown: str) -> list[str]:
    """The targets of the README's command index (the table of `make` targets under "Commands")."""
    section = markdown.split("\n## Commands", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `make ([\w-]+)`", section, re.M)


def test_the_readme_command_index_is_make_help():
    assert readme_command_index(README.read_text(encoding="utf-8")) == help_targets()


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    """The anchors of the Markdown's headings (not of `#` lines inside code blocks)."""
    out = set()
    in_code = False
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            in_code = not in_code
        elif not in_code and (match := re.match(r"^#{1,6} (.+)", line)):
            out.add(slug(match.group(1)))
    return out


def broken_links(doc: Path, markdown: str) -> list[str]:
    """Each relative link (file, and heading anchor in a Markdown file) that leads nowhere."""
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", markdown):
        if re.match(r"^[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        file = (doc.parent / path).resolve() if path else doc
        if not file.exists():
            broken.append(target)
        elif anchor and file.suffix == ".md":
            text = markdown if file == doc else file.read_text(encoding="utf-8")
            if anchor not in anchors(text):
                broken.append(target)
    return broken


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_every_relative_link_resolves(doc):
    assert broken_links(doc, doc.read_text(encoding="utf-8")) == []


def test_the_link_check_sees_a_missing_file_and_a_missing_heading():
    text = ("[a](docs/cli.md) [b](docs/nope.md) [c](docs/cli.md#command-line) "
            "[d](docs/cli.md#no-such-heading) [e](#here) [f](#there) [g](https://example.org/x)\n"
            "## Here\n")
    assert broken_links(README, text) == ["docs/nope.md", "docs/cli.md#no-such-heading", "#there"]


FILE_SUFFIXES = {"db", "dump", "json", "csv", "log", "md", "png", "py"}


def dead_references(markdown: str) -> list[str]:
    """Paths (`review/...`, `db/...`, `bench/...`, `tests/...`, `guidelines/...`, globs allowed)
    and dotted names (`review.answer.sentences.answer_csv`) the Markdown names that do not exist;
    a dotted name is found in its module's source, without importing it."""
    dead = []
    for ref in re.findall(r"(?<![\w/.$<-])((?:review|db|bench|tests|guidelines)/[\w/.*-]*)", markdown):
        ref = ref.rstrip(".,/")
        if not list(ROOT.glob(ref)):
            dead.append(ref)
    for dotted in re.findall(r"(?<![\w./])(review(?:\.\w+)+)", markdown):
        parts = dotted.split(".")
        if parts[-1] in FILE_SUFFIXES:  # a file name such as review.dump, not a module
            continue
        for cut in range(len(parts), 0, -1):
            base = ROOT.joinpath(*parts[:cut])
            source = base.with_suffix(".py") if base.with_suffix(".py").is_file() else base / "__init__.py"
            if source.is_file() or base.is_dir():
                break
        rest = parts[cut:]
        if len(rest) > 1 or (rest and not (source.is_file() and re.search(
                rf"^\s*(?:def|class|async def)\s+{rest[0]}\b|^{rest[0]}\s*[:=]",
                source.read_text(encoding="utf-8"), re.M))):
            dead.append(dotted)
    return dead


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_every_path_and_name_a_page_names_exists(doc):
    assert dead_references(doc.read_text(encoding="utf-8")) == []


def test_the_reference_check_sees_a_moved_module_and_a_renamed_function():
    assert dead_references("`review/answer/boundary.py`, `tests/support*.py`, `review.dump`, "
                           "`review.answer.sentences.answer_csv`, `review.accounts.sessions`") == []
    assert dead_references("`review/analysis/boundary.py` and `review.analysis.export.answer_csv`, "
                           "`review.answer.sentences.answer_tsv`") == [
        "review/analysis/boundary.py", "review.analysis.export.answer_csv",
        "review.answer.sentences.answer_tsv"]
