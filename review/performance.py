"""The lab's performance tricks, each behind one named function that says why it is there and what
it costs. Code elsewhere calls these instead of `gc.disable`, `os._exit` or a bare thread pool, so
each trick is found by its name and can be switched off in one place (tests/test_performance.py
keeps those calls here).

A foundation module: it imports nothing of the lab, so every layer may use it.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


@contextmanager
def without_gc() -> Iterator[None]:
    """Run the block with Python's cyclic garbage collector off, restoring its state after.

    Why: the statistics report builds millions of short-lived, acyclic lists, dicts and frames;
    the collector rescans them again and again as they pile up and frees nothing (reference
    counting frees them): about 0.4 s of a 1M-rating report.
    Cost: reference cycles made inside the block are not collected until it ends, so memory held
    by a cycle (a traceback kept in a local, a self-referencing object) lingers until then. Keep
    it around work that builds data, not around long-running loops.
    """
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


def exit_without_teardown(status: int = 0) -> None:
    """End the process at once with `status`, after flushing standard output and error.

    Why: at a normal exit Python frees every object one by one; for a report over 1M ratings
    and its frame that is about 0.4 s spent returning memory the OS takes back anyway.
    Cost: nothing else runs: no `atexit` handlers, no `finally` blocks or context managers still
    open up the stack, no finalizers, no flush of files other than stdout and stderr, database
    connections dropped rather than closed. Call it only as the last step of a command run by
    `python -m review` itself (never inside a test's CliRunner or an embedding program), with
    every file it wrote already closed and no database connection open.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


@contextmanager
def running_beside(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> Iterator[Future[T]]:
    """Start `fn(*args, **kwargs)` on one worker thread while the block runs; yields its Future.

    Why: work that spends its time in NumPy and SciPy (which release the GIL) uses a second
    core while the block computes the rest: the report's Dawid-Skene EM beside the agreement
    coefficients is about 0.6 s of a 3 s report over 1M ratings.
    Cost: one more thread; `fn` must not share mutable state with the block; its exception
    appears only where the block calls `.result()`, and leaving the block waits for `fn` to
    finish even when the block raised (the worker cannot be stopped midway).
    """
    with ThreadPoolExecutor(max_workers=1) as pool:
        yield pool.submit(fn, *args, **kwargs)


def threads_per_core() -> ThreadPoolExecutor:
    """A thread pool with one worker per CPU core, for many independent tasks that release the GIL.

    Why: the demo's classical restorations spend their time in NumPy, SciPy and scikit-image
    filters and FFTs, which release the GIL, so they run on every core instead of one.
    Cost: one image (and its restoration) per worker in memory at once; a task's exception
    appears only where its Future's `.result()` is read; tasks must not share a database session
    (the demo writes on the calling thread).
    """
    return ThreadPoolExecutor(max_workers=os.cpu_count() or 1)
