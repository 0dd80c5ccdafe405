"""Generation: restorations made for studies, above media (restorers) and labeling (studies).

A plan and its queued job (`plan`), the workers that claim its work items and run them (`workers`),
and jobs that extend a curve at a proposed blur level (`proposals`).
"""
