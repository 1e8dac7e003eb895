"""Teammates never lose each other's work (SPEC §11): real clones of one data folder sharing a
bare origin, the tool's own merge drivers, pulls both ways with merge and rebase."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from test_merge import assess

from conftest import at, git, pull, push
from database import Database

T1, T2, T3 = "2026-11-01T10:00:00+00:00", "2026-11-01T11:00:00+00:00", "2026-11-01T12:00:00+00:00"


def add_rows(folder: Path, name: str, *lines: str) -> None:
    with open(folder / name, "a", encoding="utf-8") as fh:
        fh.writelines(line + "\n" for line in lines)


def setup(run, monkeypatch, folder: Path, when: str) -> str:
    at(monkeypatch, when)
    code, out, err = run(folder, "setup", "--from-csv")
    assert code == 0, err
    return out


def matrix_rows(text: str) -> dict[tuple[str, str], dict[str, str]]:
    return {(r["Asset Name"], r["Capability"]): r for r in csv.DictReader(io.StringIO(text))}


def check_agrees(run, folder: Path) -> None:
    """The committed matrix file is what the database says, and no CSV is reported stale."""
    assert git(folder, "status", "--porcelain").strip() == ""
    code, out, err = run(folder, "status", "--format", "csv")
    assert code == 0 and "warning" not in err, err
    assert matrix_rows((folder / "sre_matrix.csv").read_text()) == matrix_rows(out)


@pytest.mark.parametrize("how", ["merge", "rebase"])
def test_new_assets_on_both_sides_and_a_model_change_survive_a_pull(clones, run, monkeypatch,
                                                                     how):
    a, b = clones
    add_rows(a, "flows.csv", "Search,query-parser,Search,3")
    setup(run, monkeypatch, a, T1)
    assess(run, monkeypatch, a, T1, "query-parser", "On-call", "1")  # two Red items
    push(a)
    add_rows(b, "flows.csv", "Login,sso,Identity,3")
    model = (b / "maturity_model.csv").read_text()
    (b / "maturity_model.csv").write_text(model.replace(
        "Alerts page the on-call,Do alerts page the on-call engineer?,Asset,,No,",
        "Alerts page the on-call,Do alerts page the on-call engineer?,Asset,,Yes,Go-Live"))
    setup(run, monkeypatch, b, T2)
    assess(run, monkeypatch, b, T2, "sso", "Alerts", "1")
    proc = pull(b, how)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "CONFLICT" not in proc.stdout + proc.stderr
    for folder in (b, a):
        # Both new assets, a's Red items and b's model change, in every command.
        code, out, err = run(folder, "status", "--asset", "query-parser")
        assert code == 0 and "On-call" in out, err
        code, out, err = run(folder, "gate", "--flow", "Search")
        assert code == 4 and "query-parser" in out + err
        code, out, err = run(folder, "export", "--items")
        assert code == 0, err
        assert "query-parser / On-call / 2" in out and "query-parser / On-call / 3" in out
        assert "sso / Alerts / 2" in out
        code, out, err = run(folder, "gate", "--asset", "sso")
        assert code == 4 and "Alerts" in out + err  # L2 is required for go-live on b's side
        with Database(folder / "sre_data.db") as db:
            assets = db.load_assets()
            assert {"query-parser", "sso"} <= set(assets)
            assert db.load_model()["Alerts"].go_live_level == 2
        check_agrees(run, folder)
        code, out, err = run(folder, "report")
        assert code == 0, err
        assert "query-parser" in (folder / "sre_matrix.html").read_text()
        if folder is b:
            push(b)
            proc = pull(a, "merge" if how == "rebase" else "rebase")
            assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_definition_both_sides_changed_takes_the_later_import(clones, run, monkeypatch):
    a, b = clones
    for folder, when, team in ((a, T1, "Payments-A"), (b, T2, "Payments-B")):
        text = (folder / "flows.csv").read_text()
        (folder / "flows.csv").write_text(text.replace("payment-api,Payments,",
                                                       f"payment-api,{team},"))
        setup(run, monkeypatch, folder, when)
    push(b)  # b imported last
    proc = pull(a)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with Database(a / "sre_data.db") as db:
        assert db.load_assets()["payment-api"].team == "Payments-B"
    # flows.csv (a union of both sides' lines) now names payment-api twice: every command
    # says so in one line, pointing at the file to fix.
    code, _out, err = run(a, "status")
    assert code == 0
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "flows.csv" in warnings[0] and "twice" in warnings[0]


def test_a_hand_edit_of_the_csvs_is_said_in_one_line(ready, run):
    add_rows(ready, "flows.csv", "Search,query-parser,Search,3")
    for args in (("status",), ("gate", "--flow", "Login"), ("report",), ("-q", "export")):
        code, _out, err = run(ready, *args)
        lines = [line for line in err.splitlines() if "flows.csv" in line]
        assert len(lines) == 1, (args, err)
        assert "asset query-parser" in lines[0] and "setup --from-csv" in lines[0]
    code, out, err = run(ready, "check")
    assert code == 1 and "FAIL  csv: flows.csv differs from what the database was built from" \
        in out + err and "warning" not in err
    assert run(ready, "setup", "--from-csv")[0] == 0
    assert "flows.csv" not in run(ready, "status")[2]
    code, out, _err = run(ready, "check")
    assert code == 0 and "ok    csv: the CSVs are what the database was built from" in out
    # Reformatting (same rows, other bytes) is no difference.
    (ready / "flows.csv").write_text((ready / "flows.csv").read_text().replace("\n", "\r\n"))
    assert "warning" not in run(ready, "status")[2]
    (ready / "maturity_model.csv").write_text("Category,Capability\n")
    err = run(ready, "status")[2]
    assert "maturity_model.csv changed since the last setup and cannot be read" in err
    (ready / "maturity_model.csv").unlink()
    assert "maturity_model.csv is missing" in run(ready, "status")[2]


def test_same_second_assessments_in_two_clones_agree_on_both_sides(clones, run, monkeypatch):
    a, b = clones
    assess(run, monkeypatch, a, T1, "web", "Alerts", "1")
    push(a)
    assess(run, monkeypatch, b, T1, "web", "Alerts", "4")
    assert pull(b).returncode == 0
    push(b)
    assert pull(a).returncode == 0
    seen = []
    for folder in (a, b):
        code, out, _err = run(folder, "history", "--asset", "web", "--capability", "Alerts")
        with Database(folder / "sre_data.db") as db:
            cell = db.load_cells()[("web", "Alerts")]
            newest = db.history(asset="web", capability="Alerts")[0]
        assert (newest["new_level"], newest["assessed_by"]) == (cell.level, cell.assessed_by)
        seen.append((cell.level, cell.assessed_by))
        check_agrees(run, folder)
    assert seen[0] == seen[1]


# ---------------------------------------------------------------- leaving and retiring
def test_retiring_an_asset_imported_from_assessments_csv(ready, run):
    add_rows(ready, "flows.csv", "Edge,dns-gateway,Network,3")
    (ready / "assessments.csv").write_text(
        "Asset Name,Capability,Level,Assessed At\n"
        "web,Alerts,2,2026-10-01\n"
        "dns-gateway,Alerts,1,2026-10-01\n"
        "DNS-Gateway,On-call,2,2026-10-01\n")
    assert run(ready, "setup", "--from-csv")[0] == 0
    flows = (ready / "flows.csv").read_text()
    (ready / "flows.csv").write_text(flows.replace("Edge,dns-gateway,Network,3\n", ""))
    code, out, err = run(ready, "setup", "--from-csv")
    assert code == 0, err
    assert ("skipped 2 rows of assessments.csv naming dns-gateway, no longer in flows.csv "
            "(archived, with its history)") in out
    assert "archived: asset dns-gateway, Edge/dns-gateway" in out
    assert git(ready, "log", "-1", "--format=%s").strip() == (
        "setup: archived asset dns-gateway, Edge/dns-gateway; items: 3 archived")
    code, out, _err = run(ready, "history", "--asset", "dns-gateway")
    assert code == 0 and "Alerts" in out and "On-call" in out
    assert "dns-gateway" not in run(ready, "status")[1]
    # A name the database never knew is still an error naming file, line and column.
    add_rows(ready, "assessments.csv", "dns-gatewy,Alerts,1,2026-10-01")
    code, _out, err = run(ready, "setup", "--from-csv")
    assert code == 1 and "assessments.csv:5" in err and "'Asset Name'" in err
    # Removing the file with git: the tool's commit takes the deletion with it.
    git(ready, "rm", "-qf", "assessments.csv")
    add_rows(ready, "flows.csv", "Edge,dns-resolver,Network,3")
    assert run(ready, "setup", "--from-csv")[0] == 0
    assert git(ready, "status", "--porcelain").strip() == ""
    assert "assessments.csv" not in git(ready, "ls-files")


def test_the_first_commit_after_a_no_commit_setup_takes_the_setup_files(folder, run):
    assert run(folder, "--no-commit", "setup", "--from-csv")[0] == 0
    assert git(folder, "status", "--porcelain", "--untracked-files=all").count("??") >= 4
    code, _out, err = run(folder, "assess", "--asset", "web", "--capability", "Alerts",
                          "--level", "2")
    assert code == 0, err
    assert git(folder, "status", "--porcelain", "--untracked-files=all").strip() == ""
    tracked = set(git(folder, "ls-files").split())
    assert {".gitattributes", ".gitignore", "flows.csv", "maturity_model.csv",
            "sre_data.db", "sre_matrix.csv"} <= tracked
    # A clone made now merges with the tool's drivers.
    assert "merge=sre-tracker" in git(folder, "show", "HEAD:.gitattributes")


def test_setup_commit_names_what_it_added_changed_and_archived(ready, run):
    rows = [f"Search,svc-{n},Search,3" for n in range(6)]
    add_rows(ready, "flows.csv", *rows)
    assert run(ready, "setup", "--from-csv")[0] == 0
    message = git(ready, "log", "-1", "--format=%B")
    subject, _blank, *body = message.strip().splitlines()
    assert subject == "setup: added asset svc-0, asset svc-1, asset svc-2, asset svc-3 (+8 more)"
    assert "  Search/svc-5" in body and body[0] == "added:"


# ---------------------------------------------------------------- names and messages
def test_one_asset_spelled_in_two_cases_across_flows_is_one_asset(ready, run, monkeypatch):
    add_rows(ready, "flows.csv", "Checkout,web-frontend,Storefront,3",
             "Login,Web-Frontend,Storefront,4")
    out = setup(run, monkeypatch, ready, T1)
    assert "Login/web-frontend" in out and "Web-Frontend" not in out
    code, out, err = run(ready, "assess", "--asset", "WEB-FRONTEND", "--capability", "alerts",
                         "--level", "1")
    assert code == 0, err
    with Database(ready / "sre_data.db") as db:
        assets = db.load_assets()
    assert "Web-Frontend" not in assets
    assert (assets["web-frontend"].flows, assets["web-frontend"].target) == (
        ["Checkout", "Login"], 4)
    assert "assess: Checkout, Login/web-frontend Alerts none→1" in git(ready, "log", "-1",
                                                                       "--format=%s")
    # Twice in one flow, in any case, is a duplicate: file, line, column.
    add_rows(ready, "flows.csv", "Checkout,WEB-FRONTEND,Storefront,3")
    code, _out, err = run(ready, "setup", "--from-csv")
    assert code == 1 and "flows.csv:8" in err and "listed twice in flow 'Checkout'" in err


def test_a_name_two_rows_spell_in_two_cases_is_refused_as_ambiguous_not_guessed():
    from sre_maturity.support.errors import InputError
    from sre_maturity.support.names import resolve

    assert resolve("asset", "Web", ["web", "Web"]) == "Web"
    with pytest.raises(InputError, match="asset 'WEB' is ambiguous: web, Web differ only in case"):
        resolve("asset", "WEB", ["web", "Web"])
