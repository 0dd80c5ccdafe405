"""The review lab's domain: images, blur, restorers, studies, ratings, QA, statistics.

Importable and testable without Streamlit; torch and diffusers load only inside
`review.media.restore` when a Stable Diffusion restorer actually runs.
"""
