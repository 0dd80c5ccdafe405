"""User text is shown as text: a study name, a display name, an uploaded file's name and a QA
reason holding Markdown link, emphasis and HTML come out on every page as the same characters,
never as a link or markup (review.ui.display.inert at every element that renders Markdown)."""

from __future__ import annotations

import html as html_lib
import io
import re

import numpy as np
import pytest
from markdown_it import MarkdownIt
from PIL import Image

from review.ui.display import WORD_JOINER, inert
from tests.support import plant_user_text
from tests.support_app import app, login, page_app, page_user

PLANT = "[click](http://evil.example) **bold** <b>x</b> www.evil.example x@evil.example :red[hi]"
#: What a planted string must never become once Markdown is rendered.
MARKUP = re.compile(r"<(a|strong|em|b|h\d|li|img|code)\b")
#: GitHub-flavoured autolinks Streamlit's renderer finds in text after escapes (bare URL, www.,
#: e-mail): the rendered text must hold none of them.
AUTOLINK = re.compile(r"https?://|www\.|@[\w-]+\.", re.IGNORECASE)
COMMONMARK = MarkdownIt("commonmark")


@pytest.mark.parametrize("text", [PLANT, "# heading", "- item", "1. first", "a\n===", "`code`",
                                  "![img](http://x/y.png)", "<script>alert(1)</script>", "&amp; &lt;",
                                  ":material/home: :smile:", "$x^2$", "~~gone~~", "| a | b |\n|---|---|",
                                  "> quoted", "***", "line one\n\n- two", "back\\slash *"])
def test_inert_text_parses_to_nothing_but_its_own_characters(text: str) -> None:
    html = COMMONMARK.render(inert(text))
    assert not MARKUP.search(html), html
    assert not any(tag in html for tag in ("<ul", "<ol", "<blockquote", "<hr", "<table", "<pre")), html
    plain = html_lib.unescape(re.sub(r"<[^>]+>", "", html))
    assert plain.replace(WORD_JOINER, "").split() == text.split()  # it reads the same
    assert not AUTOLINK.search(plain)  # nothing left for GFM's autolinks to find


def test_plain_names_are_unchanged() -> None:
    for name in ("Portraits 2024", "O'Brien", "page-exp", "fid v3", "face.png", "r1"):
        assert inert(name) == name


def _markdown_texts(at) -> list[tuple[str, str]]:  # noqa: ANN001
    """(element type, text) for every field the browser renders as Markdown: bodies of markdown,
    captions, alerts and headings; labels of widgets, expanders and tabs; radio options; help."""
    out: list[tuple[str, str]] = []

    def walk(node) -> None:  # noqa: ANN001
        proto = getattr(node, "proto", None)
        kind = getattr(node, "type", type(node).__name__)
        if proto is not None and hasattr(proto, "DESCRIPTOR"):
            fields = proto.DESCRIPTOR.fields_by_name
            for name in ("body", "label", "help"):
                if name in fields and isinstance(getattr(proto, name), str) and getattr(proto, name):
                    if kind in ("code", "text", "json"):
                        continue  # shown as plain text
                    out.append((kind, getattr(proto, name)))
            if kind == "radio":
                out.extend((kind, o) for o in proto.options)
            if "expandable" in fields and proto.HasField("expandable"):
                out.append(("expander", proto.expandable.label))
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at._tree)
    return out


def _assert_inert(at, expected: list[str]) -> None:  # noqa: ANN001
    """No Markdown-rendered text of the page turns planted text into a link or markup, and each
    `expected` (inert) text is shown."""
    shown = _markdown_texts(at)
    for kind, text in shown:
        if "evil" not in text:
            continue
        html = COMMONMARK.render(text)
        assert "<a " not in html and "<b>" not in html and "<strong>bold" not in html, (kind, html)
        assert not AUTOLINK.search(html_lib.unescape(re.sub(r"<[^>]+>", "", html))), (kind, html)
        for raw in ("[click](http", "**bold**", "<b>x</b>", ":red["):
            assert raw not in text, (kind, text)
    joined = "\n".join(t for _, t in shown)
    for piece in expected:
        assert piece in joined, (piece, [t for _, t in shown if "evil" in t])


def _png(seed: int) -> bytes:
    arr = (np.random.default_rng(seed).random((40, 56, 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.slow
def test_planted_markdown_in_names_and_reasons_is_shown_as_text(lab) -> None:
    study_name = f"S {PLANT}"
    plant_user_text(lab, PLANT, study_name)

    # the reviewer: her display name in the sidebar, the study's name at the end of her queue,
    # QA's reason in the feedback
    at = login(app().run(), "alice")
    assert not at.exception, [e.value for e in at.exception]
    _assert_inert(at, [f"**Alice {inert(PLANT)}**", f"“{inert(study_name)}”",
                       f". {inert(f'Wrong: {PLANT}')}"])

    # the admin: the study's name as a heading on the Studies page
    at = login(app().run(), "admin")
    assert not at.exception, [e.value for e in at.exception]
    _assert_inert(at, [inert(study_name)])

    # an uploaded file's name: the content question's label and the message after adding it
    at = page_app("generate_page", page_user("admin")).run()
    file_name = f"{PLANT}.png"
    at.file_uploader(key="gen_upload").set_value([(file_name, _png(3), "image/png")]).run()
    at.selectbox(key=f"gen_content_0_{file_name}").select("scene")
    at.text_input(key="gen_licence").set_value("own photo")
    at.button(key="gen_add").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.success) == 1
    _assert_inert(at, [inert(file_name), f"{inert(file_name)}: added as source"])
