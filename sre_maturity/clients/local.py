"""The check kinds that look at this machine (SPEC §12): ``file`` (a path or glob in the data
folder) and ``command`` (a trusted command line, run without a shell).

A command runs in the data folder, in a process group of its own that is ended whole when it
overruns its timeout, with an environment holding none of the tool's secrets; its output
(stdout and stderr together) is masked and cut to 4 KB before anything keeps it.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import NamedTuple

from config import SECRETS, SERVICE_PREFIXES
from sre_maturity.clients.sources import mask
from sre_maturity.support.errors import SourceError

OUTPUT_LIMIT = 4096
CUT_NOTE = "\n[output cut at 4 KB]"
DEFAULT_TIMEOUT = 60.0
MAX_READ = 10 * 1024 * 1024  # what `contains=` reads of one file


class FileSeen(NamedTuple):
    """The paths matching a ``file`` target (relative to the data folder, ``/``-separated)
    and, with ``contains=``, those whose text holds the pattern."""

    matches: tuple[str, ...]
    containing: tuple[str, ...]


def look_for(pattern: str, data_dir: Path, contains: str | None = None) -> FileSeen:
    """Find ``pattern`` (a path or glob, ``**`` included) in the data folder. Matches that lead
    out of it (through a symbolic link) are left out."""
    root = data_dir.resolve()
    if any(c in pattern for c in "*?["):
        candidates = sorted(root.glob(pattern))
    else:
        candidates = [root / pattern] if (root / pattern).exists() else []
    matches = [p for p in candidates if p.resolve().is_relative_to(root)]
    containing: list[str] = []
    if contains is not None:
        regex = re.compile(contains, re.MULTILINE)
        for path in matches:
            if path.is_file():
                with path.open("rb") as handle:
                    text = handle.read(MAX_READ).decode("utf-8", errors="replace")
                if regex.search(text):
                    containing.append(_relative(path, root))
    return FileSeen(tuple(_relative(p, root) for p in matches), tuple(containing))


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


class CommandRun(NamedTuple):
    """How a command ended: its exit code (None when it was ended on timeout) and its output,
    masked and cut to 4 KB."""

    exit: int | None
    output: str


def child_environment(environ: Mapping[str, str], secrets: Iterable[str]) -> dict[str, str]:
    """``environ`` without the tool's settings (every ``RALLY_``, ``CONFLUENCE_``, ``SPLUNK_``,
    ``PROMETHEUS_``, ``PAGERDUTY_`` variable, the secrets by name) and without any variable
    whose value holds one of the secret values."""
    values = [s for s in secrets if s]
    return {name: value for name, value in environ.items()
            if not name.startswith(SERVICE_PREFIXES) and name not in SECRETS
            and not any(s in value for s in values)}


def run_command(argv: tuple[str, ...] | list[str], data_dir: Path, *, secrets: Iterable[str],
                timeout: float = DEFAULT_TIMEOUT,
                environ: Mapping[str, str] | None = None) -> CommandRun:
    """Run ``argv`` (no shell) in the data folder and wait at most ``timeout`` seconds.

    :raises SourceError: the program cannot be started (not found, not executable)
    """
    secrets = [s for s in secrets if s]
    env = child_environment(os.environ if environ is None else environ, secrets)
    try:
        proc = subprocess.Popen(list(argv), cwd=data_dir, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)
    except FileNotFoundError as exc:
        raise SourceError(f"cannot run {argv[0]}: no such program (a path is relative to "
                          "the data folder)") from exc
    except PermissionError as exc:
        raise SourceError(f"cannot run {argv[0]}: not executable") from exc
    except OSError as exc:
        raise SourceError(f"cannot run {argv[0]}: {exc.strerror or exc}") from exc
    # Read while it runs (a full pipe would stall it) but keep only what can be stored, plus
    # enough to mask a secret that straddles the cut.
    keep = OUTPUT_LIMIT + max((len(s.encode()) for s in secrets), default=0)
    head = bytearray()

    def read() -> None:
        assert proc.stdout is not None
        for chunk in iter(lambda: proc.stdout.read(8192), b""):  # type: ignore[union-attr]
            if len(head) < keep:
                head.extend(chunk[:keep - len(head)])

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        code: int | None = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        code = None
    finally:
        _end_group(proc)
    reader.join(timeout=5)
    if proc.stdout is not None:
        proc.stdout.close()
    return CommandRun(code, cut(mask(head.decode("utf-8", errors="replace"), secrets)))


def _end_group(proc: subprocess.Popen[bytes]) -> None:
    """End the command's whole process group: TERM, a moment's grace, then KILL (also after
    a normal exit, so nothing it started in the background lingers)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            break
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=2)
        if _group_gone(proc.pid, GRACE):
            break
    proc.wait()


GRACE = 1.0  # seconds a signalled group gets to go (its members reaped)


def _group_gone(pgid: int, within: float) -> bool:
    """Whether no process of the group is left, waiting up to ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)


def cut(text: str, limit: int = OUTPUT_LIMIT) -> str:
    """``text`` in at most ``limit`` UTF-8 bytes, saying so when it was cut."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    room = limit - len(CUT_NOTE.encode("utf-8"))
    return data[:room].decode("utf-8", errors="ignore") + CUT_NOTE
