"""Ctrl-C (and SIGTERM, SIGHUP) around the moment data becomes permanent.

SIGTERM (a CI cancel, ``timeout``) and SIGHUP (a closed terminal) are handled as Ctrl-C
(``as_interrupts()``): the same rollback before the database commits, the same finished commit
after it.

Before the database transaction commits, Ctrl-C rolls it back: nothing is written. From the
``COMMIT`` on, a Ctrl-C is held (``deferred()``) until the data files are consistent and
committed to git; then it is raised, and the tool exits 130 saying what was kept.

``pause(stage)`` is a test hook: with ``SRE_TRACKER_TEST_PAUSE=<stage>`` and
``SRE_TRACKER_TEST_PAUSE_FILE=<path>`` in the environment, the tool writes its process id to
that file when it reaches ``stage`` and waits (at most a minute) until the file is removed, so a
test can send a signal to a real process at a point it controls. Stages: ``before-db-commit``,
``after-db-commit``, ``before-git-commit``; ``<stage>:<n>`` pauses the n-th time only (a push
commits once per story). Without those variables it does nothing.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PAUSE_LIMIT = 60.0  # seconds a paused test run waits before going on by itself

_depth = 0
_pending = False
_reached: dict[str, int] = {}
_previous: dict[int, object] = {}
# The signals that stop a run the way Ctrl-C does.
STOPPING = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _hold(signum: int, frame: object) -> None:
    global _pending
    _pending = True


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@contextmanager
def as_interrupts() -> Iterator[None]:
    """Inside the block SIGTERM and SIGHUP raise KeyboardInterrupt, as Ctrl-C does, so a
    cancelled job or a closed terminal rolls back or finishes its commit like Ctrl-C."""
    if not _main_thread():
        yield
        return
    saved = {s: signal.signal(s, _interrupt) for s in STOPPING if s != signal.SIGINT}
    try:
        yield
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)


@contextmanager
def deferred() -> Iterator[None]:
    """Hold SIGINT, SIGTERM and SIGHUP inside the block; raise KeyboardInterrupt when the
    outermost block ends normally after one arrived (an exception already on its way wins)."""
    global _depth, _previous, _pending
    own = _main_thread() and _depth == 0
    if own:
        _previous = {s: signal.signal(s, _hold) for s in STOPPING}
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if own:
            for signum, handler in _previous.items():
                signal.signal(signum, handler)  # type: ignore[arg-type]
            interrupted, _pending = _pending, False
    if own and interrupted:
        raise KeyboardInterrupt


def pause(stage: str) -> None:
    """Test hook (see the module docstring); a no-op unless the environment asks for it."""
    wanted = os.environ.get("SRE_TRACKER_TEST_PAUSE")
    if not wanted or wanted.split(":")[0] != stage:
        return
    _reached[stage] = _reached.get(stage, 0) + 1
    nth = wanted.partition(":")[2]
    if _reached[stage] != (int(nth) if nth.isdigit() else 1):
        return
    marker = Path(os.environ.get("SRE_TRACKER_TEST_PAUSE_FILE", ""))
    if not marker.name:
        return
    marker.write_text(str(os.getpid()), encoding="utf-8")
    deadline = time.monotonic() + PAUSE_LIMIT
    while marker.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
