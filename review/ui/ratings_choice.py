"""The "Ratings: used only / all" control the analysis pages share, and the caption saying which.

Why one control: once data cleansing leaves ratings out, every figure (agreement, MOS, the answer,
Try your photo's findings, pools compared) can read the used ratings (the default) or all of them,
and each page must say which in the same words (review.analysis.report_types.RatingsRead).
A study where cleansing leaves nothing out shows neither: its used ratings are all of them.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from review.analysis.export import RATINGS_CHOICES, default_ratings, ratings_read

LABELS = {"used": "used only", "all": "all"}


def ratings_choice(frame: pd.DataFrame, key: str) -> str:
    """The radio (default from default_ratings) and the caption, where cleansing leaves ratings
    of the study (`frame`: its whole ratings frame) out; returns "used" or "all"."""
    default = default_ratings(frame)
    if ratings_read(frame, default) is None:
        return default
    which = st.radio("Ratings", RATINGS_CHOICES, index=RATINGS_CHOICES.index(default), key=key,
                     format_func=LABELS.__getitem__, horizontal=True,
                     help="Used only: the ratings data cleansing uses (the crowd submissions it "
                          "accepts for use, without their outlier ratings). All: every rating, "
                          "left-out and set-aside ones included.")
    read = ratings_read(frame, which)
    if read is not None:
        st.caption(read.sentence())
    return which
