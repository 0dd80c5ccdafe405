"""Analysis: what the ratings say, last in the data flow.

Agreement statistics on long-format rating tables (`agreement`), the report built from them
(`report`, a typed `report_types.Report`) and its JSON, Markdown and HTML renderings
(`report_json`, `markdown_report`, `html_report`, sharing `formatting`), tables and charts for the
Analyst page (`tables`, `charts`), QA and gold-accuracy statistics (`qa_stats`), ratings files
read (`ratings_file`), exports and imports (`export`, `ratings_import`). The answer to "how far
can it go?" builds on these in review.answer.
"""
