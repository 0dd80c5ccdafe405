"""Images served to the browser pre-sized: display-size JPEGs, never a PNG re-encoded per run.

`st.image` re-encodes a PIL image on every run. Here the image store keeps a display-size JPEG
of every stored image (made when it is stored, or on first view: `ImageStore.display_jpeg`), this
process keeps the bytes in memory (cache key: the image's sha256 and the display size), and
`st.image` gets them as a `data:` URL, which it passes through untouched. A data URL travels
inside the rerun's message, so the browser paints the next item without a second HTTP round
trip for each image (measured by bench/rating_loop.py). Most pages show the 512 px copy; the
reviewer's viewer (review/ui/viewer.py) picks 512, 1024 or the stored size (`display_copy`).
"""

from __future__ import annotations

import base64
import io
import re
from dataclasses import dataclass

import streamlit as st
from PIL import Image

from review.labeling.views import ImageRef
from review.media.store import DISPLAY_MAX_SIDE, ImageStore

#: Characters that make Markdown anywhere in a line (CommonMark, GitHub's extensions, Streamlit's
#: formulas); a backslash makes each literal. "_" only makes emphasis beside a non-alphanumeric
#: character, so "REVIEW_SD15_PATH" stays as it is; "(", "!", "{" and "^" only act after "[".
_ACTIVE = re.compile(r"([\\`*\[\]|~$]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9]))")
#: "&", "<" and ">" as character references, so no tag, entity or autolink survives even in the
#: Markdown source.
_REFERENCES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
#: Characters that make Markdown only at the start of a line (headings, lists, rules, setext
#: underlines), escaped there; "1." starts an ordered list.
_LINE_START = re.compile(r"(^|\n)([ \t]*)(?:([#+\-=.])|(\d+)([.]))", re.MULTILINE)
#: What Streamlit's renderer finds in text after the escapes are resolved: bare URLs, "www." and
#: e-mail addresses (GFM autolinks), directives (":red[...]"), emoji and ":material/...:" icons.
#: A word joiner (U+2060, invisible and zero-width) after a colon or "@" that a name follows, and
#: between "www" and its dot, leaves them text.
_AFTER_ESCAPES = re.compile(r"[:@](?=[A-Za-z0-9/])|(?i:www)(?=\.)")
WORD_JOINER = "\u2060"


def inert(text: object) -> str:
    """User text (study, file, display and user names, QA reasons, notes, guideline titles,
    restorer names from imported files) made safe for every element that renders Markdown
    (st.markdown, st.caption, st.info and the other alerts, headers, widget labels, radio
    options, expander and tab labels, help texts): the characters that would make Markdown are
    backslash-escaped, so no link, emphasis, HTML tag, heading, list, table, directive or formula
    is produced, and bare URLs, e-mail addresses, emoji and icon codes are not turned into
    anything. It reads the same, and a name of letters, digits, spaces, quotes, "-", ".", "(",
    ")", ",", ";", "!" and "?" inside a line is unchanged. Not for plain-text elements (selectbox
    and multiselect options, st.text, st.code, dataframe cells), which show text as it is."""
    escaped = re.sub(r"[&<>]", lambda m: _REFERENCES[m[0]], str(text))
    escaped = _ACTIVE.sub(r"\\\1", escaped)
    escaped = _LINE_START.sub(lambda m: m[1] + m[2] + ("\\" + m[3] if m[3] else m[4] + "\\" + m[5]),
                              escaped)
    return _AFTER_ESCAPES.sub(lambda m: m[0] + WORD_JOINER, escaped)


@st.cache_data(max_entries=2048, show_spinner=False)
def _jpeg(sha256: str, max_side: int, _store: ImageStore, _relpath: str) -> bytes:
    # Only sha256 and max_side form the key (underscore arguments are not hashed).
    return _store.display_jpeg(_relpath, max_side)


def display_jpeg(store: ImageStore, ref: ImageRef, max_side: int = DISPLAY_MAX_SIDE) -> bytes:
    """JPEG bytes of a stored image at display size, from the process-wide cache."""
    return _jpeg(ref.sha256, max_side, store, ref.relpath)


@st.cache_data(max_entries=2048, show_spinner=False)
def _data_url(sha256: str, max_side: int, _store: ImageStore, _relpath: str) -> str:
    data = _jpeg(sha256, max_side, _store, _relpath)
    return "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")


@dataclass(frozen=True)
class DisplayCopy:
    """A display JPEG as the browser gets it: a data URL and its pixel size."""

    url: str
    width: int
    height: int


@st.cache_data(max_entries=2048, show_spinner=False)
def _copy(sha256: str, side: int, _store: ImageStore, _relpath: str) -> DisplayCopy:
    data = _jpeg(sha256, side, _store, _relpath)
    with Image.open(io.BytesIO(data), formats=["JPEG"]) as im:  # our own JPEG: the header only
        width, height = im.size
    return DisplayCopy("data:image/jpeg;base64," + base64.b64encode(data).decode("ascii"), width, height)


def display_copy(store: ImageStore, ref: ImageRef, side: int) -> DisplayCopy:
    """The display copy of a stored image at `side` (a DISPLAY_SIDES entry or DISPLAY_FULL),
    from the process-wide cache."""
    return _copy(ref.sha256, side, store, ref.relpath)


def show_images(store: ImageStore, panels: list[tuple[str, ImageRef]],
                max_side: int = DISPLAY_MAX_SIDE) -> None:
    """Stored images side by side, captioned only with their role (never a file name or hash:
    reviewers stay blind)."""
    with st.container(horizontal=True, gap="medium"):
        for title, ref in panels:
            st.image(_data_url(ref.sha256, max_side, store, ref.relpath), caption=title)
