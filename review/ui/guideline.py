"""Showing a guideline version safely: Markdown without raw HTML, example images only from the
guideline's own folder.

Guideline text is written by admins but shown to every reviewer, so it is treated as untrusted:
HTML tags are stripped (script and style blocks with their content) before `st.markdown(...,
unsafe_allow_html=False)`, `javascript:` links are neutralised, and Markdown image links are not
handed to the browser at all: each is resolved against `guidelines/<assets_dir>/` and shown with
`st.image` from disk, or refused when it points anywhere else (another folder, a URL).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from review.guidelines import GUIDELINES_DIR
from review.ui.queries import GuidelineView

_BLOCK = re.compile(r"<\s*(script|style|iframe|object|embed|template)\b.*?(<\s*/\s*\1\s*>|\Z)", re.I | re.S)
_COMMENT = re.compile(r"<!--.*?(-->|\Z)", re.S)
_TAG = re.compile(r"</?[A-Za-z][^<>]*>|<![^<>]*>|<\?[^<>]*\?>")
_JS_LINK = re.compile(r"\]\(\s*(javascript|vbscript|data):[^)]*\)", re.I)
_IMAGE = re.compile(r"!\[([^\]]*)\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_ALLOWED_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}


def sanitize_markdown(text: str) -> str:
    """Markdown with every HTML tag removed and any other "<" escaped (never rendered as HTML)."""
    text = _BLOCK.sub("", text)
    text = _COMMENT.sub("", text)
    previous = None
    while previous != text:  # "<scr<script>ipt>" must not reassemble into a tag
        previous, text = text, _TAG.sub("", text)
    # What is left of "<" cannot start a tag any more; show it as a character.
    return _JS_LINK.sub("](#)", text).replace("<", "&lt;")


@dataclass(frozen=True)
class TextPart:
    markdown: str


@dataclass(frozen=True)
class ImagePart:
    alt: str
    link: str


def split_guideline(body_md: str) -> list[TextPart | ImagePart]:
    """The body as alternating text and image-link parts, in order."""
    parts: list[TextPart | ImagePart] = []
    pos = 0
    for match in _IMAGE.finditer(body_md):
        if match.start() > pos:
            parts.append(TextPart(body_md[pos:match.start()]))
        parts.append(ImagePart(match.group(1), match.group(2)))
        pos = match.end()
    if pos < len(body_md):
        parts.append(TextPart(body_md[pos:]))
    return parts


def assets_folder(assets_dir: str, root: Path = GUIDELINES_DIR) -> Path | None:
    """The guideline's folder; relative assets_dir values are inside `guidelines/`."""
    if not assets_dir:
        return None
    folder = Path(assets_dir)
    if not folder.is_absolute():
        folder = root / folder
    folder = folder.resolve()
    return folder if folder.is_dir() else None


def resolve_example(assets_dir: str, link: str, root: Path = GUIDELINES_DIR) -> Path | None:
    """The example image file for a relative link, or None when the link leaves the guideline's
    folder, is a URL or absolute path, is not an image type we show, or does not exist."""
    folder = assets_folder(assets_dir, root)
    if folder is None or not link or "://" in link or ":" in link.split("/")[0]:
        return None
    if link.startswith(("/", "\\")) or Path(link).is_absolute():
        return None
    target = (folder / link).resolve()
    if not target.is_relative_to(folder) or target.suffix.lower() not in _ALLOWED_SUFFIXES:
        return None
    return target if target.is_file() else None


def render_guideline(gv: GuidelineView) -> None:
    """The guideline's title, version and body with its example pictures."""
    st.caption(f"Guideline: {gv.label} · {sanitize_markdown(gv.title)}")
    for part in split_guideline(gv.body_md):
        if isinstance(part, TextPart):
            text = sanitize_markdown(part.markdown)
            if text.strip():
                st.markdown(text, unsafe_allow_html=False)
            continue
        path = resolve_example(gv.assets_dir, part.link)
        if path is None:
            link = sanitize_markdown(part.link).replace("`", "")
            st.caption(f"(Example image `{link}` not shown: it is not a picture in this guideline's folder.)")
        else:
            st.image(str(path), caption=sanitize_markdown(part.alt) or None)
