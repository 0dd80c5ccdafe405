"""Images served to the browser pre-sized: JPEG bytes at display size, encoded once per image.

`st.image` re-encodes a PIL image on every run; handing it ready JPEG bytes (with
output_format="JPEG") makes it pass them through untouched, and the media URL (a hash of the
bytes) stays the same across runs, so the browser caches it too. The cache key is the stored
image's sha256, so the same picture is encoded once per process however many items use it.
"""

from __future__ import annotations

import streamlit as st

from review.images import ImageStore, encode_display_jpeg
from review.ui.queries import ImageRef

DISPLAY_MAX_SIDE = 512


@st.cache_data(max_entries=2048, show_spinner=False)
def _jpeg(sha256: str, max_side: int, _store: ImageStore, _relpath: str) -> bytes:
    # Only sha256 and max_side form the key (underscore arguments are not hashed).
    return encode_display_jpeg(_store.open_image(_relpath), max_side)


def display_jpeg(store: ImageStore, ref: ImageRef, max_side: int = DISPLAY_MAX_SIDE) -> bytes:
    """JPEG bytes of a stored image at display size, from the process-wide cache."""
    return _jpeg(ref.sha256, max_side, store, ref.relpath)


def show_image(store: ImageStore, ref: ImageRef, max_side: int = DISPLAY_MAX_SIDE) -> None:
    """Render a stored image without a caption or file name (reviewers stay blind)."""
    st.image(display_jpeg(store, ref, max_side), output_format="JPEG")
