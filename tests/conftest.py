"""Shared fixtures: a clean environment, git identity, and small data folders."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from pathlib import Path

import pytest
import urllib3.util.retry
from hypothesis import settings

import sre_tracker

# Property tests check correctness, not speed: a busy CI machine must not fail them on time.
settings.register_profile("sre-tracker", deadline=None)
settings.load_profile("sre-tracker")

FLOWS = """Flow,Asset Name,Team,Target Level
Checkout,payment-api,Payments,4
Checkout,web,Storefront,3
Login,web,Storefront,2
Login,auth,Identity,3
"""

MODEL = """Category,Capability,Level,Criteria,Question,Owner,Priority,Required for Go Live,Target Milestone
Monitoring,Dashboards,1,Basic metrics are collected,Are basic metrics collected?,Asset,,Yes,Go-Live
Monitoring,Dashboards,2,A service dashboard exists,Is there a service dashboard?,Asset,,Yes,Go-Live
Monitoring,Dashboards,3,Dashboards show the golden signals,Does it show the four golden signals?,Asset,P2,No,2027-Q2
Monitoring,Dashboards,4,Dashboards are linked from runbooks,Are dashboards linked from runbooks?,SRE,,No,
Monitoring,Dashboards,5,Dashboards are generated from code,Are dashboards generated from code?,SRE,P4,No,
Alerting,Alerts,1,Some alerts exist,Do any alerts exist?,Asset,,Yes,Go-Live
Alerting,Alerts,2,Alerts page the on-call,Do alerts page the on-call engineer?,Asset,,No,
Alerting,Alerts,3,Every alert is actionable,Is every alert actionable?,Asset,,No,
Alerting,Alerts,4,Alerts are tuned monthly,Are alerts reviewed monthly?,Asset,,No,
Alerting,Alerts,5,Alerts are SLO burn-rate based,Are alerts based on SLO burn rate?,SRE,,No,
Alerting,On-call,1,Someone is reachable,Is someone reachable out of hours?,Support,,Yes,Go-Live
Alerting,On-call,2,A rota exists,Is there a written on-call rota?,Support,,Yes,Go-Live
Alerting,On-call,3,Handover is documented,Is the handover documented?,Support,,Yes,Go-Live
Alerting,On-call,4,Load is measured,Is on-call load measured?,SRE,,No,
Alerting,On-call,5,Load is balanced,Is on-call load balanced across teams?,SRE,,No,
"""


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No settings leak in from the machine; commits work without a global git identity; the
    database check stamps go to a cache of the test's own, trusted commands to a state folder
    of its own."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
    # Trusted command texts live in the user's state folder: each test gets an empty one.
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state")))
    for name in list(os.environ):
        if name.startswith(("RALLY_", "CONFLUENCE_", "SRE_TRACKER_", "SPLUNK_", "PROMETHEUS_",
                            "PAGERDUTY_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("NO_COLOR", "1")
    for var, value in (("GIT_AUTHOR_NAME", "Test Er"), ("GIT_AUTHOR_EMAIL", "t@example.com"),
                       ("GIT_COMMITTER_NAME", "Test Er"),
                       ("GIT_COMMITTER_EMAIL", "t@example.com")):
        monkeypatch.setenv(var, value)


def git(folder: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True,
                          check=True).stdout


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A data folder with flows.csv and a small model, not yet set up."""
    d = tmp_path / "data"
    d.mkdir()
    (d / "flows.csv").write_text(FLOWS, encoding="utf-8")
    (d / "maturity_model.csv").write_text(MODEL, encoding="utf-8")
    return d


@pytest.fixture
def run(capsys: pytest.CaptureFixture):
    """Call ``main`` with a data folder; returns (exit code, stdout, stderr)."""

    def _run(folder: Path, *args: str) -> tuple[int, str, str]:
        code = sre_tracker.main(["--data-dir", str(folder), *args])
        out, err = capsys.readouterr()
        return code, out, err

    return _run


@pytest.fixture
def ready(folder: Path, run) -> Path:
    """A data folder that has been set up (git repo, database, first commit)."""
    code, _out, err = run(folder, "setup", "--from-csv")
    assert code == 0, err
    return folder


@pytest.fixture
def gaps(ready: Path, run) -> Path:
    """web at On-call L1: two Red items (L2, L3) and nothing else assessed."""
    code, _out, err = run(ready, "assess", "--asset", "web", "--capability", "On-call",
                          "--level", "1")
    assert code == 0, err
    return ready


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The waits urllib3 makes between attempts, recorded instead of slept (speed belongs to
    bench/, tests check which waits were asked for)."""
    recorded: list[float] = []
    monkeypatch.setattr(urllib3.util.retry.time, "sleep", recorded.append)
    return recorded


@pytest.fixture
def rally(monkeypatch: pytest.MonkeyPatch):
    """A running fake Rally with the tool's RALLY_* settings pointing at it."""
    from fake_rally import FakeRally

    with FakeRally() as fake:
        for name, value in (("RALLY_BASE_URL", fake.url), ("RALLY_API_KEY", fake.api_key),
                            ("RALLY_WORKSPACE_ID", fake.workspace_id),
                            ("RALLY_PROJECT_ID", fake.project_id), ("RALLY_PARENT_ID", "F1")):
            monkeypatch.setenv(name, value)
        yield fake


@pytest.fixture
def clones(ready: Path, tmp_path: Path) -> tuple[Path, Path]:
    """Two clones of the data folder sharing a bare origin."""
    origin = tmp_path / "origin.git"
    git(tmp_path, "clone", "-q", "--bare", str(ready), str(origin))
    a, b = tmp_path / "a", tmp_path / "b"
    for clone in (a, b):
        git(tmp_path, "clone", "-q", str(origin), str(clone))
    return a, b


def at(monkeypatch: pytest.MonkeyPatch, when: str) -> None:
    """Make the tool believe it is ``when`` (assessments, item stamps, imports)."""
    import database
    from sre_maturity.commands import setup_data

    monkeypatch.setattr(database, "now_iso", lambda: when)
    monkeypatch.setattr(setup_data, "now_iso", lambda: when)


def pull(folder: Path, how: str = "merge") -> subprocess.CompletedProcess:
    """``git pull`` merging (``how="merge"``) or rebasing (``"rebase"``)."""
    return subprocess.run(["git", "-c", f"pull.rebase={str(how == 'rebase').lower()}", "pull",
                           "-q", "--no-edit"], cwd=folder, capture_output=True, text=True)


def push(folder: Path) -> None:
    git(folder, "push", "-q", "origin", "HEAD")


def old_schema_file(path: Path, version: int) -> sqlite3.Connection:
    """An empty database file as schema ``version`` left it (its migrations' SQL only), open;
    the caller fills it, commits and closes it."""
    import database
    from sre_maturity.store import schema

    conn = sqlite3.connect(path)
    for target in range(1, version + 1):
        for statement in schema.MIGRATIONS[target].split(";"):
            if statement.strip():
                conn.execute(statement)
    conn.execute(f"PRAGMA application_id={database.APPLICATION_ID}")
    conn.execute(f"PRAGMA user_version={version}")
    return conn
