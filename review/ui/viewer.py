"""The reviewer's comparison viewer: the images at their own resolution, zoom, flicker, keys.

A Streamlit components-v2 component built from the static files in `assets/` (viewer.js,
viewer.css; no build step, nothing from a CDN). It is mounted in the page itself, not in an
iframe, so its keyboard handler sees the same key presses as Streamlit's shortcuts and can keep
them out of text fields (see viewer.js). Images travel as data URLs of a display copy inside the
rerun's message (no second round trip, measured by bench/rating_loop.py). The copy is the
smallest of 512 px, 1024 px or the stored size that covers the device pixels the viewer shows:
the browser reports that number as the component's `px` state once, when it differs from what
it got (a window resize, zooming in), which costs one rerun, never one per item.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import streamlit as st
from PIL import Image

from review.labeling.views import ImageRef
from review.media.store import DISPLAY_SIDES, ImageStore, display_tier
from review.ui.display import display_copy

ASSETS = Path(__file__).resolve().parent / "assets"
VIEWER_KEY = "viewer"
DEFAULT_PX = 1024  # until the browser says what it needs: a typical laptop's half-screen panel

_component = st.components.v2.component(
    "fidelity_review.compare_viewer",
    js=(ASSETS / "viewer.js").read_text(encoding="utf-8"),
    css=(ASSETS / "viewer.css").read_text(encoding="utf-8"),
    isolate_styles=False,
)


@dataclass(frozen=True)
class Panel:
    """One image of the comparison: its role (reference, blurred, restoration) and caption."""

    role: str
    title: str
    image: ImageRef


@st.cache_data(max_entries=4096, show_spinner=False)
def _stored_long_side(sha256: str, _store: ImageStore, _relpath: str) -> int:
    # Pillow reads the header only (pixels load lazily); PNG is all the store keeps.
    with Image.open(_store.path(_relpath), formats=["PNG"]) as im:
        return max(im.size)


def served_side(store: ImageStore, panels: list[Panel]) -> int:
    """The display copy (a DISPLAY_SIDES entry or DISPLAY_FULL) this session gets now."""
    wanted = (st.session_state.get(VIEWER_KEY) or {}).get("px") or DEFAULT_PX
    full = max(_stored_long_side(p.image.sha256, store, p.image.relpath) for p in panels)
    return display_tier(min(int(wanted), full))


def compare_viewer(store: ImageStore, panels: list[Panel], *, item: str, keys: dict[str, str],
                   streamlit_keys: list[str], leave_on_enter: str, below: str,
                   clock: tuple[float, float] | None = None) -> int:
    """Draw the viewer; returns the bytes of image data sent (the data URLs).

    `keys` maps a key ("b", "enter", "3") to the Streamlit widget key it clicks; the
    `streamlit_keys` among them are Streamlit shortcuts already, which the viewer only routes
    when a control has the focus. `leave_on_enter` is the widget key of the text field that
    Enter leaves, `below` the widget key of what must stay visible under the images, `clock` the
    seconds on the item's and the session's clock now.
    """
    side = served_side(store, panels)
    shown: list[dict[str, Any]] = []  # the viewer's JSON: one object per panel
    for p in panels:
        copy = display_copy(store, p.image, side)
        full = _stored_long_side(p.image.sha256, store, p.image.relpath)
        shown.append({"role": p.role, "title": p.title, "src": copy.url, "w": copy.width, "h": copy.height,
                      "full": full})
    _component(
        key=VIEWER_KEY,
        data={"item": item, "panels": shown, "side": side, "tiers": list(DISPLAY_SIDES), "keys": keys,
              "streamlit_keys": streamlit_keys, "leave_on_enter": leave_on_enter, "below": below,
              "clock": [round(clock[0], 1), round(clock[1], 1)] if clock else None},
        default={"px": DEFAULT_PX},
        on_px_change=lambda: None,  # a new `px` reruns the rating area with the right copy
    )
    return sum(len(s["src"]) for s in shown)
