"""The review lab's domain, grouped by the data flow: `media` (images, blur, restorers) ->
`labeling` (studies, assignment, ratings, QA, guidelines) -> `analysis` (agreement, reports,
exports). Modules at this level span the groups or serve them all: configuration, the database
handle, errors, users, generation jobs, the demo, backups and the CLI.

Importable and testable without Streamlit (only `review.ui` imports it); torch and diffusers load
only inside `review.media.restore` when a Stable Diffusion restorer actually runs.
"""
