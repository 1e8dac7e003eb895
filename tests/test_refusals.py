"""One line, not a traceback; bad input refused before anything is written; exit 3 when Rally's
side is done and the page is not; data text shown with its control characters made visible."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from conftest import git
from fake_confluence import FakeConfluence

SECRET = "PASSWORD-4f1e9a"


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and ".git" not in p.parts}


# ------------------------------------------------------------------ export -o
@pytest.mark.parametrize("name", ["sre_data.db", "sre_matrix.csv", "flows.csv",
                                  "maturity_model.csv", ".gitignore", ".git/config"])
def test_export_never_overwrites_the_tools_own_files(ready, run, name):
    before = snapshot(ready)
    head = git(ready, "rev-parse", "HEAD")
    code, _out, err = run(ready, "export", "-o", str(ready / name))
    assert code == 1 and "would overwrite" in one_line(err)
    assert snapshot(ready) == before and git(ready, "rev-parse", "HEAD") == head


@pytest.mark.parametrize("name", ["sre_tracker.py", "maturity_model.csv",
                                  "sre_maturity/rules/maturity.py",
                                  "sre_maturity/commands/__init__.py"])
def test_export_never_overwrites_the_program(ready, run, name):
    program = Path(__file__).resolve().parent.parent / name
    before = program.read_bytes()
    code, _out, err = run(ready, "export", "-o", str(program))
    assert code == 1 and "would overwrite the program's own" in one_line(err)
    assert program.read_bytes() == before


def test_export_to_the_database_through_a_symlink_or_dots_is_refused(ready, run, tmp_path):
    link = tmp_path / "innocent.csv"
    link.symlink_to(ready / "sre_data.db")
    for target in (str(link), str(ready / ".." / ready.name / "." / "sre_data.db")):
        code, _out, err = run(ready, "export", "-o", target)
        assert code == 1 and "sre_data.db" in one_line(err)


def test_export_to_a_missing_folder_or_a_folder_is_one_line(ready, run, tmp_path):
    code, _out, err = run(ready, "export", "-o", str(tmp_path / "nope" / "m.csv"))
    assert code == 1 and "does not exist" in one_line(err)
    code, _out, err = run(ready, "export", "-o", str(tmp_path))
    assert code == 1 and "is a folder" in one_line(err)


def test_export_to_an_ordinary_file_works(ready, run, tmp_path):
    code, out, _err = run(ready, "export", "-o", str(tmp_path / "m.csv"))
    assert code == 0 and "wrote" in out and (tmp_path / "m.csv").read_text().startswith("Asset")


# ------------------------------------------------------------------ the database file
def test_zero_byte_database_is_refused_and_left_alone(ready, run):
    (ready / "sre_data.db").write_bytes(b"")
    for args in (("status",), ("assess", "--asset", "web", "--capability", "Alerts",
                               "--level", "2")):
        code, _out, err = run(ready, *args)
        assert code == 1 and "is empty (0 bytes)" in one_line(err)
        assert (ready / "sre_data.db").read_bytes() == b""


def test_database_that_is_a_folder_is_one_line(ready, run):
    (ready / "sre_data.db").unlink()
    (ready / "sre_data.db").mkdir()
    code, _out, err = run(ready, "status")
    assert code == 1 and "is a folder" in one_line(err)


def test_data_folder_that_is_a_file_is_one_line(tmp_path, run):
    target = tmp_path / "file"
    target.write_text("x")
    code, _out, err = run(target, "assess", "--asset", "a", "--capability", "b", "--level", "1")
    assert code == 1
    one_line(err)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through file permissions")
def test_read_only_database_is_one_line(ready, run):
    (ready / "sre_data.db").chmod(0o444)
    try:
        code, _out, err = run(ready, "assess", "--asset", "web", "--capability", "Alerts",
                              "--level", "2")
    finally:
        (ready / "sre_data.db").chmod(0o644)
    assert code == 1 and "sre_data.db" in one_line(err)


def test_os_error_text_names_path_and_reason():
    import errno

    import sre_tracker

    text = sre_tracker._os_error_text(PermissionError(errno.EACCES, "Permission denied",
                                                      "/data/sre_data.db"), None)
    assert text == "/data/sre_data.db: Permission denied; check its permissions"


# ------------------------------------------------------------------ bad input in the CSVs
def refused_setup(folder: Path, run, flows: str) -> str:
    (folder / "flows.csv").write_text(flows, encoding="utf-8", newline="")
    before = snapshot(folder)
    code, _out, err = run(folder, "setup", "--from-csv")
    assert code == 1
    assert snapshot(folder) == before
    return one_line(err)


def test_unterminated_quote_on_the_last_line_is_refused(ready, run):
    line = refused_setup(ready, run, "Flow,Asset Name,Team,Target Level\n"
                                     "Login,auth,Identity,3\nLogin,\"oops,Identity,3\n")
    assert line.endswith("flows.csv:3, column 'Asset Name': a quoted cell opened on this line "
                         "is never closed (a \" is missing)")


def test_a_stray_inch_mark_is_not_an_open_quote(folder, run):
    (folder / "flows.csv").write_text("Flow,Asset Name\nLogin,screen 5\" panel\n",
                                      encoding="utf-8")
    code, _out, err = run(folder, "setup", "--from-csv")
    assert code == 0, err


@pytest.mark.parametrize(("name", "code_point"), [
    ("pay\rment", "U+000D"), ("pay\x00ment", "U+0000"), ("pay\x1b[2Jment", "U+001B"),
    ("pay\x85ment", "U+0085")])
def test_control_characters_in_names_are_refused_with_file_line_column(ready, run, name,
                                                                       code_point):
    flows = f'Flow,Asset Name,Team,Target Level\nLogin,auth,Identity,3\nLogin,"{name}",Id,3\n'
    line = refused_setup(ready, run, flows)
    assert f"flows.csv:3, column 'Asset Name': holds the control character {code_point}" in line


def test_control_character_in_a_capability_is_refused(folder, run):
    model = (folder / "maturity_model.csv").read_text(encoding="utf-8")
    (folder / "maturity_model.csv").write_text(model.replace("Alerting,Alerts,1",
                                                             "Alerting,Al\x1berts,1"),
                                               encoding="utf-8")
    code, _out, err = run(folder, "setup", "--from-csv")
    assert code == 1 and "column 'Capability': holds the control character U+001B" in err


def test_merge_conflict_markers_are_named(ready, run):
    line = refused_setup(ready, run, "Flow,Asset Name,Team,Target Level\n<<<<<<< HEAD\n"
                                     "Login,auth,Identity,3\n=======\nLogin,auth,Id,4\n"
                                     ">>>>>>> theirs\n")
    assert "flows.csv:2: the file has git merge-conflict markers (<<<<<<<)" in line


# ------------------------------------------------------------------ settings
# A bad setting blocks only the commands that talk to its service: `check` names it.
def test_page_id_needs_ascii_digits(ready, run, monkeypatch):
    monkeypatch.setenv("CONFLUENCE_PAGE_ID", "²³")
    code, out, err = run(ready, "check")
    assert code == 1 and "CONFLUENCE_PAGE_ID must be a numeric id, not '²³'" in out + err


@pytest.mark.parametrize("name", ["RALLY_BASE_URL", "CONFLUENCE_BASE_URL"])
@pytest.mark.parametrize("url", [f"https://svc:{SECRET}@rally.example.com",
                                 f"https://svc%40corp:{SECRET}@host/wiki", f"svc:{SECRET}@host"])
def test_credentials_in_a_url_setting_are_refused_without_echo(ready, run, monkeypatch, name,
                                                               url):
    monkeypatch.setenv(name, url)
    code, out, err = run(ready, "-v", "check")
    assert code == 1 and f"{name} holds a user name or password" in out + err
    assert SECRET not in out + err


def test_credentials_in_the_rally_url_stop_a_push_in_one_line(ready, run, monkeypatch):
    for name, value in (("RALLY_BASE_URL", f"https://svc:{SECRET}@rally.example.com"),
                        ("RALLY_API_KEY", "k" * 20), ("RALLY_WORKSPACE_ID", "1"),
                        ("RALLY_PROJECT_ID", "2"), ("RALLY_PARENT_ID", "F1")):
        monkeypatch.setenv(name, value)
    code, out, err = run(ready, "report", "--push")
    assert code == 1 and "RALLY_BASE_URL holds a user name or password" in one_line(err)
    assert SECRET not in out + err


@pytest.mark.parametrize("name", ["RALLY_API_KEY", "CONFLUENCE_PAT", "CONFLUENCE_API_TOKEN"])
def test_a_secret_with_a_character_http_cannot_send_is_named_not_shown(ready, run,
                                                                       monkeypatch, name):
    monkeypatch.setenv(name, "abc\u2019def-" + SECRET)  # a curly quote from a copy and paste
    code, out, err = run(ready, "check")
    assert code == 1
    assert f"{name} has a character HTTP cannot send (character 4)" in out + err
    assert SECRET not in out + err and "\u2019" not in out + err


# ------------------------------------------------------------------ exit 3
@pytest.fixture
def wiki(monkeypatch: pytest.MonkeyPatch):
    with FakeConfluence() as fake:
        page_id = fake.add_page("SRE maturity", "<h2>SRE Action Items</h2>", version=3)
        for name, value in {**fake.settings("datacenter"), "CONFLUENCE_PAGE_ID": page_id}.items():
            monkeypatch.setenv(name, value)
        fake.page_id = page_id
        yield fake


PAGE_FAULTS = {
    "503": {"n": 10, "status": 503},
    "401": {"n": 1, "status": 401},
    "403": {"n": 1, "status": 403},
    "404": {"n": 1, "status": 404},
    "html-502": {"n": 10, "status": 502, "body": "<html><body>Bad gateway</body></html>",
                 "content_type": "text/html"},
    "bad-json": {"n": 1, "status": 200, "body": "{\"id\": ", "content_type": "application/json"},
}


@pytest.mark.parametrize("command", ["report", "sync"])
@pytest.mark.parametrize("fault", list(PAGE_FAULTS), ids=list(PAGE_FAULTS))
def test_rally_done_but_the_page_failed_is_exit_3(gaps, run, rally, wiki, command, fault):
    if command == "sync":  # the stories exist; sync reads their states, then the page
        assert run(gaps, "report", "--push")[0] == 0
    wiki.fail_next(**PAGE_FAULTS[fault])
    args = ("report", "--push") if command == "report" else ("sync",)
    code, _out, err = run(gaps, *args)
    assert code == 3, err
    assert "Rally is up to date, but the Confluence page was not updated" in err
    assert "Traceback" not in err
    assert git(gaps, "status", "--porcelain") == ""  # Rally's side is committed


@pytest.mark.parametrize("body,fix", [
    ("<h2>SRE Action Items</h2><p>a</p><h2>SRE Action Items</h2>",
     "the page has 2 headings 'SRE Action Items': no. 1 (h2) and no. 2 (h2)"),
    ("<table><tbody><tr><td><h2>SRE Action Items</h2></td></tr></tbody></table>",
     "the heading 'SRE Action Items' is inside a table on the page (table no. 1 of the page, "
     "row 1)"),
])
def test_a_page_no_run_can_update_says_what_to_fix_on_it(gaps, run, rally, wiki, body, fix):
    wiki.human_edit(wiki.page_id, lambda _old: body)
    version = wiki.version(wiki.page_id)
    code, _out, err = run(gaps, "report", "--push")
    assert code == 3, err
    assert f"Rally is up to date, but the Confluence page was not updated: {fix}" in err
    assert "run the command again to update the page" not in err  # a re-run cannot help
    assert wiki.puts() == [] and wiki.version(wiki.page_id) == version


def test_confluence_refusing_connections_is_exit_3(gaps, run, rally, monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for name, value in (("CONFLUENCE_BASE_URL", f"http://127.0.0.1:{port}"),
                        ("CONFLUENCE_API", "datacenter"), ("CONFLUENCE_PAT", "x" * 20),
                        ("CONFLUENCE_PAGE_ID", "42")):
        monkeypatch.setenv(name, value)
    code, _out, err = run(gaps, "report", "--push")
    assert code == 3 and "Confluence page was not updated" in err
    assert len(rally.stories_tagged("SRE-Maturity")) == 2


# ------------------------------------------------------------------ what the terminal shows
def test_status_and_history_show_control_characters_instead_of_acting_on_them(ready, run):
    code, _out, err = run(ready, "assess", "--asset", "web", "--capability", "Alerts",
                          "--level", "2", "--notes", "fixed \x1b[2J by \u202eevil",
                          "--assessor", "j\x1b]0;pwned\x07doe")
    assert code == 0, err
    code, out, _err = run(ready, "history")
    assert code == 0
    assert "\x1b" not in out and "\u202e" not in out and "\x07" not in out
    assert "fixed \\x1b[2J by \\u202eevil" in out and "j\\x1b]0;pwned\\x07doe" in out


def test_old_data_with_control_characters_prints_visibly_in_status(ready, run):
    import sqlite3

    # A database written before names were checked: a flow name holding an escape sequence.
    with sqlite3.connect(ready / "sre_data.db") as conn:
        conn.execute("UPDATE flows SET flow = ? WHERE flow = 'Login'", ("Lo\x1b[31mgin",))
    code, out, err = run(ready, "status")
    assert code == 0, err
    assert "\x1b" not in out and "[Lo\\x1b[31mgin]" in out


def test_visible_keeps_plain_text_and_escapes_the_rest():
    from sre_maturity.render.reports import visible

    assert visible("plain – text\nnext\tcol") == "plain – text\nnext\tcol"
    assert visible("a\x1b[31mb\rc\u202ed\x00") == "a\\x1b[31mb\\x0dc\\u202ed\\x00"
    assert visible(None) == ""


# ------------------------------------------------------------------ git refusing the folder
@pytest.mark.skipif(os.geteuid() != 0, reason="needs to give the folder to another user")
def test_a_repository_git_refuses_is_reported_as_git_said(ready, run):
    env = {k: v for k, v in os.environ.items() if k != "SUDO_UID"}
    subprocess.run(["chown", "-R", "65534:65534", str(ready)], check=True, env=env)
    code, out, err = run(ready, "assess", "--asset", "web", "--capability", "Alerts",
                         "--level", "2")
    line = one_line(err)
    assert code == 1 and "git refuses the repository" in line
    assert "dubious ownership" in line and "safe.directory" in line
    assert "created a git repository" not in out


@pytest.mark.parametrize("argv", [["status"], ["setup", "--from-csv"], ["report"],
                                  ["assess", "--asset", "web", "--capability", "Alerts",
                                   "--level", "1"]])
def test_a_data_dir_that_is_a_file_says_so_not_that_it_is_missing(run, tmp_path, argv):
    """--data-dir pointed at flows.csv (an easy slip) says the path is a file."""
    afile = tmp_path / "flows.csv"
    afile.write_text("Flow,Asset Name\nLogin,web\n", encoding="utf-8")
    code, _out, err = run(afile, *argv)
    line = one_line(err)
    assert code == 1 and "is a file, not a folder" in line and "does not exist" not in line
    assert afile.read_text(encoding="utf-8") == "Flow,Asset Name\nLogin,web\n"


def test_report_output_dir_that_is_a_file_says_so(ready, run, tmp_path):
    afile = tmp_path / "out.txt"
    afile.write_text("x", encoding="utf-8")
    code, _out, err = run(ready, "report", "--output-dir", str(afile))
    assert code == 1 and "is a file, not a folder" in one_line(err)
    code, _out, err = run(ready, "report", "--output-dir", str(tmp_path / "nope"))
    assert code == 1 and "does not exist" in one_line(err)
