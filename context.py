"""The command context: resolved settings, output streams, and the data folder's I/O
(opening the database, registering git drivers, committing) that every command handler shares."""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Self, TextIO

from config import Settings
from errors import GitError, InputError

log = logging.getLogger("sre_tracker")


@dataclass(frozen=True)
class CommandOptions:
    """Base of each command's options: a frozen dataclass whose field names are the command's
    argparse destinations. The handler builds it at the edge (``from_args``), so the work
    functions take typed values, never the argparse namespace."""

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Self:
        return cls(**{f.name: getattr(args, f.name) for f in fields(cls)})


@dataclass
class Context:
    """What every handler gets: resolved settings, output streams, verbosity."""

    settings: Settings
    verbosity: int = 0
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)
    _said: set = field(default_factory=set)

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir

    def print(self, text: str = "") -> None:
        print(text, file=self.out)

    def notice(self, text: str) -> None:
        """A remark on stderr, said once per run, silenced by -q."""
        if text in self._said or self.verbosity < 0:
            return
        self._said.add(text)
        print(f"sre_tracker: {text}", file=self.err)

    def db_path(self) -> Path:
        from database import DB_FILE

        return self.data_dir / DB_FILE

    def open_db(self, *, create: bool = False):
        from database import Database

        self.prepare_folder()
        db = Database(self.db_path(), create=create)
        if db.migrated_from is not None:
            self.notice(f"upgraded {db.path.name} from schema {db.migrated_from} to "
                        f"{db.schema_version()} (backup: {db.backup.name})")
        return db

    def prepare_folder(self) -> None:
        """Register the git drivers in the data folder's repo and warn about a tracked .env."""
        if "prepared" in self._said:
            return
        self._said.add("prepared")
        import gitops

        if not self.data_dir.is_dir():
            raise InputError(f"data folder {self.data_dir} does not exist; create it or pass "
                             "--data-dir")
        if gitops.repo_root(self.data_dir) is None:
            return
        gitops.register_drivers(self.data_dir)
        if gitops.env_tracked(self.data_dir):
            self.notice("warning: .env is tracked by git and holds secrets; run "
                        "'git rm --cached .env' and commit")

    def commit(self, files: list[str], message: str) -> None:
        """Commit the data files this run changed, or say once why not."""
        import gitops

        if not self.settings.commit:
            self.notice("not committing (--no-commit or SRE_TRACKER_GIT_COMMIT=false)")
            return
        if not gitops.available():
            self.notice("git is not installed; changes are saved but not committed")
            return
        if gitops.repo_root(self.data_dir) is None:
            self.notice(f"{self.data_dir} is not a git repository; changes are saved but not "
                        "committed (run setup to create one)")
            return
        try:
            sha = gitops.commit(self.data_dir, files, message)
        except GitError as exc:
            raise GitError(f"the change is saved, but {exc}") from None
        if sha:
            log.info("committed %s: %s", sha, message)
