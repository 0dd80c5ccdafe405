"""The answer: how far restoration stays faithful, read from the ratings, last in the data flow.

The boundary estimator over blur levels (`boundary`), the sentences, tables and renderings that
state it (`sentences`), "Try your photo" (`try_photo`; its blur estimate: `blur_estimate`) and
image metrics set against people's ratings (`metrics_vs_people`). It builds on analysis
(intervals, exports) and never the reverse.
"""
