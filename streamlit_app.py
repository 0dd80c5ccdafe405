"""Entry point: `streamlit run streamlit_app.py` (see `make run`).

Loads no heavy library: torch and diffusers are imported only when a restorer runs.
"""

from review.ui.app import main

main()
