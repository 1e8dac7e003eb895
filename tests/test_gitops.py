"""git wiring of the data folder: files, drivers, revisions, check."""

from __future__ import annotations

import pytest

from conftest import git
from sre_maturity.git import gitops
from sre_maturity.support.errors import GitError


def test_ensure_files_is_idempotent_and_keeps_user_lines(ready):
    (ready / ".gitignore").write_text("my-notes/\n")
    first = gitops.ensure_files(ready)
    second = gitops.ensure_files(ready)
    text = (ready / ".gitignore").read_text()
    assert (first, second) == ([".gitignore"], []) and text.startswith("my-notes/\n")
    assert ".env" in text.split()


def test_drivers_are_registered_again_when_config_is_lost(ready, run):
    git(ready, "config", "--local", "--remove-section", "merge.sre-tracker")
    assert not gitops.drivers_registered(ready)
    run(ready, "status")
    assert gitops.drivers_registered(ready)


def test_resolve_revision_by_date_and_commit(ready, run):
    head = git(ready, "rev-parse", "HEAD").strip()
    assert gitops.resolve_revision(ready, "2099-01-01", "sre_data.db") == head
    assert gitops.resolve_revision(ready, head[:10], "sre_data.db") == head


@pytest.mark.parametrize("when", ["1999-01-01", "no-such-ref"])
def test_resolve_revision_errors(ready, when):
    with pytest.raises(GitError, match="--as-of"):
        gitops.resolve_revision(ready, when, "sre_data.db")


def test_show_file_missing_at_revision(ready):
    with pytest.raises(GitError, match="does not exist"):
        gitops.show_file(ready, "HEAD", "nope.db")


def test_status_as_of_an_older_commit_shows_old_levels(ready, run):
    import json

    run(ready, "assess", "--asset", "web", "--capability", "Alerts", "--level", "1")
    first = git(ready, "rev-parse", "HEAD").strip()
    run(ready, "assess", "--asset", "web", "--capability", "Alerts", "--level", "4")
    code, out, _err = run(ready, "status", "--format", "json", "--as-of", first)
    level = next(e["level"] for e in json.loads(out)["matrix"]
                 if (e["asset"], e["capability"]) == ("web", "Alerts"))
    assert (code, level) == (0, 1)


def test_status_as_of_needs_a_repository(ready, run):
    import shutil

    shutil.rmtree(ready / ".git")
    code, _out, err = run(ready, "status", "--as-of", "2026-01-01")
    assert code == 1 and "needs git history" in err


@pytest.mark.parametrize("when", ["2026-01-01", "HEAD", "abc123"])
def test_status_as_of_in_a_repository_with_no_commit_yet_says_so(folder, run, when):
    assert run(folder, "--no-commit", "setup", "--from-csv")[0] == 0
    git(folder, "init", "-q")
    code, out, err = run(folder, "status", "--as-of", when)
    assert (code, out) == (1, "")
    assert err == (f"sre_tracker: error: --as-of {when}: the repository in {folder} has no "
                   "commit yet, so there is no history to look back on; commit first (any "
                   "command that changes data does, unless --no-commit)\n")


def test_user_name_falls_back_to_login(tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "none"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert gitops.user_name(tmp_path)


def test_check_without_credentials_skips_servers_and_passes(ready, run):
    code, out, _err = run(ready, "check")
    lines = out.splitlines()
    assert code == 0
    assert any(line.startswith("skip  rally: not configured") for line in lines)
    assert any(line.startswith("skip  confluence: not configured") for line in lines)
    assert any(line.startswith("ok    git: merge driver") for line in lines)


def test_check_fails_without_database(tmp_path, run):
    code, out, _err = run(tmp_path, "check")
    assert code == 1 and "FAIL  database: no sre_data.db" in out


def test_every_git_call_is_logged_with_vv(ready, run):
    """Each git call goes through gitops.call, so -vv shows all of them (lookups included)."""
    code, _out, err = run(ready, "-vv", "status", "--as-of", "2099-01-01")
    assert code == 0, err
    for command in ("git rev-parse --show-toplevel", "git rev-list -1", "git show "):
        assert f"running: {command}" in err
