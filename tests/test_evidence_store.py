"""The evidence's store (SPEC §12): schema 4's tables, the migration from 3 with its backup, and
the Database methods that read and write checks, parameters, evidence and overrides."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

import database
from conftest import old_schema_file
from database import Database
from sre_maturity.rules.checkspec import AssetParams, CheckRow, EvidenceRecord, Override
from sre_maturity.store.imports import import_checks

T1, T2, T3 = "2026-11-01T10:00:00+00:00", "2026-11-02T10:00:00+00:00", "2026-11-03T10:00:00+00:00"


class Run(tuple):
    """A verdict as the runner hands it over (named fields; link may be None)."""

    fields = ("asset", "check", "verdict", "detail", "link", "checked_at", "valid_until",
              "fingerprint")

    def __new__(cls, *values):
        return super().__new__(cls, values)

    def __getattr__(self, name):
        return self[self.fields.index(name)]


def make_v3_file(path: Path) -> None:
    """A database as schema 3 left it, with an assessed cell."""
    conn = old_schema_file(path, 3)
    conn.execute("INSERT INTO assets (asset) VALUES ('api')")
    conn.execute("INSERT INTO capabilities (capability, category) VALUES ('Alerts', 'Alerting')")
    conn.execute("INSERT INTO cells (asset, capability, state, level, assessed_at) "
                 "VALUES ('api', 'Alerts', 'Assessed', 2, '2026-01-01')")
    conn.commit()
    conn.close()


@pytest.fixture
def db(tmp_path: Path):
    with Database(tmp_path / "sre_data.db", create=True) as opened:
        yield opened


def test_schema_3_is_upgraded_with_a_backup_and_keeps_its_data(tmp_path):
    path = tmp_path / "sre_data.db"
    make_v3_file(path)
    original = path.read_bytes()
    with Database(path) as db:
        assert (db.migrated_from, db.schema_version()) == (3, database.SCHEMA_VERSION)
        assert db.load_cells()[("api", "Alerts")].level == 2
        assert (db.load_checks(), db.load_asset_params(), db.load_evidence(),
                db.load_overrides()) == ([], {}, {}, [])
    assert (tmp_path / "sre_data.db.bak-v3").read_bytes() == original


CHECKS = [
    CheckRow("Runbook", "Alerts", 2, 1, "http", "{runbook_url}", "", 7, (), "gate", 2),
    CheckRow("Paged", "Alerts", 1, 1, "splunk_alert", "{splunk_alert}", "", 3,
             ("web", "team:Payments"), "advisory", 3),
]
ASSETS = [AssetParams("web", {"runbook_url": "https://w", "splunk_alert": ""}, 2)]


def test_checks_and_parameters_import_update_and_archive(db):
    with db.transaction():
        report = import_checks(db, CHECKS, ASSETS, T1)
    assert report.added == ["check Runbook", "check Paged", "parameters of web"]
    assert db.load_checks() == CHECKS
    assert db.load_asset_params() == {"web": {"runbook_url": "https://w", "splunk_alert": ""}}
    # The same files again change nothing; a changed target, a moved row and a dropped check.
    with db.transaction():
        assert not import_checks(db, CHECKS, ASSETS, T2).changed
    changed = CheckRow("Runbook", "Alerts", 2, 1, "http", "https://x/{asset}", "", 7, (),
                       "gate", 5)
    with db.transaction():
        report = import_checks(db, [changed], [AssetParams("web", {"runbook_url": "https://v"})],
                               T2)
    assert (report.added, report.updated, report.archived) == (
        [], ["check Runbook", "parameters of web"], ["check Paged", "parameters of web"])
    assert db.load_checks() == [changed]
    assert [c.name for c in db.load_checks(archived=True)] == ["Paged", "Runbook"]  # file order
    assert db.load_asset_params() == {"web": {"runbook_url": "https://v"}}
    # A check back in the file is restored, not added twice.
    with db.transaction():
        report = import_checks(db, CHECKS, ASSETS, T3)
    assert "check Paged (restored)" in report.added


def test_a_definitive_verdict_replaces_the_evidence_and_a_later_error_keeps_it(db):
    with db.transaction():
        db.record_evidence([Run("web", "Runbook", "pass", "200 OK", "https://w", T1,
                                "2026-11-08", "fp1")])
    assert db.load_evidence()[("web", "Runbook")] == EvidenceRecord(
        "web", "Runbook", "pass", "200 OK", "https://w", T1, "2026-11-08", "fp1")
    with db.transaction():
        db.record_evidence([Run("web", "Runbook", "error", "timeout", None, T2, "", "fp1"),
                            Run("api", "Runbook", "unconfigured", "runbook_url is empty", None,
                                T2, "", "")])
    evidence = db.load_evidence()
    assert evidence[("web", "Runbook")] == EvidenceRecord(
        "web", "Runbook", "pass", "200 OK", "https://w", T1, "2026-11-08", "fp1",
        "error", "timeout", T2)
    assert evidence[("api", "Runbook")] == EvidenceRecord(
        "api", "Runbook", last_verdict="unconfigured", last_detail="runbook_url is empty",
        last_checked_at=T2)
    # A new definitive verdict takes over and the run that told nothing is forgotten.
    with db.transaction():
        db.record_evidence([Run("web", "Runbook", "fail", "404", None, T3, "2026-11-10",
                                "fp2")])
    assert db.load_evidence(["web"]) == {("web", "Runbook"): EvidenceRecord(
        "web", "Runbook", "fail", "404", "", T3, "2026-11-10", "fp2")}


def test_overrides_are_set_replaced_and_cleared(db):
    first = Override("web", "Runbook", "yes", "wiki moved, link fixed Monday", "jdoe", T1,
                     "2027-01-30")
    with db.transaction():
        db.set_override(first)
        db.set_override(Override("api", "Paged", "no", "alert muted", "amy", T1))
    assert db.load_overrides() == [Override("api", "Paged", "no", "alert muted", "amy", T1),
                                   first]
    with db.transaction():
        assert db.clear_override("api", "Paged", T2)
        assert not db.clear_override("api", "Paged", T3)  # already lifted
        assert not db.clear_override("web", "Nope", T3)
    assert db.load_overrides() == [first]
    assert db.load_overrides(cleared=True)[0].cleared_at == T2
    # Overriding again after a clear stands again.
    with db.transaction():
        db.set_override(Override("api", "Paged", "yes", "fixed", "amy", T3))
    assert [o.answer for o in db.load_overrides()] == ["yes", "yes"]


def test_the_schema_refuses_what_the_rules_never_write(db):
    with pytest.raises(sqlite3.IntegrityError), db.transaction():
        db.set_override(Override("web", "Runbook", "maybe", "r", "me", T1))
    with pytest.raises(sqlite3.IntegrityError), db.transaction():
        db.conn.execute("INSERT INTO evidence (asset, check_name, verdict) "
                        "VALUES ('a', 'b', 'error')")
