"""One command at a time per data folder, and a note when the matrix file fell behind.

Commands that write hold an exclusive ``fcntl.flock`` on ``sre-tracker.lock`` in the folder's
git directory (``.git/``, never tracked), or on ``.sre-tracker.lock`` in the data folder when it
is in no repository (removed again on release, so the folder is left as it was). A second
command waits, and says so once after a second.

``sre-tracker.uncommitted`` (in ``.git/``) exists from a database commit until git has the
change; it lists the files to commit. A run killed in between (kill -9, a full disk, a git lock
file) leaves it, and the next writing command commits that leftover first.

``sre-tracker.matrix-stale`` (next to the lock) exists while the database has committed a change
that ``sre_matrix.csv`` may not show yet; a run killed in between leaves it, and the next commit
rewrites the matrix from the database first.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable
from pathlib import Path

from sre_maturity.support.errors import InputError, require_data_folder

LOCK_FILE = "sre-tracker.lock"
FOLDER_LOCK_FILE = ".sre-tracker.lock"
STALE_FILE = "sre-tracker.matrix-stale"
FOLDER_STALE_FILE = ".sre-tracker.matrix-stale"
UNCOMMITTED_FILE = "sre-tracker.uncommitted"
WAIT_NOTICE_AFTER = 1.0  # seconds of waiting before saying so
_POLL = 0.05


def state_dir(folder: Path) -> tuple[Path, bool]:
    """Where the lock and the stale-matrix note live: (directory, is it a git directory)."""
    from sre_maturity.git import gitops
    git_dir = gitops.git_dir(folder)
    return (git_dir, True) if git_dir is not None else (folder, False)


def _names(in_git: bool) -> tuple[str, str]:
    return (LOCK_FILE, STALE_FILE) if in_git else (FOLDER_LOCK_FILE, FOLDER_STALE_FILE)


class FolderLock:
    """The data folder's write lock; ``with FolderLock(folder, say):`` or acquire/release.

    :param folder: the data folder
    :param say: called once with a message when the lock is not free within a second
    """

    def __init__(self, folder: Path, say: Callable[[str], None]) -> None:
        self.folder = folder
        self.say = say
        self.held: list[tuple[Path, int]] = []
        self.dir, self.in_git = folder, False
        self.stale_at_start = False  # an earlier run died before the matrix caught up

    def __enter__(self) -> FolderLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        """Wait for the lock. A folder that became a repository while this run waited (a
        first setup) has its lock in ``.git/`` from then on: that one is taken too."""
        require_data_folder(self.folder)
        while True:
            self.dir, self.in_git = state_dir(self.folder)
            path = self.dir / _names(self.in_git)[0]
            if any(p == path for p, _fd in self.held):
                self.stale_at_start = self.stale_at_start or self.matrix_stale()
                if self.in_git:
                    self._sweep_folder_notes()
                return
            self.held.append((path, self._take(path)))

    def _sweep_folder_notes(self) -> None:
        """A first setup killed before its repository was finished leaves the folder's own
        lock and stale-matrix note behind; once the folder is a repository (and this run holds
        its lock) the note moves into ``.git`` and both files go, unless another run holds
        that old lock."""
        lock, stale = (self.folder / name for name in _names(False))
        if stale.exists():
            self.stale_at_start = True
            self.mark_matrix_stale()
            stale.unlink(missing_ok=True)
        if not lock.exists() or any(p == lock for p, _fd in self.held):
            return
        try:
            fd = os.open(lock, os.O_RDWR)
        except OSError:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            lock.unlink(missing_ok=True)
        except OSError:
            pass  # held by a run that started before the repository existed
        finally:
            os.close(fd)

    def _take(self, path: Path) -> int:
        said = False
        while True:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise InputError(f"cannot create the lock file {path} ({exc.strerror}); "
                                 "check the folder's permissions") from None
            try:
                said = self._wait(fd, path, said)
                # The holder of a folder lock removes the file as it leaves: lock the file
                # that is there now, not the one that was.
                try:
                    if os.stat(path).st_ino == os.fstat(fd).st_ino:
                        os.ftruncate(fd, 0)
                        os.write(fd, f"{os.getpid()}\n".encode())
                        return fd
                except FileNotFoundError:
                    pass
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)

    def _wait(self, fd: int, path: Path, said: bool) -> bool:
        start = time.monotonic()
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return said
            except BlockingIOError:
                pass
            if not said and time.monotonic() - start >= WAIT_NOTICE_AFTER:
                holder = _holder(path)
                self.say(f"waiting for another sre-tracker command in {self.folder} to finish"
                         f"{f' (process {holder})' if holder else ''}; lock: {path}")
                said = True
                fcntl.flock(fd, fcntl.LOCK_EX)  # Ctrl-C still interrupts the wait
                return said
            time.sleep(_POLL)

    def release(self) -> None:
        """Let the next command in; a lock file in the data folder itself is removed."""
        while self.held:
            path, fd = self.held.pop()
            if path.name == FOLDER_LOCK_FILE:
                path.unlink(missing_ok=True)
            else:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, 0)  # the next waiter names no holder that has left
            os.close(fd)

    # --- the stale-matrix note ---------------------------------------------------------------

    @property
    def stale_path(self) -> Path:
        return self.dir / _names(self.in_git)[1]

    def matrix_stale(self) -> bool:
        """True when a run died between a database commit and writing the matrix file."""
        return self.stale_path.exists()

    def mark_matrix_stale(self) -> None:
        if not self.stale_path.exists():
            self.stale_path.touch()

    def clear_matrix_stale(self) -> None:
        self.stale_path.unlink(missing_ok=True)


def mark_matrix_stale(folder: Path) -> None:
    """Note that ``sre_matrix.csv`` may not show what the database holds (after a merge of the
    database: git merged the matrix file on its own); the next writing command rewrites it."""
    directory, in_git = state_dir(folder)
    (directory / _names(in_git)[1]).touch()


def _holder(path: Path) -> str:
    """The process id written in the lock file, when that process still runs (the file is
    emptied on release, so another program holding the lock shows none, and a dead
    holder's id is not shown either)."""
    try:
        text = path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return ""
    return text if text.isdigit() and _alive(int(text)) else ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # there, but another user's
    return True


# --- the uncommitted-change note ---------------------------------------------------------------

def _uncommitted_path(folder: Path) -> Path | None:
    from sre_maturity.git import gitops
    git_dir = gitops.git_dir(folder)
    return git_dir / UNCOMMITTED_FILE if git_dir is not None else None


def mark_uncommitted(folder: Path, files: list[str]) -> None:
    """Note that the database holds a change git does not have yet, and which files carry it."""
    path = _uncommitted_path(folder)
    if path is not None:
        path.write_text("".join(f"{name}\n" for name in files), encoding="utf-8")


def uncommitted(folder: Path) -> list[str] | None:
    """The files an earlier run left uncommitted (None: it finished its commit)."""
    path = _uncommitted_path(folder)
    try:
        text = path.read_text(encoding="utf-8") if path is not None else None
    except FileNotFoundError:
        return None
    return None if text is None else [line for line in text.splitlines() if line.strip()]


def clear_uncommitted(folder: Path) -> None:
    path = _uncommitted_path(folder)
    if path is not None:
        path.unlink(missing_ok=True)
