"""The last ways a write could go astray (issue 26): a git pull under a running assess, a run
killed between its two commits, a database that is a link or a pipe or in use by another
program, plain-http URLs and secrets in messages. Real processes, real git clones, a real
listener on 127.0.0.1 standing in for a proxy."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from test_races_and_signals import ASSESS, SCRIPT, WAIT, head_pair_agrees, level, paused

from conftest import git
from fake_http import Listener


def clones(ready: Path, tmp_path: Path) -> tuple[Path, Path]:
    """Two clones A and B of one origin made from the set-up folder."""
    origin = tmp_path / "origin.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(ready), str(origin)], check=True)
    pair = []
    for name in ("A", "B"):
        subprocess.run(["git", "clone", "-q", str(origin), str(tmp_path / name)], check=True)
        pair.append(tmp_path / name)
    return pair[0], pair[1]


def finish(proc: subprocess.Popen, marker: Path) -> tuple[str, str]:
    marker.unlink(missing_ok=True)
    return proc.communicate(timeout=WAIT)


# ------------------------------------------------------------------ 1. a pull under an assess
def test_a_pull_during_an_assess_is_never_reported_as_saved(ready, tmp_path, run):
    a, b = clones(ready, tmp_path)
    assert run(a, "assess", "--asset", "web", "--capability", "Alerts", "--level", "2")[0] == 0
    git(a, "push", "-q", "origin", "HEAD")
    proc, marker = paused(b, tmp_path, "before-db-commit", "assess", "--asset", "auth",
                          "--capability", "On-call", "--level", "3")
    git(b, "pull", "-q", "--ff-only")  # replaces B's sre_data.db while the assess holds it
    out, err = finish(proc, marker)
    assert proc.returncode == 1, err
    assert "saved" not in out.lower()
    line = err.strip().splitlines()[-1]
    assert "sre_data.db was replaced while this command ran" in line
    assert "nothing was saved; run the command again" in line and "Traceback" not in err
    assert git(b, "status", "--porcelain") == ""
    assert level(b, "web", "Alerts") == 2 and level(b, "auth", "On-call") is None
    assert head_pair_agrees(b, tmp_path)
    code, _out, err = run(b, "assess", "--asset", "auth", "--capability", "On-call",
                          "--level", "3")  # the run again the message asks for
    assert code == 0, err
    assert level(b, "auth", "On-call") == 3 and git(b, "status", "--porcelain") == ""


def test_a_checkout_between_the_two_commits_is_refused_and_the_matrix_follows_the_file(
        ready, tmp_path, run):
    before = git(ready, "rev-parse", "HEAD").strip()
    proc, marker = paused(ready, tmp_path, "before-git-commit")
    # Another program puts the committed file back under the running command.
    git(ready, "checkout", "--", "sre_data.db")
    out, err = finish(proc, marker)
    assert proc.returncode == 1, err
    assert "was replaced after this command saved its change in it" in err
    assert "is neither in the folder nor in git; run the command again" in err
    assert git(ready, "rev-parse", "HEAD").strip() == before
    assert git(ready, "status", "--porcelain") == ""
    assert head_pair_agrees(ready, tmp_path)


# ------------------------------------------------------------------ 2. leftovers and signals
def test_a_kill_between_the_commits_of_a_push_is_committed_by_the_same_push_run_again(
        gaps, tmp_path, rally, run):
    proc, marker = paused(gaps, tmp_path, "before-git-commit", "report", "--push")
    proc.kill()
    finish(proc, marker)
    assert "sre_data.db" in git(gaps, "status", "--porcelain")
    code, _out, err = run(gaps, "report", "--push")
    assert code == 0, err
    assert "committed the change an interrupted run had saved but not committed" in err
    assert git(gaps, "status", "--porcelain") == ""
    assert git(gaps, "log", "-1", "--format=%s").startswith("recover: ")
    assert len(rally.stories_tagged("SRE-Maturity")) == 2  # nothing created twice
    assert head_pair_agrees(gaps, tmp_path)
    assert not (gaps / ".git" / "sre-tracker.uncommitted").exists()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_after_the_database_commit_finish_the_commit(ready, tmp_path,
                                                                        signum):
    head = git(ready, "rev-parse", "HEAD").strip()
    proc, marker = paused(ready, tmp_path, "after-db-commit")
    proc.send_signal(signum)
    _out, err = finish(proc, marker)
    assert proc.returncode == 130, err
    assert "the change saved before the interrupt is committed (" in err
    assert git(ready, "rev-list", "--count", f"{head}..HEAD").strip() == "1"
    assert git(ready, "status", "--porcelain") == "" and level(ready, "web", "Alerts") == 3


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_before_the_database_commit_write_nothing(ready, tmp_path, signum):
    before = (ready / "sre_data.db").read_bytes()
    proc, marker = paused(ready, tmp_path, "before-db-commit")
    proc.send_signal(signum)
    _out, err = finish(proc, marker)
    assert proc.returncode == 130
    assert err.strip().splitlines()[-1] == "sre_tracker: interrupted; nothing was written"
    assert (ready / "sre_data.db").read_bytes() == before


def test_a_git_lock_file_is_named_and_the_next_run_commits_the_leftover(ready, tmp_path, run):
    proc, marker = paused(ready, tmp_path, "before-git-commit")
    lock = ready / ".git" / "index.lock"
    lock.write_text("", encoding="utf-8")  # a git command that crashed earlier
    _out, err = finish(proc, marker)
    assert proc.returncode == 1
    line = err.strip().splitlines()[-1]
    assert str(lock) in line and "the change is saved" in line, line
    lock.unlink()
    # Nothing else to do for setup: today it commits the leftover all the same.
    code, _out, err = run(ready, "setup", "--from-csv")
    assert code == 0, err
    assert git(ready, "status", "--porcelain") == ""
    assert git(ready, "log", "-1", "--format=%s").startswith("recover: ")
    assert level(ready, "web", "Alerts") == 3 and head_pair_agrees(ready, tmp_path)


def test_a_no_commit_run_is_not_taken_for_an_interrupted_one(ready, run):
    assert run(ready, "--no-commit", *ASSESS)[0] == 0
    code, _out, err = run(ready, "assess", "--asset", "auth", "--capability", "Alerts",
                          "--level", "1")
    assert code == 0, err
    assert "interrupted run" not in err
    assert not git(ready, "log", "--format=%s").startswith("recover:")


# ------------------------------------------------------------------ 3. not a regular file
def test_a_symlinked_database_is_refused_and_never_committed(ready, tmp_path, run):
    real = tmp_path / "elsewhere.db"
    (ready / "sre_data.db").rename(real)
    (ready / "sre_data.db").symlink_to(real)
    for args in (("status",), ASSESS):
        code, _out, err = run(ready, *args)
        assert code == 1 and "sre_data.db is a symbolic link" in err, err
    assert git(ready, "ls-files", "-s", "sre_data.db").startswith("100644")


def test_a_failed_first_setup_keeps_the_users_symlink(folder, tmp_path, run):
    link = folder / "sre_data.db"
    link.symlink_to(tmp_path / "missing.db")
    code, _out, err = run(folder, "setup", "--from-csv")
    assert code == 1 and "symbolic link" in err
    assert link.is_symlink() and not (tmp_path / "missing.db").exists()


def test_a_fifo_in_place_of_the_database_is_refused_not_waited_on(ready, run):
    (ready / "sre_data.db").unlink()
    os.mkfifo(ready / "sre_data.db")
    code, _out, err = run(ready, "status")
    assert code == 1 and "sre_data.db is a FIFO" in err


# ------------------------------------------------------------------ a stale rollback journal
KILLED_WRITE = """
import os, sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA cache_size=2")  # pages spill into the file before the commit
conn.execute("BEGIN IMMEDIATE")
conn.execute("CREATE TABLE junk (x TEXT)")
for _ in range(3000):
    conn.execute("INSERT INTO junk VALUES (?)", ("y" * 200,))
os._exit(9)  # killed mid-write: a hot journal is left beside the file
"""


def kill_a_write(folder: Path) -> Path:
    subprocess.run([sys.executable, "-c", KILLED_WRITE, str(folder / "sre_data.db")],
                   check=False, timeout=WAIT)
    journal = folder / "sre_data.db-journal"
    assert journal.is_file()
    return journal


def test_a_journal_left_for_an_earlier_copy_is_set_aside_not_replayed(ready, run):
    """A run killed mid-write leaves sre_data.db-journal; git then puts another version of the
    file there. Replaying the journal onto it would damage it: it is set aside instead."""
    assert run(ready, *ASSESS)[0] == 0
    older = git_bytes(ready, "HEAD~1:sre_data.db")
    journal = kill_a_write(ready)
    replacement = ready / "incoming.tmp"
    replacement.write_bytes(older)
    os.replace(replacement, ready / "sre_data.db")  # as a checkout or a pull writes it
    code, out, err = run(ready, "status")
    assert code == 0, err
    assert "sre_data.db-journal belonged to an earlier copy of sre_data.db" in err
    assert not journal.exists()
    assert list((ready / ".git").glob("sre_data.db-journal.stale-*"))
    assert (ready / "sre_data.db").read_bytes() == older  # untouched by a replay
    assert "target" in out


def test_a_journal_of_the_file_itself_is_rolled_back_as_sqlite_does(ready, run):
    before = (ready / "sre_data.db").read_bytes()
    kill_a_write(ready)
    code, _out, err = run(ready, "status")
    assert code == 0 and "earlier copy" not in err
    assert not (ready / "sre_data.db-journal").exists()
    assert (ready / "sre_data.db").read_bytes()[:100] == before[:100]
    import sqlite3

    conn = sqlite3.connect(ready / "sre_data.db")
    try:  # the killed write is gone, the file whole
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        assert "junk" not in names
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()


def git_bytes(folder: Path, spec: str) -> bytes:
    return subprocess.run(["git", "show", spec], cwd=folder, capture_output=True,
                          check=True).stdout


# ------------------------------------------------------------------ 4. in use elsewhere
HOLD_LOCK = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
"""


def test_a_database_locked_by_another_program_is_in_use_not_damaged(ready, run):
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(ready / "sre_data.db")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        code, _out, err = run(ready, *ASSESS)
    finally:
        holder.communicate("\n", timeout=WAIT)
    assert code == 1
    assert "in use by another program" in err and "damaged" not in err
    assert "git checkout" not in err
    assert git(ready, "status", "--porcelain") == ""


# ------------------------------------------------------------------ 9. no key in clear text
@pytest.mark.parametrize("command", [("report", "--push"), ("check",)])
def test_a_plain_http_url_is_refused_before_the_key_leaves(gaps, rally, monkeypatch, run,
                                                           command):
    proxy = Listener()
    try:
        monkeypatch.setenv("RALLY_BASE_URL", "http://rally.example.com")
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("http_proxy", proxy.url)
        code, out, err = run(gaps, *command)
    finally:
        proxy.close()
    assert code == 1
    assert "RALLY_BASE_URL uses http://" in out + err and "clear text" in out + err
    assert proxy.received == b"" and rally.api_key.encode() not in proxy.received
    assert git(gaps, "status", "--porcelain") == ""


def test_plain_http_to_this_machine_is_accepted():
    import config

    assert config.check_url("X_URL", "http://127.0.0.1:8080/") == "http://127.0.0.1:8080"
    assert config.check_url("X_URL", "http://localhost") == "http://localhost"
    assert config.check_url("X_URL", "http://[::1]:9/x") == "http://[::1]:9/x"


# ------------------------------------------------------------------ 10. secrets in messages
def test_a_confluence_error_echoing_the_rally_key_is_masked(gaps, rally, run, monkeypatch):
    from fake_confluence import FakeConfluence

    with FakeConfluence() as wiki:
        page = wiki.add_page("SRE", "<h2>SRE Action Items</h2>")
        for name, value in {**wiki.settings("datacenter"), "CONFLUENCE_PAGE_ID": page}.items():
            monkeypatch.setenv(name, value)
        wiki.fail_next(1, 400, body=f"bad header ZSESSIONID={rally.api_key} in request",
                       content_type="text/plain")
        code, out, err = run(gaps, "-v", "report", "--push")
    assert code == 3, err
    assert rally.api_key not in out + err and "<hidden>" in err


def test_a_key_in_a_url_query_is_refused_and_never_shown(gaps, run, monkeypatch):
    key = "_aVeryLongRallyKey0123456789abcdef"
    monkeypatch.setenv("RALLY_BASE_URL", f"https://rally1.rallydev.com/?apikey={key}")
    code, out, err = run(gaps, "-v", "check")
    assert code == 1 and "RALLY_BASE_URL has a query" in out + err
    assert key not in out + err


def test_a_key_pasted_into_the_wrong_setting_is_not_echoed(gaps, run, monkeypatch):
    key = "_aVeryLongRallyKey0123456789abcdef"
    monkeypatch.setenv("RALLY_WORKSPACE_ID", key)
    code, out, err = run(gaps, "-v", "check")
    assert code == 1 and "RALLY_WORKSPACE_ID must be a numeric id" in out + err
    assert key not in out + err


def test_every_known_secret_is_masked_in_any_message(monkeypatch):
    import config

    monkeypatch.setenv("CONFLUENCE_PAT", "pat-0123456789")
    config.load(environ=dict(os.environ))
    assert config.mask_secrets("x pat-0123456789 y") == "x <hidden> y"
    assert config.mask_secrets("short") == "short"


def test_secrets_in_dotenv_are_taken_as_written(tmp_path):
    import config

    (tmp_path / ".env").write_text("HOME_X=/h\nRALLY_API_KEY=_ab${HOME_X}cd12345\n"
                                   "CONFLUENCE_BASE_URL=https://wiki.example.com${HOME_X}\n",
                                   encoding="utf-8")
    settings = config.load(data_dir=str(tmp_path), environ={})
    assert settings.get("RALLY_API_KEY") == "_ab${HOME_X}cd12345"
    assert settings.get("CONFLUENCE_BASE_URL") == "https://wiki.example.com/h"



# ------------------------------------------------------------------ 7. a clone that git locks
def test_reads_work_when_the_drivers_cannot_be_registered(gaps, tmp_path, run):
    clone = tmp_path / "ro"
    subprocess.run(["git", "clone", "-q", str(gaps), str(clone)], check=True)
    # Another git holds .git/config (as root a chmod would not stop git, a lock file does).
    (clone / ".git" / "config.lock").write_text("", encoding="utf-8")
    (clone / ".git" / "config").chmod(0o444)
    for args, wanted in ((("gate", "--flow", "Login"), 4),
                         (("gate", "--asset", "auth", "--allow-unassessed"), 0),
                         (("status",), 0), (("history",), 0), (("export",), 0)):
        code, _out, err = run(clone, *args)
        assert code == wanted, (args, err)
        assert "Traceback" not in err
    assert "the merge drivers are not registered in this clone" in err


def test_a_broken_git_folder_is_named_not_called_missing(ready, run):
    (ready / ".git" / "HEAD").write_text("garbage\n", encoding="utf-8")
    code, _out, err = run(ready, *ASSESS)
    assert code == 1
    assert f"{ready / '.git'} is there but git cannot use it" in err
    assert "not a git repository;" not in err


# ------------------------------------------------------------------ 8. causes, not symptoms
def test_a_failed_matrix_write_after_the_database_commit_names_the_file_and_says_saved(
        ready, tmp_path, run):
    (ready / "sre_matrix.csv").unlink()
    (ready / "sre_matrix.csv").mkdir()  # a folder in the way of the file
    code, _out, err = run(ready, *ASSESS)
    assert code == 1
    line = err.strip().splitlines()[-1]
    assert f"{ready / 'sre_matrix.csv'}:" in line and ".tmp" not in line
    assert "the change itself is saved in sre_data.db" in line
    (ready / "sre_matrix.csv").rmdir()
    git(ready, "checkout", "--", "sre_matrix.csv")
    code, _out, err = run(ready, "setup", "--from-csv")
    assert code == 0, err
    assert git(ready, "status", "--porcelain") == "" and level(ready, "web", "Alerts") == 3
    assert head_pair_agrees(ready, tmp_path)


# ------------------------------------------------------------------ 5. and 6. push outcomes
def test_a_bad_confluence_setting_stops_the_push_before_rally_is_written(gaps, rally, run,
                                                                         monkeypatch):
    monkeypatch.setenv("CONFLUENCE_BASE_URL", "https://wiki.example.com")
    monkeypatch.setenv("CONFLUENCE_PAT", "pat-0123456789")
    monkeypatch.setenv("CONFLUENCE_PAGE_ID", "the todo page")
    head = git(gaps, "rev-parse", "HEAD")
    code, _out, err = run(gaps, "report", "--push")
    assert code == 1 and "CONFLUENCE_PAGE_ID must be a numeric id" in err
    assert rally.stories_tagged("SRE-Maturity") == [] and rally.count("POST") == 0
    assert git(gaps, "rev-parse", "HEAD") == head
    code, _out, err = run(gaps, "sync")
    assert code == 1 and "CONFLUENCE_PAGE_ID" in err
    assert git(gaps, "rev-parse", "HEAD") == head


def test_ctrl_c_during_a_push_says_stories_may_exist(gaps, rally, tmp_path):
    proc, marker = paused(gaps, tmp_path, "before-db-commit:2", "report", "--push")
    proc.send_signal(signal.SIGINT)
    _out, err = finish(proc, marker)
    assert proc.returncode == 130
    assert "Rally may hold stories created just before the interrupt" in err
    assert "adopts them" in err


# ------------------------------------------------------------------ small
def test_a_lock_held_by_another_program_names_no_stale_process(ready, tmp_path):
    import fcntl

    lock = ready / ".git" / "sre-tracker.lock"
    lock.write_text("999999999\n", encoding="utf-8")  # left by a run long gone
    with open(lock, "rb+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # another program (flock(1), a backup tool) holds it
        proc = subprocess.Popen([sys.executable, str(SCRIPT), "--data-dir", str(ready),
                                 *ASSESS], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        assert proc.stderr is not None
        line = proc.stderr.readline()
    _out, err = proc.communicate(timeout=WAIT)
    assert "waiting for another sre-tracker command" in line and "process" not in line
    assert proc.returncode == 0, err
    assert lock.read_text(encoding="utf-8") == ""  # emptied as the run left


def test_the_rollback_journal_is_ignored_by_git(ready):
    assert "sre_data.db-journal" in (ready / ".gitignore").read_text(encoding="utf-8")


def test_a_killed_first_setup_leaves_no_notes_in_the_folder_once_set_up(folder, tmp_path,
                                                                         run):
    proc, marker = paused(folder, tmp_path, "after-db-commit", "setup", "--from-csv")
    proc.kill()
    finish(proc, marker)
    assert (folder / ".sre-tracker.lock").exists()  # what the kill left
    code, _out, err = run(folder, "setup", "--from-csv")
    assert code == 0, err
    assert not (folder / ".sre-tracker.lock").exists()
    assert not (folder / ".sre-tracker.matrix-stale").exists()
    assert git(folder, "status", "--porcelain", "--untracked-files=no") == ""
    assert head_pair_agrees(folder, tmp_path)


def test_a_pull_while_an_interactive_assess_waits_saves_into_the_new_file(ready, tmp_path):
    import shutil

    from test_interactive import NOTES, SAVE, reply, spawn
    from test_interactive import finish as finish_child

    child = spawn(ready, "assess", "--asset", "web", "--capability", "Alerts")
    child.expect_exact("Do any alerts exist?")
    reply(child, "] ", "n")
    reply(child, NOTES, "")
    child.expect_exact(SAVE)
    # What a git pull does to the file while the prompt waits: a new file in its place. The
    # save opens the folder's file again under the lock, so it lands there (no read-only
    # disk, no write into the old file).
    db = ready / "sre_data.db"
    shutil.copyfile(db, ready / "pulled.db")
    os.replace(ready / "pulled.db", db)
    child.sendline("y")
    code, _sig, transcript = finish_child(child)
    assert code == 0, transcript
    assert "read-only" not in transcript and "\r\nsaved" in transcript
    assert level(ready, "web", "Alerts") == 0
    assert git(ready, "status", "--porcelain") == "" and head_pair_agrees(ready, tmp_path)
