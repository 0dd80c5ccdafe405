"""Labeling: people judging restorations, second in the data flow.

Studies and their typed settings (`study`, `settings`), reviewer cohorts for guideline and QA
experiments (`cohorts`), handing out work (`assignment`), recording ratings (`ratings`), the QA
workflow (`qa`), what each page shows (`views`) and the labeling guidelines (`guidelines`). Uses
media for the images; never the analysis built on top of it.
"""
