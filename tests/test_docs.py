"""The README's command reference follows `python -m review --help`: every command the CLI defines
is shown, and every `python -m review ...` line the README shows names a real command and real
options (the way datasette keeps its documentation honest)."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from review.cli import cli

README = Path(__file__).resolve().parent.parent / "README.md"
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


def drift(markdown: str) -> list[str]:
    """Everything that differs between the Markdown's commands and the CLI's, one line each."""
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
    problems += [f"`python -m review {' '.join(path)}` is not in the README"
                 for path in sorted(command_paths().keys() - shown)]
    return problems


def test_the_readme_shows_every_command_and_only_real_ones():
    assert drift(README.read_text(encoding="utf-8")) == []


def test_the_check_sees_a_missing_command_an_unknown_one_and_a_renamed_option():
    readme = README.read_text(encoding="utf-8")
    assert "python -m review users list\n" in readme
    problems = drift(readme.replace("python -m review users list\n", "")
                     + "\n```sh\npython -m review users purge NAME\n"
                       "python -m review studies create NAME\n        [--raters 3]\n```\n")
    assert problems == ["`python -m review users purge`: no such command",
                        "`python -m review studies create` has no option --raters",
                        "`python -m review users list` is not in the README"]


@pytest.mark.parametrize("words", [["users"], ["studies"]])
def test_a_group_alone_is_not_a_command(words):
    with pytest.raises(LookupError, match="is a group"):
        resolve(words)


ROOT = README.parent


def module_map(markdown: str) -> dict[str, str]:
    """The README's module map (the code block under "How it fits together") as sections: each
    top-level path (a line that starts in the first column) -> the text of its lines."""
    section = markdown.split("## How it fits together", 1)[1]
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


def test_module_map_names_every_module():
    assert unmapped_modules(README.read_text()) == []


def test_module_map_check_catches_a_missing_module():
    text = README.read_text()
    assert unmapped_modules(text.replace("  qa_stats.py ", "  qa_statistics.py ")) == [
        "review/analysis/qa_stats.py"]
    assert "review/media/restore/sd15_checkpoint.py" in unmapped_modules(
        text.replace("sd15_checkpoint.py", "sd15_file.py"))
