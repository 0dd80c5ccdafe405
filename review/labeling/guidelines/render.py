"""Showing guideline text safely: Markdown rendered without raw HTML or script-capable links, and
example images confined to the guideline's own folder.

Guideline text reaches every reviewer's browser, so it is treated as untrusted: raw HTML is
escaped, script-capable link schemes are neutralised, and images are only ever files inside the
guideline's own folder. The rating page and the authoring preview both render through here.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote

from markdown_it import MarkdownIt

from db.models import GuidelineVersion
from review.labeling.guidelines.files import GUIDELINES_DIR, GuidelineError, GuidelineFile, version_folder

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
# ![alt](link "title") with an optional <...> around the link (CommonMark inline image).
_IMAGE_LINK = re.compile(r"!\[([^\]]*)\]\(\s*<?([^)\s>]*)>?(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)")
_LINK_TARGET = re.compile(r"(\]\(\s*<?)([^)\s>]*)")
_REF_DEF = re.compile(r"^( {0,3}\[[^\]]+\]:[ \t]*<?)(\S*?)(?=>|\s|$)", re.M)
SAFE_SCHEMES = ("http", "https", "mailto")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.S)


def _code_lines(md: str) -> set[int]:
    """0-based line numbers inside fenced or indented code blocks (markdown-it's own parse)."""
    lines: set[int] = set()
    for token in MarkdownIt("commonmark").parse(md):
        if token.type in ("fence", "code_block") and token.map:
            lines.update(range(token.map[0], token.map[1]))
    return lines


def _unsafe_url(url: str) -> bool:
    """True for a link target whose scheme is not http, https or mailto (entities and percent
    escapes decoded first, control characters and spaces dropped, as browsers do)."""
    decoded = unquote(html.unescape(url))
    decoded = "".join(ch for ch in decoded if ch > " ").lower()
    scheme = re.match(r"^([a-z][a-z0-9+.-]*):", decoded)
    return scheme is not None and scheme.group(1) not in SAFE_SCHEMES


def _neutralise_links(text: str) -> str:
    text = _LINK_TARGET.sub(lambda m: m.group(1) + ("#" if _unsafe_url(m.group(2)) else m.group(2)), text)
    return _REF_DEF.sub(lambda m: m.group(1) + ("#" if _unsafe_url(m.group(2)) else m.group(2)), text)


def _escape_plain(text: str) -> str:
    return _neutralise_links(text).replace("<", "&lt;")


def _escape_text(line: str) -> str:
    """Escape '<' outside inline code spans and neutralise dangerous link targets."""
    out, pos = [], 0
    for match in _CODE_SPAN.finditer(line):
        out.append(_escape_plain(line[pos:match.start()]))
        out.append(match.group(0))  # code spans are shown literally, never as HTML
        pos = match.end()
    out.append(_escape_plain(line[pos:]))
    return "".join(out)


class _SeeAllLinks(MarkdownIt):
    """A CommonMark parser that keeps every link, including ones it would drop, so nothing hides."""

    def validateLink(self, url: str) -> bool:
        return True


def _audit_parser() -> MarkdownIt:
    """A CommonMark parser that recognises raw HTML and keeps every link, so nothing hides."""
    return _SeeAllLinks("commonmark", {"html": True})


def html_or_unsafe_links(md: str) -> list[str]:
    """What a CommonMark parser finds in `md` that must not reach a browser: raw HTML and link or
    image targets with a script-capable scheme. Empty for safe Markdown."""
    found: list[str] = []
    stack = list(_audit_parser().parse(md))
    while stack:
        token = stack.pop()
        stack.extend(token.children or [])
        if token.type in ("html_block", "html_inline"):
            found.append(token.content.strip())
        for attr in ("href", "src"):
            url = token.attrGet(attr)
            if isinstance(url, str) and _unsafe_url(url):
                found.append(url)
    return found


def render_safe_markdown(md: str) -> str:
    """The guideline Markdown with raw HTML escaped (shown as text, never parsed as tags) and
    link targets with schemes other than http/https/mailto replaced by '#'. Code blocks and code
    spans stay as they are (Markdown shows them literally). The result is checked with a real
    CommonMark parse; if anything still parses as HTML or a bad link (odd nesting of backticks,
    escapes), every '<' and '[' is escaped instead. Meant for
    `st.markdown(..., unsafe_allow_html=False)`, which is a second line of defence."""
    code = _code_lines(md)
    lines = md.split("\n")
    out = "\n".join(line if i in code else _escape_text(line) for i, line in enumerate(lines))
    if html_or_unsafe_links(out):
        out = md.replace("<", "&lt;").replace("[", "\\[")
    return out


# ---------------------------------------------------------------------------------------------
# Example images


def image_links(md: str) -> list[str]:
    """The targets of Markdown image links, in order."""
    return [m.group(2) for m in _IMAGE_LINK.finditer(md)]


def split_images(md: str) -> list[tuple[str, str]]:
    """The body as ("text", markdown) and ("image", link) parts in order, so a page can render
    text with st.markdown and pictures from disk with st.image."""
    parts: list[tuple[str, str]] = []
    pos = 0
    for match in _IMAGE_LINK.finditer(md):
        if match.start() > pos:
            parts.append(("text", md[pos:match.start()]))
        parts.append(("image", match.group(2)))
        pos = match.end()
    if pos < len(md):
        parts.append(("text", md[pos:]))
    return parts


def check_image_link(link: str) -> None:
    """Refuse image links that are URLs, absolute, climb out with '..' or are not pictures."""
    if not link or "://" in link or link.startswith("//") or re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", link):
        raise GuidelineError(f"Image {link!r}: only files in the guideline's folder are shown, "
                                  "not URLs.")
    if link.startswith(("/", "\\")) or Path(link).is_absolute() or re.match(r"^[A-Za-z]:", link):
        raise GuidelineError(f"Image {link!r}: use a path relative to the guideline's folder.")
    if ".." in re.split(r"[\\/]", link):
        raise GuidelineError(f"Image {link!r}: '..' is not allowed in image paths.")
    if Path(link).suffix.lower() not in IMAGE_SUFFIXES:
        raise GuidelineError(f"Image {link!r}: only {', '.join(IMAGE_SUFFIXES)} files are shown.")


class HasAssetsDir(Protocol):
    """A guideline version as stored (GuidelineVersion) or as a page holds it (GuidelineView)."""

    @property
    def assets_dir(self) -> str: ...


def guideline_folder(gv: HasAssetsDir | GuidelineFile, root: Path = GUIDELINES_DIR,
                     authored: Path | None = None) -> Path | None:
    """The version's own folder, if it exists: shipped versions under `root`, the lab's own under
    `authored` (`authored_dir(data_dir)`), by `files.version_folder`'s rule."""
    folder = gv.folder if isinstance(gv, GuidelineFile) else version_folder(gv.assets_dir, authored, root)
    if folder is None:
        return None
    folder = folder.resolve()
    return folder if folder.is_dir() else None


def resolve_image(gv: HasAssetsDir | GuidelineFile, link: str, root: Path = GUIDELINES_DIR,
                  authored: Path | None = None) -> Path:
    """The file an image link points to, strictly inside the guideline's folder (symlinks
    resolved); GuidelineError for URLs, absolute paths, '..', other types or missing files.
    `authored` is the lab's own guidelines folder, where its versions' images are."""
    check_image_link(link)
    folder = guideline_folder(gv, root, authored)
    if folder is None:
        raise GuidelineError("This guideline version has no folder on disk, so it has no images.")
    target = (folder / link).resolve()
    if not target.is_relative_to(folder):
        raise GuidelineError(f"Image {link!r} points outside the guideline's folder.")
    if not target.is_file():
        raise GuidelineError(f"Image {link!r} does not exist in {folder.name}/.")
    return target


def guideline_images(gv: GuidelineVersion | GuidelineFile, root: Path = GUIDELINES_DIR,
                     authored: Path | None = None) -> list[Path]:
    """Every image the guideline links to, resolved inside its own folder; raises on the first
    link that is a URL, absolute, uses '..', escapes via a symlink, or is missing."""
    return [resolve_image(gv, link, root, authored) for link in image_links(gv.body_md)]
