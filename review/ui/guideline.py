"""Showing a guideline version safely, the same way on every page that shows one.

Guideline text is written by admins but shown to every reviewer, so it is treated as untrusted.
The rules live in `review.labeling.guidelines.render`: `render_safe_markdown` escapes raw HTML and
neutralises non-http(s)/mailto links (checked with a real CommonMark parse) before
`st.markdown(..., unsafe_allow_html=False)`; Markdown image links are never handed to the browser:
`split_images` takes them out of the text and `resolve_image` finds each file strictly inside
the guideline's own folder, or says why it is not shown (a URL, another folder, a missing file).
"""

from __future__ import annotations

import streamlit as st

from review.labeling.guidelines.authoring import GuidelineError
from review.labeling.guidelines.files import GUIDELINES_DIR, authored_dir
from review.labeling.guidelines.render import render_safe_markdown, resolve_image, split_images
from review.labeling.views import GuidelineView
from review.ui.common import get_lab
from review.ui.display import inert


def render_body(gv: GuidelineView) -> None:
    """The guideline's body: safe Markdown, pictures only from its own folder (the lab's own
    versions are found in this lab's data folder, wherever it is now)."""
    lab = get_lab()
    mine = authored_dir(lab.settings.data_dir)
    for kind, part in split_images(gv.body_md):
        if kind == "text":
            if part.strip():
                st.markdown(render_safe_markdown(part), unsafe_allow_html=False)
            continue
        try:
            st.image(str(resolve_image(gv, part, GUIDELINES_DIR, mine)))
        except GuidelineError as exc:
            st.caption(f"(Example image not shown: {inert(exc)})")


def render_guideline(gv: GuidelineView) -> None:
    """What a reviewer opens with G: label, title and body."""
    st.caption(f"Guideline: {inert(gv.label)} · {inert(gv.title)}")  # plain text, not Markdown
    render_body(gv)
