"""Which ``command`` checks may run on this machine (SPEC §12).

A command check is code from a shared repository, so it runs only once a person on this
machine has trusted its exact text — and the files of the data folder it names (a script
``scripts/check.sh`` it runs), so a changed script must be trusted again, as direnv keys its
approval on the file's content. Approvals live in the user's own state folder
(``$XDG_STATE_HOME/sre-tracker/``, default ``~/.local/state/sre-tracker/``), never in the data
folder. ``--trust-commands`` or ``SRE_TRACKER_TRUST_COMMANDS=1`` in the *real* process
environment trusts every command for one run (CI); nothing in the data folder, its ``.env``
included, can switch that on.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

from sre_maturity.support.errors import ConfigError

ENV = "SRE_TRACKER_TRUST_COMMANDS"
FILE = "trusted-commands.json"


def state_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_STATE_HOME/sre-tracker``, else ``~/.local/state/sre-tracker``."""
    environ = os.environ if environ is None else environ
    base = environ.get("XDG_STATE_HOME") or str(Path("~/.local/state").expanduser())
    return Path(base) / "sre-tracker"


def key(command: str, data_dir: Path) -> str:
    """What an approval is keyed on: the command text and the content of every file of the
    data folder it names (a script it runs, a config it reads)."""
    parts: list[str] = [command]
    try:
        words = shlex.split(command)
    except ValueError:
        words = []
    root = data_dir.resolve()
    for word in words:
        if "{" in word or word.startswith("-") or os.path.isabs(word):
            continue
        path = (root / word).resolve()
        if path.is_file() and path.is_relative_to(root):
            try:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
            except OSError:
                digest = "unreadable"  # trusted as unreadable; readable later is a change
            parts.append(f"{word}:{digest}")
    return hashlib.sha256(json.dumps(parts).encode("utf-8")).hexdigest()


class TrustStore:
    """The approved command keys of this user (a JSON file in the state folder)."""

    def __init__(self, folder: Path | None = None) -> None:
        self.path = (folder or state_dir()) / FILE

    def _read(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (FileNotFoundError, NotADirectoryError):
            return {}  # nothing trusted yet (writing there says what is wrong)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read the trusted commands in {self.path} ({exc}); "
                              "delete the file to trust commands again") from exc
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def is_trusted(self, command: str, data_dir: Path) -> bool:
        """Whether this exact command (and the files it names) was trusted here."""
        return key(command, data_dir) in self._read()

    def trust(self, command: str, data_dir: Path) -> None:
        """Remember that a person trusted this command (atomic, readable by the user only)."""
        approved = self._read()
        approved[key(command, data_dir)] = command
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".trusted-")
        except OSError as exc:
            raise ConfigError(f"cannot remember the trusted command in {self.path.parent} "
                              f"({exc.strerror or exc}); set XDG_STATE_HOME to a writable "
                              "folder") from exc
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(approved, out, indent=1, sort_keys=True)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


class Trust(NamedTuple):
    """How command checks are trusted in one run: every one (``everything``), else each by the
    store's approvals."""

    store: TrustStore
    everything: bool = False

    def allows(self, command: str, data_dir: Path) -> bool:
        return self.everything or self.store.is_trusted(command, data_dir)


def from_run(trust_flag: bool, environ: Mapping[str, str] | None = None) -> Trust:
    """The trust of this run: ``--trust-commands``, or ``SRE_TRACKER_TRUST_COMMANDS=1`` in the
    process environment (``os.environ``, never a ``.env`` file), else the approvals."""
    environ = os.environ if environ is None else environ
    return Trust(TrustStore(state_dir(environ)),
                 trust_flag or environ.get(ENV, "").strip() == "1")
