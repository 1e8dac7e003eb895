"""The one exception family of sre-tracker.

Library code raises these; only ``sre_tracker.main`` catches them and turns them into one line
on stderr and the exit code carried by the exception.
"""

from __future__ import annotations

from pathlib import Path

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3
EXIT_GATE_CLOSED = 4
EXIT_INTERRUPTED = 130

INSTALLED_NAME = "sre-tracker"  # the console script pipx and pip install
CLONE_NAME = "sre_tracker.py"


def program_name() -> str:
    """The name the tool was invoked by, for usage, ``--version`` and hints: ``sre-tracker``
    when run as the installed console script, else ``sre_tracker.py`` (from a clone, also
    through ``interactive_setup.py`` or ``python -m``)."""
    import sys
    from pathlib import PurePath

    invoked = PurePath(sys.argv[0] if sys.argv and sys.argv[0] else CLONE_NAME).name
    # Windows launchers are sre-tracker.exe or sre-tracker-script.py.
    return INSTALLED_NAME if invoked.startswith(INSTALLED_NAME) else CLONE_NAME


def require_data_folder(folder: Path) -> None:
    """Refuse a data folder that is missing, or that is a file, in one line saying which."""
    if folder.is_dir():
        return
    if folder.exists():
        raise InputError(f"data folder {folder} is a file, not a folder; pass --data-dir with "
                         "the folder that holds flows.csv")
    raise InputError(f"data folder {folder} does not exist; create it or pass --data-dir")


class TrackerError(Exception):
    """An expected failure with a message for the user (what is wrong and what to do)."""

    exit_code = EXIT_ERROR


class ConfigError(TrackerError):
    """A setting is missing or invalid (names the variable or flag)."""


class InputError(TrackerError):
    """A CSV file or a user answer is invalid (names file, line and column)."""


class DatabaseError(TrackerError):
    """The SQLite file is corrupt, foreign, or from a newer version."""


class NewerSchema(DatabaseError):
    """The SQLite file was written by a newer sre-tracker (upgrading is the fix)."""


class GitError(TrackerError):
    """A git command failed; the data change itself is kept."""


class RallyError(TrackerError):
    """Rally refused or failed a request (never carries the API key)."""


class OutcomeUnknown(RallyError):
    """A create was sent but its answer was lost (timeout, dropped connection, gateway 5xx):
    Rally may or may not have made it, so it is looked up, never simply sent again."""


class ConfluenceError(TrackerError):
    """Confluence refused or failed a request, or the page cannot be updated safely."""


class PageNeedsFix(ConfluenceError):
    """The page is such that no run can update it (our heading twice, or inside a table): the
    message says what a person must change on the page; running again does not help."""


class PartialFailure(TrackerError):
    """Some of the work was done, some was not; a re-run finishes the rest."""

    exit_code = EXIT_PARTIAL


class SourceError(TrackerError):
    """An evidence source (Splunk, Prometheus, PagerDuty, a probed URL) refused or failed a
    request, or answered something unreadable; the message names the setting to fix and
    never carries a secret."""
