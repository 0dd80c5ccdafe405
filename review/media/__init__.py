"""Media: the pictures themselves, first in the data flow.

Safe decoding of anything a user hands in (`decode`), the content-addressed store (`store`), blur
synthesis at comparable levels in pixels (`degrade`), the catalog of source, degraded and restored
images in the database (`catalog`), and the restorers with the runner that applies the lab's
settings to them (`restore`). Nothing here knows about studies, reviewers or statistics.
"""
