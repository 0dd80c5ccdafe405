"""Labeling guidelines: versioned Markdown files as the source (`files`), safe rendering for
reviewers' browsers (`render`), and writing new versions and assigning them to studies
(`authoring`)."""
