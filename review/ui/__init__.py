"""The Streamlit user interface: thin pages that render domain state and dispatch to the domain.

This package is the only place under `review/` that imports Streamlit. Pure read-side queries the
pages need live in `review.labeling.views` (no Streamlit) so they stay testable without a browser.
"""
