"""Serving entry point: `streamlit run serve.py` (see `make run`).

The app (streamlit_app.py) plus the route that sets the HttpOnly session cookie
(review/ui/server.py), so a reload, a typed URL or a second tab stays signed in. Running
streamlit_app.py directly works too, without that cookie: each browser tab then logs in itself.
"""

import streamlit as st

from review.ui.server import ROUTES

app = st.App("streamlit_app.py", routes=ROUTES)
