"""Real processes: several writing commands at once on one folder, and Ctrl-C / kill -9 at
points the test controls (interrupts.pause through SRE_TRACKER_TEST_PAUSE)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import config
from conftest import git
from database import Database
from sre_maturity.rules.views import write_matrix_file
from sre_maturity.support.context import Context
from sre_maturity.support.writelock import FolderLock

SCRIPT = Path(__file__).resolve().parent.parent / "sre_tracker.py"
WAIT = 60.0  # safety limit for a child to reach a stage; never an assertion on speed


def start(folder: Path, *args: str, pause: str | None = None, marker: Path | None = None
          ) -> subprocess.Popen:
    env = dict(os.environ)
    if pause:
        env.update(SRE_TRACKER_TEST_PAUSE=pause, SRE_TRACKER_TEST_PAUSE_FILE=str(marker))
    return subprocess.Popen([sys.executable, str(SCRIPT), "--data-dir", str(folder), *args],
                            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for(path: Path, proc: subprocess.Popen) -> None:
    """Wait until the child reaches its pause (a bounded number of polls, not a timing check)."""
    for _ in range(int(WAIT / 0.02)):
        if path.exists():
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    pytest.fail("the child never reached its pause")


def matrix_from_db(folder: Path, db_bytes: bytes, tmp: Path) -> str:
    """sre_matrix.csv as the database ``db_bytes`` says it should be."""
    other = tmp / "regenerated"
    other.mkdir(exist_ok=True)
    (other / "sre_data.db").write_bytes(db_bytes)
    ctx = Context(config.load(data_dir=str(other), no_commit=True))
    with Database(other / "sre_data.db") as db:
        write_matrix_file(ctx, db)
    return (other / "sre_matrix.csv").read_text(encoding="utf-8")


def head_pair_agrees(folder: Path, tmp: Path) -> bool:
    db = subprocess.run(["git", "show", "HEAD:sre_data.db"], cwd=folder, capture_output=True,
                        check=True).stdout
    matrix = git(folder, "show", "HEAD:sre_matrix.csv")
    return matrix == matrix_from_db(folder, db, tmp)


def level(folder: Path, asset: str, capability: str) -> int | None:
    with Database(folder / "sre_data.db") as db:
        cell = db.load_cells().get((asset, capability))
    return cell.level if cell is not None else None


# ------------------------------------------------------------------ one at a time
def test_concurrent_assess_runs_all_commit_and_head_agrees(ready, tmp_path):
    head = git(ready, "rev-parse", "HEAD").strip()
    runs = [("web", "Alerts", "2"), ("web", "Alerts", "3"), ("auth", "On-call", "1"),
            ("payment-api", "Dashboards", "4"), ("web", "Dashboards", "1"),
            ("auth", "Alerts", "5")]
    procs = [start(ready, "assess", "--asset", a, "--capability", c, "--level", n)
             for a, c, n in runs]
    results = [p.communicate(timeout=WAIT) + (p.returncode,) for p in procs]
    assert [code for _out, _err, code in results] == [0] * len(runs), results
    assert not any("Traceback" in err for _out, err, _code in results)
    log = git(ready, "log", "--format=%s", f"{head}..HEAD").splitlines()
    assert len(log) == len(runs) and all(s.startswith("assess:") for s in log)
    assert git(ready, "status", "--porcelain") == ""
    assert head_pair_agrees(ready, tmp_path)
    assert level(ready, "payment-api", "Dashboards") == 4
    assert not list(ready.glob(".*.tmp")) and not (ready / ".sre-tracker.lock").exists()


def test_a_waiting_command_says_so_once_and_then_runs(ready):
    with FolderLock(ready, print):
        proc = start(ready, "assess", "--asset", "web", "--capability", "Alerts", "--level", "2")
        line = proc.stderr.readline()  # blocks until the child has waited its second
        assert "waiting for another sre-tracker command" in line
        assert f"(process {os.getpid()})" in line and ".git" in line
    out, err = proc.communicate(timeout=WAIT)
    assert proc.returncode == 0, err
    assert "waiting" not in err  # said once
    assert git(ready, "status", "--porcelain") == ""


def test_read_only_commands_do_not_wait(ready, run):
    with FolderLock(ready, print):
        code, out, _err = run(ready, "status", "--format", "csv")
    assert code == 0 and out


def test_folder_lock_outside_git_leaves_the_folder_as_it_was(folder):
    before = sorted(p.name for p in folder.iterdir())
    with FolderLock(folder, print) as lock:
        assert (folder / ".sre-tracker.lock").exists() and not lock.in_git
    assert sorted(p.name for p in folder.iterdir()) == before


def test_lock_in_a_missing_folder_is_one_line(tmp_path, run):
    code, _out, err = run(tmp_path / "nope", "assess", "--asset", "x", "--level", "1",
                          "--capability", "y")
    assert code == 1 and len(err.strip().splitlines()) == 1 and "does not exist" in err


def test_temporary_files_are_unique_and_leave_nothing(tmp_path):
    from sre_maturity.store.csvfiles import atomic_write

    target = tmp_path / "out.csv"
    target.write_text("old", encoding="utf-8")
    target.chmod(0o640)
    atomic_write(target, "new\n")
    assert target.read_text(encoding="utf-8") == "new\n"
    assert target.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


# ------------------------------------------------------------------ Ctrl-C and kill -9
ASSESS = ("assess", "--asset", "web", "--capability", "Alerts", "--level", "3")


def paused(ready: Path, tmp_path: Path, stage: str, *args: str) -> tuple[subprocess.Popen,
                                                                         Path]:
    marker = tmp_path / f"paused-{stage.replace(':', '-')}"
    proc = start(ready, *(args or ASSESS), pause=stage, marker=marker)
    wait_for(marker, proc)
    return proc, marker


def test_ctrl_c_before_the_database_commit_writes_nothing(ready, tmp_path):
    before = ((ready / "sre_data.db").read_bytes(), git(ready, "rev-parse", "HEAD"))
    proc, marker = paused(ready, tmp_path, "before-db-commit")
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=WAIT)
    marker.unlink(missing_ok=True)
    assert proc.returncode == 130
    assert err.strip().splitlines()[-1] == "sre_tracker: interrupted; nothing was written"
    assert ((ready / "sre_data.db").read_bytes(), git(ready, "rev-parse", "HEAD")) == before
    assert git(ready, "status", "--porcelain") == ""


@pytest.mark.parametrize("stage", ["after-db-commit", "before-git-commit"])
def test_ctrl_c_after_the_database_commit_finishes_the_commit(ready, tmp_path, stage):
    head = git(ready, "rev-parse", "HEAD").strip()
    proc, marker = paused(ready, tmp_path, stage)
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)  # impatient: a second one changes nothing
    marker.unlink()
    _out, err = proc.communicate(timeout=WAIT)
    assert proc.returncode == 130, err
    assert "the change saved before the interrupt is committed (" in err.strip().splitlines()[-1]
    assert git(ready, "rev-list", "--count", f"{head}..HEAD").strip() == "1"
    assert git(ready, "status", "--porcelain") == ""
    assert level(ready, "web", "Alerts") == 3
    assert head_pair_agrees(ready, tmp_path)


def test_kill_between_database_commit_and_matrix_then_rerun_commits_a_consistent_pair(
        ready, tmp_path, run):
    proc, marker = paused(ready, tmp_path, "after-db-commit")
    proc.kill()
    proc.communicate(timeout=WAIT)
    marker.unlink()
    assert level(ready, "web", "Alerts") == 3  # the database has it, the matrix does not
    assert "sre_data.db" in git(ready, "status", "--porcelain")
    code, out, err = run(ready, "setup", "--from-csv")
    assert code == 0, err
    assert git(ready, "status", "--porcelain") == ""
    assert head_pair_agrees(ready, tmp_path)
    assert not (ready / ".git" / "sre-tracker.matrix-stale").exists()


def test_kill_then_an_assess_of_another_cell_commits_a_consistent_pair(ready, tmp_path, run):
    proc, marker = paused(ready, tmp_path, "after-db-commit")
    proc.kill()
    proc.communicate(timeout=WAIT)
    marker.unlink()
    code, _out, err = run(ready, "assess", "--asset", "auth", "--capability", "On-call",
                          "--level", "2")
    assert code == 0, err
    assert git(ready, "status", "--porcelain") == ""
    assert head_pair_agrees(ready, tmp_path)


def test_ctrl_c_at_a_later_step_of_a_push_commits_the_ids_already_stored(ready, tmp_path,
                                                                         monkeypatch, run):
    from fake_rally import FakeRally

    assert run(ready, "assess", "--asset", "web", "--capability", "On-call", "--level",
               "1")[0] == 0
    with FakeRally() as fake:
        for name, value in (("RALLY_BASE_URL", fake.url), ("RALLY_API_KEY", fake.api_key),
                            ("RALLY_WORKSPACE_ID", fake.workspace_id),
                            ("RALLY_PROJECT_ID", fake.project_id), ("RALLY_PARENT_ID", "F1")):
            monkeypatch.setenv(name, value)
        # The first transaction adopts existing stories; the second stores the first new id.
        proc, marker = paused(ready, tmp_path, "after-db-commit:2", "report", "--push")
        proc.send_signal(signal.SIGINT)
        marker.unlink()
        _out, err = proc.communicate(timeout=WAIT)
    assert proc.returncode == 130, err
    assert "the change saved before the interrupt is committed (" in err
    assert git(ready, "status", "--porcelain") == ""
    with Database(ready / "sre_data.db") as db:
        stored = [it for it in db.load_items() if it["rally_oid"]]
    assert len(stored) >= 1
    assert head_pair_agrees(ready, tmp_path)


def test_ctrl_c_after_a_later_setups_database_commit_commits_it(ready, tmp_path):
    flows = (ready / "flows.csv").read_text(encoding="utf-8") + "Login,sso,Identity,3\n"
    (ready / "flows.csv").write_text(flows, encoding="utf-8")
    head = git(ready, "rev-parse", "HEAD").strip()
    proc, marker = paused(ready, tmp_path, "after-db-commit", "setup", "--from-csv")
    proc.send_signal(signal.SIGINT)
    marker.unlink()
    _out, err = proc.communicate(timeout=WAIT)
    assert proc.returncode == 130, err
    assert "the change saved before the interrupt is committed (" in err
    assert git(ready, "rev-list", "--count", f"{head}..HEAD").strip() == "1"
    assert git(ready, "status", "--porcelain") == ""
    assert head_pair_agrees(ready, tmp_path)


def test_ctrl_c_after_a_first_setups_database_commit_leaves_the_folder_as_it_was(folder,
                                                                                 tmp_path):
    before = sorted(p.name for p in folder.iterdir())
    proc, marker = paused(folder, tmp_path, "after-db-commit", "setup", "--from-csv")
    proc.send_signal(signal.SIGINT)
    marker.unlink()
    _out, err = proc.communicate(timeout=WAIT)
    assert proc.returncode == 130
    assert err.strip().splitlines()[-1] == "sre_tracker: interrupted; nothing was written"
    assert sorted(p.name for p in folder.iterdir()) == before
