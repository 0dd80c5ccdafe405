"""The AppTest harness: the whole app (log in as a user of build_study), one page on its own for
a given user, and what a page shows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from streamlit.testing.v1 import AppTest

from review.ui.common import SessionUser
from tests.support import PASSWORD

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "streamlit_app.py")
TIMEOUT = 30


def app() -> AppTest:
    return AppTest.from_file(APP, default_timeout=TIMEOUT)


def page_user(role: str, uid: int = 1, username: str = "boss") -> SessionUser:
    """The signed-in user a page is rendered for (by default "boss", id 1)."""
    return SessionUser(id=uid, username=username, role=role, display_name=username.title())


def page_app(module: str, user: SessionUser, **render_kwargs: Any) -> AppTest:
    """`review.ui.<module>`'s render(lab, user, **render_kwargs) on its own, without login or
    navigation; the lab is opened from REVIEW_DATA_DIR (the `settings` fixture sets it)."""
    return AppTest.from_function(_render_page, args=(module, user), kwargs=render_kwargs,
                                 default_timeout=60)


def _render_page(module: str, user, **render_kwargs) -> None:
    # AppTest runs this function's source on its own: everything it needs is imported inside.
    import importlib

    from review.config import load_settings
    from review.database import open_lab
    from review.ui.common import sign_in

    sign_in(user)  # the tab's user, as after a login (page actions check it: run_action)
    importlib.import_module(f"review.ui.{module}").render(open_lab(load_settings()), user, **render_kwargs)


def login(at: AppTest, username: str, password: str = PASSWORD) -> AppTest:
    at.text_input(key="login_username").input(username)
    at.text_input(key="login_password").input(password)
    at.button[0].click()  # the form's submit button
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(at: AppTest) -> str:
    """Every piece of text the page sends to the browser: each element's protobuf as text
    (labels, bodies, options, captions, help texts); images contribute their captions and
    their media URLs (a file name in a URL would be a leak too), but not inline pixels; the
    comparison viewer contributes its data without the inline pixels (not its static JS/CSS)."""
    out: list[str] = []

    def walk(node) -> None:  # noqa: ANN001
        proto = getattr(node, "proto", None)
        if getattr(node, "type", None) == "image":
            out.extend(node.captions)
            out.extend(img.url for img in proto.imgs if not img.url.startswith("data:"))
        elif getattr(proto, "component_name", None):
            data = json.loads(proto.json or "null")
            for panel in (data or {}).get("panels", []):
                if panel["src"].startswith("data:"):
                    panel["src"] = "data:"
            out.append(f"{proto.component_name} {json.dumps(data)}")
        elif proto is not None:
            out.append(str(proto))
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at._tree)
    return "\n".join(out)


def viewer_data(at: AppTest) -> dict | None:
    """The data the rating page's comparison viewer (review/ui/viewer.py) was sent, or None."""
    found: list[dict] = []

    def walk(node) -> None:  # noqa: ANN001
        proto = getattr(node, "proto", None)
        if getattr(proto, "component_name", None) == "fidelity_review.compare_viewer":
            found.append(json.loads(proto.json))
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at._tree)
    return found[-1] if found else None
