"""Git in the data folder: init, attributes, merge/diff driver registration, commits, old files.

Every git call is an argument list with an explicit ``cwd``; failures become ``GitError`` with
the command and git's own message.
"""

from __future__ import annotations

import getpass
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from sre_maturity import HOME
from sre_maturity.support.errors import GitError

log = logging.getLogger("sre_tracker.git")

DRIVER = "sre-tracker"
MATRIX_DRIVER = "sre-tracker-matrix"
GITATTRIBUTES = (
    "# sre-tracker: merge the database row by row and show it as text in diffs\n"
    f"sre_data.db merge={DRIVER} diff={DRIVER}\n"
    f"sre_matrix.csv merge={MATRIX_DRIVER}\n"
    # Two SREs who each add a row at the end of flows.csv both keep theirs (git's own union
    # merge); a row both changed stays twice, and every command then names the duplicate.
    "flows.csv merge=union\n"
    # The same for the evidence files: rows added at the end by two SREs both stay.
    "checks.csv merge=union\n"
    "assets.csv merge=union\n"
)
GITIGNORE = (
    "# sre-tracker data folder\n"
    ".env\n"
    "rally_import.csv\n"
    "confluence_page.txt\n"
    "confluence_page.cloud.txt\n"
    "confluence_page.html\n"
    "confluence_page.*.txt\n"
    "confluence_page.*.html\n"
    "confluence_rulebook.txt\n"
    "confluence_rulebook.cloud.txt\n"
    "confluence_rulebook.html\n"
    "sre_matrix.html\n"
    "sre_matrix.*.html\n"
    "*.bak-v*\n"
    "sre_data.db-journal\n"
    ".*.tmp\n"
    ".sre-tracker.*\n"
)
SCRIPT = HOME / "sre_tracker.py"


def available() -> bool:
    return shutil.which("git") is not None


def call(cwd: Path, *args: str, input: bytes | None = None) -> subprocess.CompletedProcess:
    """Run ``git args`` in ``cwd`` and return the finished process (bytes out and err), whatever
    its exit status: every git call goes through here, so ``-vv`` logs each one."""
    cmd = ["git", *args]
    log.debug("running: %s (in %s)", " ".join(shlex.quote(a) for a in cmd), cwd)
    # Its own process group: a Ctrl-C in the terminal must not kill a commit half way; the
    # tool finishes it and then stops (interrupts.py).
    return subprocess.run(cmd, cwd=cwd, capture_output=True, input=input, process_group=0)


def run(cwd: Path, *args: str, check: bool = True, input: bytes | None = None) -> str:
    """Run ``git args`` in ``cwd``; return stdout. Raises GitError when check and it fails."""
    proc = call(cwd, *args, input=input)
    if check and proc.returncode != 0:
        raise GitError(failure_text(args[0], proc.stderr.decode("utf-8", "replace")))
    return proc.stdout.decode("utf-8", "replace")


def failure_text(command: str, stderr: str) -> str:
    """What a failed git command means, in one line: a lock file left by another (or a
    crashed) git command is named with what to do; otherwise git's last line."""
    locked = re.search(r"Unable to create '([^']+\.lock)': File exists", stderr)
    if locked:
        return (f"git {command} failed: the lock file {locked.group(1)} exists (another git "
                "command is running, or one crashed); when none is running, delete that file "
                "and run again")
    full = re.search(r"No space left on device|unable to write|disk quota", stderr, re.I)
    detail = stderr.strip().splitlines()
    last = detail[-1] if detail else "no message"
    if full and not re.search(r"No space left", last):
        last = next(line for line in detail if full.group(0).lower() in line.lower())
    return f"git {command} failed: {last}"


def repo_root(folder: Path) -> Path | None:
    """The top of the git work tree containing ``folder``, or None."""
    if not available():
        return None
    proc = call(folder, "rev-parse", "--show-toplevel")
    if proc.returncode != 0:
        _refused(folder, proc.stderr.decode("utf-8", "replace"))
        return None
    return Path(os.fsdecode(proc.stdout.strip()))


def git_dir(folder: Path) -> Path | None:
    """The git directory (``.git``) of the repository containing ``folder``, or None."""
    if not available():
        return None
    proc = call(folder, "rev-parse", "--absolute-git-dir")
    if proc.returncode != 0:
        _refused(folder, proc.stderr.decode("utf-8", "replace"))
        return None
    return Path(os.fsdecode(proc.stdout.strip()))


def _refused(folder: Path, stderr: str) -> None:
    """Raise what git said when it refuses a repository that is there (safe.directory: the
    folder belongs to another user; a damaged ``.git``); "not a repository" is left to the
    caller when there is no ``.git`` in the folder."""
    if "safe.directory" not in stderr:
        if os.path.lexists(folder / ".git"):
            first = next((line.strip() for line in stderr.splitlines() if line.strip()),
                         "no message")
            raise GitError(f"{folder / '.git'} is there but git cannot use it ({first}); "
                           "repair it (git fsck, or restore .git/HEAD), or move it away to "
                           "start a new history")
        return
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    reason = lines[0].removeprefix("fatal: ") if lines else "dubious ownership"
    fix = next((line for line in lines if line.startswith("git config")), "")
    raise GitError(f"git refuses the repository of {folder}: {reason}" +
                   (f"; if you trust it, run: {fix}" if fix else ""))


def init(folder: Path) -> None:
    run(folder, "init", "-q")


def ensure_files(folder: Path) -> list[str]:
    """Write the data folder's .gitattributes and .gitignore when missing or incomplete.

    Returns the names of the files written.
    """
    written = []
    for name, wanted in ((".gitattributes", GITATTRIBUTES), (".gitignore", GITIGNORE)):
        path = folder / name
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        have = {line.strip() for line in text.splitlines()}
        missing = [line for line in wanted.splitlines()
                   if line.strip() and not line.startswith("#") and line.strip() not in have]
        if not missing:
            continue
        if text and not text.endswith("\n"):
            text += "\n"
        path.write_text(text + ("" if text else wanted.splitlines()[0] + "\n")
                        + "\n".join(missing) + "\n", encoding="utf-8")
        written.append(name)
    return written


def driver_commands() -> dict[str, str]:
    """The local git config entries that wire the merge drivers and the diff text-conversion."""
    base = f"{shlex.quote(sys.executable)} {shlex.quote(str(SCRIPT))}"
    return {
        f"merge.{DRIVER}.name": "sre-tracker database merge (row by row)",
        f"merge.{DRIVER}.driver": f"{base} merge-db %O %A %B",
        f"merge.{MATRIX_DRIVER}.name": "sre-tracker matrix CSV merge (newest assessment wins)",
        f"merge.{MATRIX_DRIVER}.driver": f"{base} merge-matrix %O %A %B",
        f"diff.{DRIVER}.textconv": f"{base} dump",
        f"diff.{DRIVER}.cachetextconv": "false",
    }


# Housekeeping of the data repository (local config, set with the drivers). Every commit adds
# the whole database as a new object; :func:`tidy` packs them (deltas between versions are
# small) and ``gc --auto`` folds the packs into one as soon as more than four pile up, in the
# foreground (a background gc would outlive the command).
REPO_SETTINGS = {"gc.autoPackLimit": "4", "gc.autoDetach": "false"}


def drivers_registered(folder: Path) -> bool:
    wanted = {**driver_commands(), **REPO_SETTINGS}
    out = run(folder, "config", "--local", "--get-regexp",
              r"^((merge|diff)\.sre-tracker|gc\.(autopacklimit|autodetach))", check=False)
    have = {k.lower(): v for k, v in (line.split(" ", 1) for line in out.splitlines()
                                      if " " in line)}
    return all(have.get(k.lower()) == v for k, v in wanted.items())


def register_drivers(folder: Path) -> bool:
    """Register the drivers (and the housekeeping settings) in the repo's local config when
    missing; True if anything was set."""
    if drivers_registered(folder):
        return False
    for key, value in {**driver_commands(), **REPO_SETTINGS}.items():
        run(folder, "config", "--local", key, value)
    return True


def tidy(folder: Path, budget: int) -> bool:
    """Keep loose objects from piling up after a commit: once they take more than ``budget``
    bytes (the database's size), pack them; then ``gc --auto`` merges the packs when there are
    too many. True when something was packed."""
    out = run(folder, "count-objects", "-v", check=False)
    stats = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)
    try:
        loose = int(stats.get("size", "0")) * 1024
    except ValueError:
        return False
    packed = False
    if loose > budget:
        run(folder, "repack", "-d", "-q")  # -d also drops the loose copies now packed
        packed = True
    run(folder, "gc", "--auto", "--quiet", check=False)
    return packed


def env_tracked(folder: Path) -> bool:
    """True when ``.env`` in the data folder is tracked by git (it holds secrets)."""
    return call(folder, "ls-files", "--error-unmatch", ".env").returncode == 0


def commit(folder: Path, files: list[str], message: str) -> str | None:
    """Commit exactly ``files`` (names in ``folder``) with ``message``.

    Whatever else the user staged stays staged and out of this commit. Returns the new commit
    id, or None when those files have no change.
    """
    present = [f for f in files if (folder / f).exists()]
    # A file the last commit has and the folder no longer does (``git rm assessments.csv``):
    # its deletion goes into this commit too, not left staged.
    missing = [f for f in files if f not in present]
    gone = run(folder, "ls-tree", "--name-only", "HEAD", "--", *missing,
               check=False).split() if missing else []
    named = present + [f for f in missing if f in gone]
    if not named or not run(folder, "status", "--porcelain", "--", *named).strip():
        return None
    if present:
        run(folder, "add", "--", *present)
    try:
        # The message goes through stdin: a long one (a run that moved thousands of cells,
        # a setup that added thousands of rows) would pass the system's argument limit.
        run(folder, "commit", "-q", "-F", "-", "--", *named, input=message.encode("utf-8"))
    except GitError as exc:
        # Leave nothing of ours staged: the index goes back to what the user had.
        run(folder, "reset", "-q", "--", *named, check=False)
        text = str(exc)
        if "user.email" in text or "identity" in text or "user.name" in text:
            raise GitError(IDENTITY_FIX.replace(", or pass --no-commit",
                                                ", then commit the data files")) from None
        raise
    return run(folder, "rev-parse", "--short", "HEAD").strip()


def untracked(folder: Path, files: Iterable[str]) -> list[str]:
    """Those of ``files`` that exist in ``folder`` and git has never been given."""
    present = [f for f in files if (folder / f).is_file()]
    if not present:
        return []
    known = set(run(folder, "ls-files", "--", *present, check=False).split())
    return [f for f in present if f not in known]


IDENTITY_FIX = ("git has no identity to commit with; run git config user.name 'Your Name' and "
                "git config user.email you@example.com (add --global for every repository), "
                "or pass --no-commit")


def has_identity(folder: Path) -> bool:
    """True when git can name an author and a committer for a commit made in ``folder``
    (config, GIT_AUTHOR_*/GIT_COMMITTER_* or EMAIL), exactly as ``git commit`` would."""
    for var in ("GIT_AUTHOR_IDENT", "GIT_COMMITTER_IDENT"):
        proc = subprocess.run(["git", "var", var], cwd=folder, capture_output=True)
        if proc.returncode != 0:
            return False
    return True


def user_name(folder: Path | None = None) -> str:
    """The assessor by default: git ``user.name``, else the login name."""
    if available():
        name = run(folder or Path.cwd(), "config", "user.name", check=False).strip()
        if name:
            return name
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        return "unknown"


def head(folder: Path, path: str) -> str | None:
    """The short id of the commit checked out in ``folder``'s repository, with ``+`` when
    ``path`` has changes not committed yet; None outside git or before the first commit."""
    if repo_root(folder) is None:
        return None
    sha = run(folder, "rev-parse", "--verify", "-q", "--short=12", "HEAD", check=False).strip()
    if not sha:
        return None
    dirty = run(folder, "status", "--porcelain", "--", path, check=False).strip()
    return f"{sha}+" if dirty else sha


def resolve_revision(folder: Path, when: str, path: str) -> str:
    """A commit for ``--as-of``: a commit-ish as given, or the last commit touching ``path``
    at or before the date ``when``."""
    if not run(folder, "rev-parse", "--verify", "-q", "HEAD", check=False).strip():
        raise GitError(f"--as-of {when}: the repository in {folder} has no commit yet, so "
                       "there is no history to look back on; commit first (any command that "
                       "changes data does, unless --no-commit)")
    looks_like_date = len(when) >= 8 and when[:4].isdigit() and when[4] == "-"
    if not looks_like_date:
        rev = run(folder, "rev-parse", "--verify", "--quiet", f"{when}^{{commit}}",
                  check=False).strip()
        if rev:
            return rev
        raise GitError(f"--as-of {when}: no such commit or date (use YYYY-MM-DD or a commit id)")
    until = when if "T" in when or " " in when else f"{when} 23:59:59"
    rev = run(folder, "rev-list", "-1", f"--before={until}", "HEAD", "--", path).strip()
    if not rev:
        raise GitError(f"--as-of {when}: {path} has no commit at or before that date")
    return rev


def show_file(folder: Path, revision: str, path: str) -> bytes:
    """The bytes of ``path`` (relative to ``folder``) at ``revision``."""
    proc = call(folder, "show", f"{revision}:./{path}")
    if proc.returncode != 0:
        raise GitError(f"{path} does not exist at commit {revision[:12]}")
    return proc.stdout


# ---------------------------------------------------------------------------- a merge under way
def blob_id(folder: Path, path: Path) -> str:
    """The id git gives the content of ``path`` (``git hash-object``)."""
    return run(folder, "hash-object", "--", str(path)).strip()


def _blob_at(folder: Path, revision: str, path: str) -> str:
    """The blob id of ``path`` at ``revision`` ('' when it has none)."""
    return run(folder, "rev-parse", "-q", "--verify", f"{revision}:{path}", check=False).strip()


def _applied_commits(folder: Path) -> list[str]:
    """The commits a merge, rebase, cherry-pick or pull may be bringing in, most likely first:
    what git leaves in its directory while it works (the rebase's last pick, FETCH_HEAD, the
    revision named in GIT_REFLOG_ACTION), then every branch and remote tip."""
    gdir = git_dir(folder)
    found: list[str] = []
    if gdir is not None:
        done = gdir / "rebase-merge" / "done"
        if done.is_file():
            picks = [line.split()[1] for line in done.read_text(errors="replace").splitlines()
                     if len(line.split()) > 1 and not line.startswith("#")]
            found += picks[-1:]
        for name in ("rebase-apply/original-commit", "CHERRY_PICK_HEAD", "MERGE_HEAD"):
            if (gdir / name).is_file():
                found += (gdir / name).read_text(errors="replace").split()[:1]
        fetch = gdir / "FETCH_HEAD"
        if fetch.is_file():
            found += [line.split()[0] for line in fetch.read_text(errors="replace").splitlines()
                      if line.strip() and "not-for-merge" not in line]
    action = os.environ.get("GIT_REFLOG_ACTION", "").split()
    if len(action) > 1 and action[0] == "merge":
        found += action[1:]
    found += run(folder, "for-each-ref", "--format=%(objectname)", "refs/heads",
                 "refs/remotes", check=False).split()
    return list(dict.fromkeys(found))


def merge_commits(folder: Path, path: str, base: Path, ours: Path,
                  theirs: Path) -> tuple[str | None, str, str] | None:
    """The commits (base, ours, theirs) whose versions of ``path`` git handed a merge driver
    as the files ``base``, ``ours`` and ``theirs``; None when they cannot be told for sure.

    Git does not tell a driver which commits it merges; they are found from HEAD (ours, in a
    merge as in a rebase) and the state git leaves while it works, each checked against the
    content git handed over. Base is None when the sides share no version of ``path``.
    """
    if _blob_at(folder, "HEAD", path) != blob_id(folder, ours):
        return None
    wanted = blob_id(folder, theirs)
    base_blob = blob_id(folder, base) if base.is_file() and base.stat().st_size else ""
    gdir = git_dir(folder)
    # A rebase or cherry-pick applies one commit onto HEAD (its base: the commit's parent);
    # a merge joins two lines (its base: where they part).
    picking = gdir is not None and any(
        (gdir / name).exists() for name in ("rebase-merge", "rebase-apply", "sequencer",
                                            "CHERRY_PICK_HEAD"))
    for commit in _applied_commits(folder):
        if _blob_at(folder, commit, path) != wanted:
            continue
        candidate = f"{commit}^" if picking else run(folder, "merge-base", "HEAD", commit,
                                                      check=False).strip()
        at = _blob_at(folder, candidate, path) if candidate else ""
        if at == base_blob:
            return (candidate if at else None), "HEAD", commit
    return None
