"""The command context: resolved settings, output streams, and the data folder's I/O
(opening the database, registering git drivers, committing) that every command handler shares."""

from __future__ import annotations

import argparse
import io
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self, TextIO

from config import Settings
from sre_maturity.support.errors import GitError, TrackerError, require_data_folder

if TYPE_CHECKING:
    from database import Database
    from sre_maturity.support.writelock import FolderLock

log = logging.getLogger("sre_tracker")

RECOVER_MESSAGE = ("recover: commit the change an interrupted run saved in the database but "
                   "did not commit")


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
    # The terminal of a prompting session: questions and menus show even with -q.
    term: TextIO = field(default_factory=lambda: sys.stdout)
    # The data a command was asked for (status, history, export to stdout, JSON): -q
    # silences progress and summaries, never this.
    data: TextIO = field(default_factory=lambda: sys.stdout)
    _said: set = field(default_factory=set)
    # Write bookkeeping (see writing()): the folder lock, whether the database committed a
    # change the matrix file / git have not caught up with, and what this run committed.
    lock: FolderLock | None = None
    matrix_behind: bool = False
    pending_commit: bool = False
    committed: list = field(default_factory=list)
    # The files this command commits with the database (what an interrupted run's leftover
    # commit takes too), and the database file as its last change left it.
    data_files: list = field(default_factory=lambda: ["sre_data.db", "sre_matrix.csv"])
    committed_into: tuple | None = None  # schema.signature of the file after our last change
    _note_written: bool = False
    # Rewrites sre_matrix.csv from an open database (views.write_matrix_file; handed in by
    # the entry point, as the read model sits above this module).
    rewrite_matrix: Callable[[Context, Any], None] | None = None

    def __post_init__(self) -> None:
        if self.verbosity < 0:  # -q: no progress nor summary on stdout (data and errors stay)
            self.out = _Silent()

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir

    def print(self, text: str = "") -> None:
        """A line of output; text from the data shows its control characters, never acts
        on them."""
        from sre_maturity.render.reports import visible

        print(visible(text), file=self.out)

    def print_data(self, text: str = "") -> None:
        """A line of the data the command was asked for: shown even with -q."""
        from sre_maturity.render.reports import visible

        print(visible(text), file=self.data)

    def print_why(self, text: str) -> None:
        """A line saying why a command failed (a closed gate, a failed check): on stdout, or
        with -q on stderr, so a quiet run still says why."""
        from sre_maturity.render.reports import visible

        print(visible(text), file=self.err if self.verbosity < 0 else self.out)

    def notice(self, text: str) -> None:
        """A remark on stderr, said once per run, silenced by -q."""
        if text in self._said or self.verbosity < 0:
            return
        self._said.add(text)
        from config import mask_secrets
        from sre_maturity.render.reports import visible

        print(f"sre_tracker: {visible(mask_secrets(text))}", file=self.err)

    def warn(self, text: str) -> None:
        """A warning on stderr that the data may mislead: said once per run, even with -q."""
        if text in self._said:
            return
        self._said.add(text)
        from sre_maturity.render.reports import visible

        print(f"sre_tracker: warning: {visible(text)}", file=self.err)

    def db_path(self) -> Path:
        from database import DB_FILE

        return self.data_dir / DB_FILE

    def open_db(self, *, create: bool = False, warn_stale: bool = True) -> Database:
        """The data folder's database (``warn_stale``: with a warning when the CSVs differ
        from what it was built from, once per run)."""
        from database import Database

        self.prepare_folder()
        db = Database(self.db_path(), create=create)
        self.attach(db)
        if db.stale_journal is not None:
            self.warn(f"{db.path.name}-journal belonged to an earlier copy of {db.path.name} "
                      f"(a run killed before git replaced the file); set aside as "
                      f"{db.stale_journal} instead of being replayed onto this one")
        if db.migrated_from is not None:
            backup = db.backup.name if db.backup else "none"
            self.notice(f"upgraded {db.path.name} from schema {db.migrated_from} to "
                        f"{db.schema_version()} (backup: {backup})")
        if warn_stale and "sources checked" not in self._said:
            self._said.add("sources checked")
            from sre_maturity.store.sources import stale_sources

            try:
                for line in stale_sources(db, self.data_dir):
                    self.warn(line)
            except BaseException:
                db.close()
                raise
        return db

    @contextmanager
    def open_db_as_of(self, when: str | None) -> Iterator[Database]:
        """The database now, or (``--as-of``) as it was at a date or commit, from git history
        (a temporary copy, removed afterwards)."""
        if not when:
            with self.open_db() as db:
                yield db
            return
        import tempfile

        from database import DB_FILE, Database
        from sre_maturity.git import gitops

        if gitops.repo_root(self.data_dir) is None:
            raise GitError(f"--as-of needs git history, and {self.data_dir} is not a git "
                           "repository")
        rev = gitops.resolve_revision(self.data_dir, when, DB_FILE)
        data = gitops.show_file(self.data_dir, rev, DB_FILE)
        with tempfile.TemporaryDirectory(prefix="sre-as-of-") as tmp:
            path = Path(tmp) / DB_FILE
            path.write_bytes(data)
            with Database(path) as db:
                yield db

    def prepare_folder(self) -> None:
        """Register the git drivers in the data folder's repo and warn about a tracked .env."""
        if "prepared" in self._said:
            return
        self._said.add("prepared")
        from sre_maturity.git import gitops
        require_data_folder(self.data_dir)
        if gitops.repo_root(self.data_dir) is None:
            return
        try:
            gitops.register_drivers(self.data_dir)
        except GitError as exc:
            # A read-only clone (a CI workspace, another user's folder): reading needs no
            # driver, and a write fails on its own later with its own message.
            self.notice(f"the merge drivers are not registered in this clone ({exc}); reading "
                        "works, but git merges and diffs of sre_data.db need them: run a "
                        "command once where .git/config is writable")
        if gitops.env_tracked(self.data_dir):
            self.notice("warning: .env is tracked by git and holds secrets; run "
                        "'git rm --cached .env' and commit")

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Hold the data folder's write lock for the block (one writing command at a time);
        within a block that holds it already, nothing more."""
        from sre_maturity.support.writelock import FolderLock

        if self.lock is not None:
            yield
            return
        lock = FolderLock(self.data_dir, self.notice)
        lock.acquire()
        self.lock = lock
        try:
            self.recover()
            yield
        finally:
            self.lock = None
            lock.release()
            # Another command may write the database while this run does not hold the lock
            # (an interactive assess between saving and committing): its file changes, and
            # that is no sign of git replacing it.
            self.committed_into = None

    def attach(self, db: Database) -> None:
        """Follow ``db``'s commits: the data files and git must catch up with each."""
        db.on_commit = self.db_committed
        db.on_saved = self.db_saved

    def db_saved(self, signature: tuple | None) -> None:
        """The database file as this run's last change left it."""
        self.committed_into = signature

    def recover(self) -> None:
        """Commit first what an earlier run saved in the database but never committed (it was
        killed, or git failed, between the two commits): otherwise a re-run finds nothing to
        do, the change never reaches git, and teammates never get it."""
        from sre_maturity.git import gitops
        from sre_maturity.support import writelock

        if self._note_written:
            return  # the note is this run's own: its commit follows
        files = writelock.uncommitted(self.data_dir)
        if files is None or not self.will_commit() or not gitops.has_identity(self.data_dir):
            return
        before = len(self.committed)
        try:
            self.commit(files, RECOVER_MESSAGE)
        except TrackerError as exc:
            self.notice(f"an interrupted run left a change in {files[0]} that git does not "
                        f"have, and committing it failed: {exc}")
            return
        if len(self.committed) > before:
            self.notice(f"committed the change an interrupted run had saved but not committed "
                        f"({self.committed[-1]})")

    def db_committed(self) -> None:
        """The database is committing a change: the matrix file and git must follow."""
        from sre_maturity.support import writelock

        self.matrix_behind = True
        self.pending_commit = True
        if self.lock is not None:
            self.lock.mark_matrix_stale()
        if self.settings.commit and not self._note_written:
            writelock.mark_uncommitted(self.data_dir, self.data_files)
            self._note_written = True

    def matrix_written(self) -> None:
        """sre_matrix.csv now shows this run's changes (called by the matrix writer)."""
        self.matrix_behind = False
        if self.lock is not None and not self.lock.stale_at_start:
            self.lock.clear_matrix_stale()

    def ensure_matrix(self) -> None:
        """Rewrite sre_matrix.csv from the database when it may not match: this run committed
        a change without writing it, or an earlier run was killed in between."""
        stale = self.lock is not None and self.lock.stale_at_start
        if not (self.matrix_behind or stale) or self.rewrite_matrix is None:
            return
        if self.db_path().exists():
            with self.open_db() as db:
                self.rewrite_matrix(self, db)
        if self.lock is not None:
            self.lock.stale_at_start = False
            self.lock.clear_matrix_stale()

    def will_commit(self, *, creating_repo: bool = False) -> bool:
        """True when this run's changes are going to be committed (and so need git's
        identity); ``creating_repo``: setup is about to create the repository."""
        from sre_maturity.git import gitops
        if not self.settings.commit or not gitops.available():
            return False
        return creating_repo or gitops.repo_root(self.data_dir) is not None

    def require_identity(self, *, creating_repo: bool = False) -> None:
        """Refuse, before anything is written, a run whose commit git would refuse."""
        from sre_maturity.git import gitops
        if self.data_dir.is_dir() and self.will_commit(creating_repo=creating_repo) and \
                not gitops.has_identity(self.data_dir):
            raise GitError(gitops.IDENTITY_FIX)

    def commit(self, files: list[str], message: str) -> None:
        """Commit the data files this run changed, or say once why not. A Ctrl-C meanwhile
        waits until the commit is made (interrupts.py)."""
        from database import DB_FILE
        from sre_maturity.support import interrupts

        with interrupts.deferred():
            if DB_FILE in files:
                self.check_not_replaced()
                self.ensure_matrix()
            interrupts.pause("before-git-commit")
            if DB_FILE in files:
                self.check_not_replaced()
            self._commit(files, message)
            self.pending_commit = False
            if self.settings.commit:
                from sre_maturity.support import writelock

                writelock.clear_uncommitted(self.data_dir)
                self._note_written = False

    def check_not_replaced(self) -> None:
        """Refuse to commit (and to report success) when ``sre_data.db`` was replaced after
        this run's change went into it (a git pull or checkout meanwhile): the change is in
        the old, unlinked file. The matrix file is put back in line with the database there."""
        from database import FileReplaced
        from sre_maturity.store import schema

        now = schema.signature(self.db_path())
        # No file at all: a failed first setup took back what it created; nothing to commit.
        if self.committed_into is None or now is None or now == self.committed_into:
            return
        self.committed_into = None
        self.matrix_behind = True
        self.ensure_matrix()
        self.pending_commit = False
        raise FileReplaced(self.db_path(), committed=True)

    def _commit(self, files: list[str], message: str) -> None:
        from sre_maturity.git import gitops
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
        from sre_maturity.store.sources import SETUP_FILES

        # A setup run with --no-commit left its files uncommitted: they go with this commit,
        # so a clone made from now on has the merge drivers' attributes and the CSVs.
        files = list(files) + [f for f in gitops.untracked(self.data_dir, SETUP_FILES)
                               if f not in files]
        try:
            sha = gitops.commit(self.data_dir, files, message)
        except GitError as exc:
            raise GitError(f"the change is saved, but {exc}") from None
        if sha:
            self.committed.append(sha)
            log.info("committed %s: %s", sha, message)
            self._tidy()

    def _tidy(self) -> None:
        """Pack the objects the commits leave (the repository stays a few times the size of
        the database, however many commits); a failure here never fails the command."""
        from sre_maturity.git import gitops
        db = self.db_path()
        try:
            gitops.tidy(self.data_dir, max(db.stat().st_size if db.exists() else 0, 1 << 20))
        except (GitError, OSError) as exc:
            log.info("git housekeeping skipped: %s", exc)


class _Silent(io.StringIO):
    """Where -q sends what would have gone to stdout (a terminal it is not)."""

    def write(self, text: str) -> int:
        return len(text)

    def isatty(self) -> bool:
        return False
