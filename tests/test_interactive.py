"""``assess`` and ``setup`` driven through a real pseudo-terminal (pexpect).

Each test spawns ``sre_tracker.py`` as its own process on a pty, answers the prompts the code
prints (the exact strings live in assessment.py and interactive_setup.py) and then checks what
reached the database and git.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest

from conftest import git
from database import Database
from sre_maturity.store import csvfiles

SCRIPT = Path(__file__).resolve().parent.parent / "sre_tracker.py"
DEFAULT_MODEL = SCRIPT.with_name("maturity_model.csv")

MENU2 = "choose 1-2 (q to quit): "
MENU3 = "choose 1-3 (q to quit): "
MENU2B = "choose 1-2 (b back, q to quit): "  # asset and capability menus: b goes back
NOTES = "  notes / evidence (optional): "
SAVE = "save this assessment? [y/n]: "
HELP = ("answer y (yes), n (no), ? (show the criteria), b (back), na (not applicable), "
        "s (skip this capability), q (quit)")
# The questions of the conftest model, as the assessment asks them.
ALERTS = [
    "L1 [1/5] Do any alerts exist? [y/n/?/b/na/s/q] ",
    "L2 [2/5] Do alerts page the on-call engineer? [y/n/?/b/na/s/q] ",
    "L3 [3/5] Is every alert actionable? [y/n/?/b/na/s/q] ",
    "L4 [4/5] Are alerts reviewed monthly? [y/n/?/b/na/s/q] ",
]
DASHBOARDS = [
    "L1 [1/5] Are basic metrics collected? [y/n/?/b/na/s/q] ",
    "L2 [2/5] Is there a service dashboard? [y/n/?/b/na/s/q] ",
]
ONCALL = ["L1 [1/5] Is someone reachable out of hours? [y/n/?/b/na/s/q] "]


# ---------------------------------------------------------------- helpers
def child_env() -> dict[str, str]:
    """The child's environment: this one (coverage hooks, cleaned settings) plus the pins."""
    env = dict(os.environ)
    env.update(NO_COLOR="1", GIT_AUTHOR_NAME="Test Er", GIT_AUTHOR_EMAIL="t@example.com",
               GIT_COMMITTER_NAME="Test Er", GIT_COMMITTER_EMAIL="t@example.com")
    return env


def spawn(folder: Path, *args: str) -> pexpect.spawn:
    child = pexpect.spawn(sys.executable, [str(SCRIPT), "--data-dir", str(folder), *args],
                          env=child_env(), encoding="utf-8", timeout=10, dimensions=(40, 200))
    child.logfile_read = io.StringIO()  # the whole transcript, for assertions on it
    return child


def reply(child: pexpect.spawn, prompt: str, answer: str) -> None:
    """Wait for ``prompt`` (exact text), then type ``answer`` and Enter."""
    child.expect_exact(prompt)
    child.sendline(answer)


def finish(child: pexpect.spawn) -> tuple[int | None, int | None, str]:
    """Wait for the child to end; (exit status, signal, the whole transcript)."""
    child.expect(pexpect.EOF)
    child.close()
    return child.exitstatus, child.signalstatus, child.logfile_read.getvalue()


def setup_in_new_folder(tmp_path: Path, assessments: str = "") -> tuple[Path, pexpect.spawn]:
    """An interactive setup started in a new, empty folder (``assessments``: an
    assessments.csv put there first)."""
    folder = tmp_path / "new"
    folder.mkdir()
    if assessments:
        (folder / "assessments.csv").write_text(assessments)
    return folder, spawn(folder, "setup")


def enter_flow(child: pexpect.spawn, flow: str, asset: str, team: str) -> None:
    """At the flow-name prompt: one flow with one new asset (default target), then finish."""
    reply(child, FLOW_NAME, flow)
    reply(child, f"  assets in {flow} (comma-separated): ", asset)
    reply(child, f"  team owning {asset} (optional): ", team)
    reply(child, f"  target level for {asset} in {flow} [3]: ", "")
    reply(child, FLOW_NAME, "")


def commits(folder: Path) -> list[str]:
    return git(folder, "log", "--format=%s").splitlines()


def status(folder: Path) -> dict:
    proc = subprocess.run([sys.executable, str(SCRIPT), "--data-dir", str(folder), "status",
                           "--format", "json"], env=child_env(), capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def cell(folder: Path, asset: str, capability: str) -> dict:
    return next(e for e in status(folder)["matrix"]
                if (e["asset"], e["capability"]) == (asset, capability))


def snapshot(folder: Path) -> tuple[bytes, str, str]:
    """Everything an assessment could write: the database, HEAD, the work tree state."""
    return ((folder / "sre_data.db").read_bytes(), git(folder, "rev-parse", "HEAD"),
            git(folder, "status", "--porcelain"))


def assess_flags(folder: Path, *args: str) -> None:
    proc = subprocess.run([sys.executable, str(SCRIPT), "--data-dir", str(folder), "assess",
                           *args], env=child_env(), capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=30)
    assert proc.returncode == 0, proc.stderr


def open_assess(child: pexpect.spawn, flow: str, asset: str, category: str,
                capability: str) -> None:
    """Walk the four numbered menus (answers are menu numbers as strings)."""
    for prompt, answer in ((MENU2, flow), (MENU2B, asset), (MENU2B, category),
                           (MENU2B, capability)):
        reply(child, prompt, answer)


# ---------------------------------------------------------------- 1. the full guided flow
def test_guided_assessment_through_menus_records_level_and_commits(ready):
    git(ready, "config", "user.name", "Jane Doe")  # the default assessor
    assess_flags(ready, "--asset", "payment-api", "--capability", "On-call", "--level", "1")
    on_call_date = cell(ready, "payment-api", "On-call")["assessed_at"][:10]
    child = spawn(ready, "assess")
    # Every menu says where each choice stands: its lowest assessed level and how much of it
    # is assessed.
    child.expect_exact("Flow:\r\n   1) Checkout  (lowest L1, 1 assessed)\r\n"
                       "   2) Login  (none assessed)\r\n")
    reply(child, MENU2, "1")
    child.expect_exact("Asset in Checkout:\r\n   1) payment-api  (lowest L1, 1/3 assessed)\r\n"
                       "   2) web  (none assessed)\r\n")
    reply(child, MENU2B, "1")
    child.expect_exact("Category:\r\n   1) Monitoring  (none assessed)\r\n"
                       "   2) Alerting  (lowest L1, 1/2 assessed)\r\n")
    reply(child, MENU2B, "2")
    # The capability menu shows each capability's current level and last assessment date.
    child.expect_exact(f"Capability in Alerting:\r\n   1) Alerts  (now: none)\r\n"
                       f"   2) On-call  (now: 1, {on_call_date})\r\n")
    reply(child, MENU2B, "1")
    child.expect_exact("Alerting / Alerts for payment-api (now: none; target 4, go-live L1)")
    for question, answer in zip(ALERTS, ["y", "y", "y", "n"], strict=True):
        reply(child, question, answer)
    reply(child, NOTES, "pages go to #pay-oncall")
    child.expect_exact("payment-api / Alerts none→3 (answered no: Are alerts reviewed monthly?)")
    child.expect_exact("opens  Alerts → L4 (Amber, P3): Alerts are tuned monthly")
    reply(child, SAVE, "y")
    child.expect_exact("saved")
    code, signal, _transcript = finish(child)

    entry = cell(ready, "payment-api", "Alerts")
    assert (code, signal) == (0, None)
    assert (entry["state"], entry["level"], entry["rag"], entry["open_items"],
            entry["assessed_by"]) == ("Assessed", 3, "Amber", 1, "Jane Doe")
    assert commits(ready)[0] == "assess: Checkout/payment-api Alerts none→3 (Jane Doe)"
    assert set(git(ready, "show", "--name-only", "--format=", "HEAD").split()) == {
        "sre_data.db", "sre_matrix.csv"}
    with Database(ready / "sre_data.db") as db:
        last = db.history("payment-api", "Alerts", None)[0]
    assert last["notes"] == "pages go to #pay-oncall"
    assert [a["answer"] for a in last["answers"]] == [True, True, True, False]


def test_reassessment_with_flags_on_a_terminal_asks_and_shows_closing_items(ready):
    assess_flags(ready, "--asset", "payment-api", "--capability", "Alerts", "--level", "1")
    child = spawn(ready, "assess", "--flow", "Checkout", "--asset", "payment-api",
                  "--capability", "alerts", "--notes", "tuned", "--assessor", "jdoe")
    for question, answer in zip(ALERTS, ["y", "y", "y", "n"], strict=True):
        reply(child, question, answer)  # no menus and no notes prompt: the flags answer them
    child.expect_exact("payment-api / Alerts 1→3")
    child.expect_exact("closes (verified) Alerts → L2")
    child.expect_exact("closes (verified) Alerts → L3")
    child.expect_exact("stays  Alerts → L4 (Amber)")
    reply(child, SAVE, "yes")
    code, _signal, _transcript = finish(child)
    assert (code, cell(ready, "payment-api", "Alerts")["level"]) == (0, 3)
    assert commits(ready)[0] == "assess: Checkout/payment-api Alerts 1→3 (jdoe)"


# ---------------------------------------------------------------- 2. ?, b, invalid answers
def test_question_mark_shows_criteria_and_back_changes_the_result(ready):
    child = spawn(ready, "assess", "--asset", "payment-api", "--capability", "Alerts",
                  "--assessor", "jdoe")
    reply(child, ALERTS[0], "?")
    child.expect_exact("L1 means: Some alerts exist")
    reply(child, ALERTS[0], "b")  # the same question again; nothing to go back to
    child.expect_exact("this is the first question")
    reply(child, ALERTS[0], "y")
    reply(child, ALERTS[1], "y")
    reply(child, ALERTS[2], "b")  # back to L2: its yes is taken back ...
    reply(child, ALERTS[1], "n")  # ... and replaced by a no, so the level is 1, not 2+
    reply(child, NOTES, "")
    child.expect_exact("payment-api / Alerts none→1 (answered no: Do alerts page the on-call "
                       "engineer?)")
    reply(child, SAVE, "y")
    code, _signal, _transcript = finish(child)

    assert (code, cell(ready, "payment-api", "Alerts")["level"]) == (0, 1)
    with Database(ready / "sre_data.db") as db:
        answers = db.history("payment-api", "Alerts", None)[0]["answers"]
    assert [(a["level"], a["answer"]) for a in answers] == [(1, True), (2, False)]


def test_invalid_answers_re_prompt_saying_what_is_accepted(ready):
    child = spawn(ready, "assess", "--assessor", "jdoe")
    reply(child, MENU2, "7")
    child.expect_exact("please type a number from 1 to 2, or q")
    reply(child, MENU2, "login")  # a name is accepted too, case-insensitively
    child.expect_exact("Asset in Login:")
    reply(child, MENU2B, "auth")
    reply(child, MENU2B, "2")
    reply(child, MENU2B, "2")
    reply(child, ONCALL[0], "maybe")
    child.expect_exact(HELP)
    reply(child, ONCALL[0], "n")
    reply(child, NOTES, "")
    reply(child, SAVE, "perhaps")
    child.expect_exact("please answer y or n")
    reply(child, SAVE, "y")
    code, _signal, _transcript = finish(child)
    entry = cell(ready, "auth", "On-call")
    assert (code, entry["level"], entry["rag"]) == (0, 0, "Red")
    assert commits(ready)[0] == "assess: Login/auth On-call none→0 (jdoe)"


# ---------------------------------------------------------------- 3. not applicable
def test_na_asks_reason_and_expiry_and_marks_not_applicable(ready):
    child = spawn(ready, "assess", "--asset", "web", "--capability", "On-call",
                  "--assessor", "jdoe")
    reply(child, ONCALL[0], "na")
    reason = "    why is it not applicable? (required) "
    reply(child, reason, "")
    reply(child, reason, "static site, no paging")  # empty: asked again
    until = "    until when? (YYYY-MM-DD, empty: no expiry) "
    reply(child, until, "next year")
    child.expect_exact("'next year' is not a date; use YYYY-MM-DD")
    reply(child, until, "2001-01-01")
    child.expect_exact("2001-01-01 is in the past")
    reply(child, until, "2099-12-31")
    reply(child, NOTES, "")
    child.expect_exact("web / On-call none→N/A")
    reply(child, SAVE, "y")
    code, _signal, _transcript = finish(child)

    entry = cell(ready, "web", "On-call")
    assert (code, entry["state"], entry["level"], entry["rag"], entry["open_items"],
            entry["not_applicable_reason"]) == (0, "Not Applicable", None, None, 0,
                                                "static site, no paging")
    with Database(ready / "sre_data.db") as db:
        assert db.load_cells()[("web", "On-call")].na_until == "2099-12-31"
    assert commits(ready)[0] == "assess: Checkout, Login/web On-call none→N/A (jdoe)"


# ---------------------------------------------------------------- 4, 5, 7. writing nothing
@pytest.mark.parametrize("where", ["menu", "question"])
def test_q_quits_writing_nothing(ready, where):
    before = snapshot(ready)
    child = spawn(ready, "assess")
    if where == "question":
        open_assess(child, "1", "1", "2", "1")
        reply(child, ALERTS[0], "y")
        reply(child, ALERTS[1], "q")
    else:
        reply(child, MENU2, "1")
        reply(child, MENU2B, "q")
    child.expect_exact("quit: nothing more written")
    code, signal, _transcript = finish(child)
    # assessment.run returns EXIT_OK after a quit: the user chose to stop, nothing failed.
    assert (code, signal) == (0, None)
    assert snapshot(ready) == before


@pytest.mark.parametrize("key", ["ctrl-c", "ctrl-d"])
@pytest.mark.parametrize("where", ["question", "confirm"])
def test_interrupt_or_eof_at_a_prompt_exits_130_writing_nothing(ready, key, where):
    before = snapshot(ready)
    child = spawn(ready, "assess", "--asset", "web", "--capability", "Alerts")
    reply(child, ALERTS[0], "y")
    if where == "confirm":
        reply(child, ALERTS[1], "n")
        reply(child, NOTES, "")
        child.expect_exact(SAVE)
    else:
        child.expect_exact(ALERTS[1])
    if key == "ctrl-c":
        child.sendintr()
    else:
        child.sendeof()
    child.expect_exact("interrupted; nothing was written")
    code, signal, _transcript = finish(child)
    assert (code, signal) == (130, None)
    assert snapshot(ready) == before


def test_declining_the_confirmation_writes_nothing(ready):
    before = snapshot(ready)
    child = spawn(ready, "assess", "--asset", "web", "--capability", "Alerts")
    reply(child, ALERTS[0], "y")
    reply(child, ALERTS[1], "n")
    reply(child, NOTES, "not sure yet")
    reply(child, SAVE, "n")
    child.expect_exact("not saved")
    code, _signal, _transcript = finish(child)
    assert code == 0
    assert snapshot(ready) == before


# ---------------------------------------------------------------- 6. --all
def start_all_and_save_dashboards(ready: Path) -> pexpect.spawn:
    """``assess --all`` on payment-api with Dashboards answered (level 1) and saved."""
    child = spawn(ready, "assess", "--asset", "payment-api", "--all", "--assessor", "jdoe")
    child.expect_exact("Monitoring / Dashboards for payment-api")
    reply(child, DASHBOARDS[0], "y")
    reply(child, DASHBOARDS[1], "n")
    reply(child, NOTES, "")
    reply(child, SAVE, "y")
    child.expect_exact("saved")
    return child


@pytest.mark.parametrize(("stop", "exit_code"), [("q", 0), ("ctrl-c", 130)])
def test_all_saves_each_confirmed_capability_even_when_stopped(ready, stop, exit_code):
    head = git(ready, "rev-parse", "HEAD").strip()
    child = start_all_and_save_dashboards(ready)
    child.expect_exact("Alerting / Alerts for payment-api")
    reply(child, ALERTS[0], "n")
    reply(child, NOTES, "")
    reply(child, SAVE, "y")
    child.expect_exact("saved")
    child.expect_exact("Alerting / On-call for payment-api")
    child.expect_exact(ONCALL[0])
    if stop == "q":
        child.sendline("q")
    else:
        child.sendintr()
    code, _signal, transcript = finish(child)

    matrix = {e["capability"]: e for e in status(ready)["matrix"] if e["asset"] == "payment-api"}
    assert code == exit_code
    if stop == "ctrl-c":  # what the README says happens
        short = git(ready, "rev-parse", "--short", "HEAD").strip()
        assert (f"interrupted; the change saved before the interrupt is committed ({short}); "
                "nothing more was written") in transcript
    assert [(matrix[c]["state"], matrix[c]["level"]) for c in ("Dashboards", "Alerts",
                                                                "On-call")] == [
        ("Assessed", 1), ("Assessed", 0), ("Not Assessed", None)]
    # One commit for the run, naming both saved capabilities.
    assert git(ready, "log", "--format=%B", f"{head}..HEAD").strip().splitlines() == [
        "assess: Checkout/payment-api 2 capabilities (jdoe)", "", "Dashboards none→1",
        "Alerts none→0"]
    assert git(ready, "status", "--porcelain") == ""


def test_q_at_the_save_prompt_of_all_ends_the_walk_keeping_what_was_saved(ready):
    child = start_all_and_save_dashboards(ready)
    reply(child, ALERTS[0], "n")
    reply(child, NOTES, "")
    reply(child, SAVE, "q")
    code, _signal, transcript = finish(child)

    matrix = {e["capability"]: e for e in status(ready)["matrix"] if e["asset"] == "payment-api"}
    assert code == 0 and "Alerting / On-call" not in transcript
    assert [matrix[c]["state"] for c in ("Dashboards", "Alerts")] == ["Assessed", "Not Assessed"]


# ---------------------------------------------------------------- 8. no terminal
@pytest.mark.parametrize(("args", "message"), [
    (["assess"], "--asset is required when stdin is not a terminal"),
    (["assess", "--asset", "web"], "--capability is required when stdin is not a terminal"),
    (["assess", "--asset", "web", "--capability", "Alerts"],
     "--answers, --level or --not-applicable is required when stdin is not a terminal"),
    (["assess", "--asset", "web", "--all"], "--all asks questions; it needs a terminal"),
    (["setup"], "setup asks questions and needs a terminal"),
])
def test_without_a_terminal_missing_flags_are_an_error_not_a_hang(ready, args, message):
    before = snapshot(ready)
    proc = subprocess.run([sys.executable, str(SCRIPT), "--data-dir", str(ready), *args],
                          env=child_env(), stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=30)
    assert (proc.returncode, proc.stdout) == (1, "")
    assert proc.stderr.startswith("sre_tracker: error: ") and message in proc.stderr
    assert proc.stderr.count("\n") == 1  # one line, no traceback
    assert snapshot(ready) == before


# ---------------------------------------------------------------- 9. interactive setup
FLOW_NAME = "flow name (empty to finish): "
REVIEW = ("(w)rite it, (e)dit a row, (d)elete a row, (a)dd flows, or (q)uit writing nothing? "
          "[w/e/d/a/q] ")
ROW = "  row number (1-{}, empty to go back): "


def test_interactive_setup_writes_flows_model_database_and_commits(tmp_path):
    folder, child = setup_in_new_folder(tmp_path)
    reply(child, FLOW_NAME, "")
    child.expect_exact("at least one flow is needed")
    reply(child, FLOW_NAME, "Checkout")
    # Names that differ only in case are one name: twice in one flow...
    reply(child, "  assets in Checkout (comma-separated): ", "payment-api, web, WEB")
    child.expect_exact("listed twice: WEB, web")
    reply(child, "  assets in Checkout (comma-separated): ", "payment-api, web")
    reply(child, "  team owning payment-api (optional): ", "Payments")
    reply(child, "  target level for payment-api in Checkout [3]: ", "9")
    child.expect_exact("type a level from 1 to 5 (empty for the default)")
    reply(child, "  target level for payment-api in Checkout [3]: ", "4")
    reply(child, "  team owning web (optional): ", "Storefront")
    reply(child, "  target level for web in Checkout [3]: ", "")
    reply(child, FLOW_NAME, "checkout")
    child.expect_exact("flow 'checkout' is already entered")
    reply(child, FLOW_NAME, "Login")
    reply(child, "  assets in Login (comma-separated): ", "Web, auth")
    # ... and the same asset in another flow: web's team is known already, so only its
    # target in this flow is asked, and the row spells it as first entered
    reply(child, "  target level for web in Login [3]: ", "2")
    reply(child, "  team owning auth (optional): ", "")
    reply(child, "  target level for auth in Login [3]: ", "")
    reply(child, FLOW_NAME, "")
    child.expect_exact("flows.csv will hold 4 rows:")
    child.expect_exact("    1) Checkout / payment-api / Payments / 4\r\n")
    child.expect_exact("    4) Login / auth / - / 3\r\n")
    # Nothing is written before the review, not even a lock (none is held while prompts wait).
    assert list(folder.iterdir()) == []
    reply(child, REVIEW, "w")
    child.expect_exact("wrote the default maturity_model.csv")
    code, signal, _transcript = finish(child)

    assert (code, signal) == (0, None)
    rows = [(r.flow, r.asset, r.team, r.target_level)
            for r in csvfiles.read_flows(folder / "flows.csv")]
    assert rows == [("Checkout", "payment-api", "Payments", 4),
                    ("Checkout", "web", "Storefront", 3), ("Login", "web", "Storefront", 2),
                    ("Login", "auth", "", 3)]
    assert (folder / "maturity_model.csv").read_bytes() == DEFAULT_MODEL.read_bytes()
    assert {e["asset"] for e in status(folder)["matrix"]} == {"payment-api", "web", "auth"}
    assert len(commits(folder)) == 1 and commits(folder)[0].startswith("setup: ")
    assert set(git(folder, "show", "--name-only", "--format=", "HEAD").split()) == {
        "flows.csv", "maturity_model.csv", "sre_data.db", "sre_matrix.csv", ".gitattributes",
        ".gitignore"}
    assert git(folder, "status", "--porcelain") == ""
    # The file it wrote is one setup --from-csv takes as it is.
    proc = subprocess.run([sys.executable, str(SCRIPT), "--data-dir", str(folder), "setup",
                           "--from-csv"], env=child_env(), capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=30)
    assert proc.returncode == 0 and "setup: nothing changed" in proc.stdout, proc.stderr


def test_interactive_setup_interrupted_writes_nothing(tmp_path):
    folder, child = setup_in_new_folder(tmp_path)
    reply(child, FLOW_NAME, "Checkout")
    reply(child, "  assets in Checkout (comma-separated): ", "payment-api")
    child.expect_exact("  team owning payment-api (optional): ")
    child.sendintr()
    code, _signal, _transcript = finish(child)
    assert code == 130
    assert list(folder.iterdir()) == []


def test_interactive_setup_keeping_existing_flows_changes_nothing(ready):
    before = snapshot(ready), (ready / "flows.csv").read_bytes()
    child = spawn(ready, "setup")
    child.expect_exact("flows.csv has 4 rows in 2 flows.")
    reply(child, "(k)eep it, (a)dd flows to it, or (r)eplace it? [k/a/r] ", "x")
    child.expect_exact("  type k, a or r")
    reply(child, "(k)eep it, (a)dd flows to it, or (r)eplace it? [k/a/r] ", "k")
    child.expect_exact("kept the existing maturity_model.csv")
    code, _signal, transcript = finish(child)
    assert code == 0 and "setup: nothing changed" in transcript
    assert "wrote" not in transcript and "kept the existing flows.csv" in transcript
    assert (snapshot(ready), (ready / "flows.csv").read_bytes()) == before


def test_interactive_setup_adds_flows_to_existing_ones(ready):
    child = spawn(ready, "setup")
    reply(child, "(k)eep it, (a)dd flows to it, or (r)eplace it? [k/a/r] ", "a")
    enter_flow(child, "Search", "search-api", "Discovery")
    reply(child, REVIEW, "w")
    code, _signal, _transcript = finish(child)
    rows = [(r.flow, r.asset) for r in csvfiles.read_flows(ready / "flows.csv")]
    assert code == 0
    assert rows == [("Checkout", "payment-api"), ("Checkout", "web"), ("Login", "web"),
                    ("Login", "auth"), ("Search", "search-api")]
    assert "search-api" in {e["asset"] for e in status(ready)["matrix"]}
    assert commits(ready)[0].startswith("setup: ")


def test_interactive_setup_review_fixes_a_typo_before_anything_is_written(tmp_path):
    folder, child = setup_in_new_folder(tmp_path)
    reply(child, FLOW_NAME, "Chekout")
    reply(child, "  assets in Chekout (comma-separated): ", "payment-api, web")
    reply(child, "  team owning payment-api (optional): ", "Payments")
    reply(child, "  target level for payment-api in Chekout [3]: ", "")
    reply(child, "  team owning web (optional): ", "")
    reply(child, "  target level for web in Chekout [3]: ", "")
    reply(child, FLOW_NAME, "")
    reply(child, REVIEW, "e")
    reply(child, ROW.format(2), "9")
    child.expect_exact("  no row 9")
    reply(child, REVIEW, "e")
    reply(child, ROW.format(2), "1")
    reply(child, "  flow [Chekout]: ", "Checkout")
    reply(child, "  asset [payment-api]: ", "")
    reply(child, "  team [Payments] ('-' for none): ", "-")
    reply(child, "  target level [3]: ", "5")
    child.expect_exact("    1) Checkout / payment-api / - / 5\r\n")
    reply(child, REVIEW, "e")
    reply(child, ROW.format(2), "2")
    reply(child, "  flow [Chekout]: ", "Checkout")
    reply(child, "  asset [web]: ", "payment-api")
    reply(child, "  team [] ('-' for none): ", "")
    reply(child, "  target level [3]: ", "")
    child.expect_exact("  payment-api is already in Checkout (row 1); edit or delete that row")
    reply(child, REVIEW, "d")
    reply(child, ROW.format(2), "2")
    child.expect_exact("  deleted Chekout / web")
    reply(child, REVIEW, "a")
    reply(child, FLOW_NAME, "checkout")
    child.expect_exact("  Checkout already has payment-api; assets named again get the new "
                       "target")
    reply(child, "  assets in Checkout (comma-separated): ", "web")
    reply(child, "  team owning web (optional): ", "Storefront")
    reply(child, "  target level for web in Checkout [3]: ", "")
    reply(child, FLOW_NAME, "")
    reply(child, REVIEW, "x")
    child.expect_exact("  type w, e, d, a or q")
    reply(child, REVIEW, "w")
    code, _signal, transcript = finish(child)
    rows = [(r.flow, r.asset, r.team, r.target_level)
            for r in csvfiles.read_flows(folder / "flows.csv")]
    assert code == 0
    assert rows == [("Checkout", "payment-api", "", 5), ("Checkout", "web", "Storefront", 3)]
    # The table shows again after a change, never after a wrong key or a refused edit.
    last = transcript[transcript.rindex("flows.csv will hold"):]
    assert last.startswith("flows.csv will hold 2 rows:") and "type w, e, d, a or q" in last
    assert transcript.count("flows.csv will hold") == 4  # first, the edit, delete, add


def test_interactive_setup_replacing_offers_the_old_teams_and_targets(ready):
    child = spawn(ready, "setup")
    reply(child, "(k)eep it, (a)dd flows to it, or (r)eplace it? [k/a/r] ", "r")
    reply(child, FLOW_NAME, "Checkout")
    reply(child, "  assets in Checkout (comma-separated): ", "payment-api, cart")
    reply(child, "  team owning payment-api [Payments] ('-' for none): ", "")
    reply(child, "  target level for payment-api in Checkout [4]: ", "")
    reply(child, "  team owning cart (optional): ", "Shop")
    reply(child, "  target level for cart in Checkout [3]: ", "")
    reply(child, FLOW_NAME, "Login")
    reply(child, "  assets in Login (comma-separated): ", "web")
    reply(child, "  team owning web [Storefront] ('-' for none): ", "-")
    reply(child, "  target level for web in Login [2]: ", "")
    reply(child, FLOW_NAME, "")
    child.expect_exact("flows.csv will hold 3 rows:")
    reply(child, REVIEW, "w")
    code, _signal, _transcript = finish(child)
    rows = [(r.flow, r.asset, r.team, r.target_level)
            for r in csvfiles.read_flows(ready / "flows.csv")]
    assert code == 0
    assert rows == [("Checkout", "payment-api", "Payments", 4), ("Checkout", "cart", "Shop", 3),
                    ("Login", "web", "", 2)]


def test_interactive_setup_quit_at_the_review_writes_nothing(tmp_path):
    folder, child = setup_in_new_folder(tmp_path)
    reply(child, FLOW_NAME, "Checkout")
    reply(child, "  assets in Checkout (comma-separated): ", "web")
    reply(child, "  team owning web (optional): ", "")
    reply(child, "  target level for web in Checkout [3]: ", "")
    reply(child, FLOW_NAME, "")
    child.expect_exact("flows.csv will hold 1 row:")
    reply(child, REVIEW, "d")
    reply(child, ROW.format(1), "1")
    reply(child, REVIEW, "w")
    child.expect_exact("  at least one row is needed; (a)dd flows")
    reply(child, REVIEW, "q")
    code, _signal, _transcript = finish(child)
    assert code == 0 and list(folder.iterdir()) == []


def test_interactive_setup_adding_an_existing_asset_takes_the_new_target(ready):
    child = spawn(ready, "setup")
    reply(child, "(k)eep it, (a)dd flows to it, or (r)eplace it? [k/a/r] ", "a")
    reply(child, FLOW_NAME, "Checkout")
    child.expect_exact("  Checkout already has payment-api, web; assets named again get the new "
                       "target")
    reply(child, "  assets in Checkout (comma-separated): ", "payment-api")
    reply(child, "  target level for payment-api in Checkout [4]: ", "5")
    child.expect_exact("  payment-api in Checkout: target 4 → 5")
    reply(child, FLOW_NAME, "")
    child.expect_exact("    1) Checkout / payment-api / Payments / 5\r\n")
    reply(child, REVIEW, "w")
    code, _signal, transcript = finish(child)
    assert code == 0 and "updated: Checkout/payment-api" in transcript
    assert next(e for e in status(ready)["matrix"]
                if e["asset"] == "payment-api")["target_level"] == 5


def test_python_interactive_setup_py_runs_the_interactive_setup(tmp_path):
    folder = tmp_path / "new"
    folder.mkdir()
    child = pexpect.spawn(sys.executable, [str(SCRIPT.with_name("interactive_setup.py")),
                                           "--data-dir", str(folder)],
                          env=child_env(), encoding="utf-8", timeout=10, dimensions=(40, 200))
    child.logfile_read = io.StringIO()
    reply(child, FLOW_NAME, "Login")
    reply(child, "  assets in Login (comma-separated): ", "auth")
    reply(child, "  team owning auth (optional): ", "")
    reply(child, "  target level for auth in Login [3]: ", "")
    reply(child, FLOW_NAME, "")
    reply(child, REVIEW, "w")
    code, _signal, _transcript = finish(child)
    assert code == 0 and commits(folder)[0].startswith("setup: ")
    assert {e["asset"] for e in status(folder)["matrix"]} == {"auth"}


def test_interactive_setup_without_git_identity_refuses_before_asking(tmp_path):
    folder = tmp_path / "new"
    folder.mkdir()
    (tmp_path / "gitconfig").write_text("[user]\n\tuseConfigOnly = true\n")
    env = {k: v for k, v in child_env().items() if not k.startswith(("GIT_AUTHOR",
                                                                      "GIT_COMMITTER"))}
    env.update(HOME=str(tmp_path), GIT_CONFIG_GLOBAL=str(tmp_path / "gitconfig"),
               GIT_CONFIG_NOSYSTEM="1")
    env.pop("EMAIL", None)
    child = pexpect.spawn(sys.executable, [str(SCRIPT), "--data-dir", str(folder), "setup"],
                          env=env, encoding="utf-8", timeout=10)
    child.logfile_read = io.StringIO()
    code, _signal, transcript = finish(child)
    assert code == 1 and "git has no identity to commit with" in transcript
    assert FLOW_NAME not in transcript and list(folder.iterdir()) == []


def test_b_at_a_menu_goes_back_one_menu_and_s_skips_a_capability_in_all(ready):
    child = spawn(ready, "assess", "--assessor", "jdoe")
    reply(child, MENU2, "1")
    child.expect_exact("Asset in Checkout:")
    reply(child, MENU2B, "b")
    child.expect_exact("Flow:")
    reply(child, MENU2, "2")
    child.expect_exact("Asset in Login:")
    reply(child, MENU2B, "auth")
    reply(child, MENU2B, "1")
    child.expect_exact("Capability in Monitoring:")
    reply(child, "choose 1-1 (b back, q to quit): ", "b")
    child.expect_exact("Category:")
    reply(child, MENU2B, "b")  # the category menu goes back to the asset menu
    child.expect_exact("Asset in Login:")
    reply(child, MENU2B, "web")
    child.expect_exact("Category:")
    reply(child, MENU2B, "q")
    code, _signal, _transcript = finish(child)
    assert code == 0

    child = spawn(ready, "assess", "--asset", "web", "--all")
    reply(child, DASHBOARDS[0], "s")
    child.expect_exact("  skipped: nothing saved for this capability")
    reply(child, ALERTS[0], "n")
    reply(child, NOTES, "")
    reply(child, SAVE, "y")
    reply(child, ONCALL[0], "s")
    code, _signal, _transcript = finish(child)
    assert code == 0
    assert (cell(ready, "web", "Dashboards")["state"], cell(ready, "web", "Alerts")["level"],
            cell(ready, "web", "On-call")["state"]) == ("Not Assessed", 0, "Not Assessed")
    assert commits(ready)[0].startswith("assess: Checkout, Login/web Alerts none→0 (")


def test_status_table_is_coloured_on_a_terminal_unless_no_color(ready, run):
    run(ready, "assess", "--asset", "web", "--capability", "Alerts", "--level", "1")
    shown = {}
    for no_color in ("", "1"):
        env = {k: v for k, v in child_env().items() if k != "NO_COLOR"}
        if no_color:
            env["NO_COLOR"] = no_color
        child = pexpect.spawn(sys.executable, [str(SCRIPT), "--data-dir", str(ready), "status"],
                              env=env, encoding="utf-8", timeout=10, dimensions=(40, 200))
        child.logfile_read = io.StringIO()
        code, _signal, shown[no_color] = finish(child)
        assert code == 0
    assert "\x1b[33m1A" in shown[""]  # web's Alerts: level 1, Amber
    assert "\x1b[2m-" in shown[""]  # not assessed: dimmed
    assert "\x1b[" not in shown["1"] and "1A" in shown["1"]


# ---------------------------------------------------------------- locks wait only for writes
def meanwhile(folder: Path, *args: str) -> str:
    """Another command in the folder while a prompt waits: it must finish without waiting
    for the lock (no "waiting for another sre-tracker command"); returns its output."""
    other = spawn(folder, *args)
    code, _signal, transcript = finish(other)
    assert code == 0, transcript
    assert "waiting for another" not in transcript
    return transcript


BOB = ("assess", "--asset", "auth", "--capability", "Alerts", "--level", "1", "--assessor", "bob")


def answer_while_others_write(ready: Path, asset: str, questions: list[str],
                              *others: tuple[str, ...]) -> pexpect.spawn:
    """jdoe answers the first question, leaves the second waiting while ``others`` run to
    their end, then answers no and confirms; returns the session at the save."""
    capability = "Alerts" if questions is ALERTS else "Dashboards"
    child = spawn(ready, "assess", "--asset", asset, "--capability", capability,
                  "--assessor", "jdoe")
    reply(child, questions[0], "y")
    child.expect_exact(questions[1])  # someone is at lunch, the question waiting
    for args in others:
        meanwhile(ready, *args)
    child.sendline("n")
    reply(child, NOTES, "")
    reply(child, SAVE, "y")
    return child


def test_a_waiting_prompt_holds_no_lock_and_the_cell_is_checked_before_saving(ready):
    child = answer_while_others_write(
        ready, "web", ALERTS, ("report",), BOB,
        ("assess", "--asset", "web", "--capability", "Alerts", "--level", "3", "--assessor",
         "alice"))
    child.expect_exact("  not saved: web / Alerts was assessed meanwhile by alice at ")
    code, _signal, transcript = finish(child)
    assert code == 0 and "saved\r\n" not in transcript.split("not saved")[-1]
    web = next(e for e in status(ready)["matrix"]
               if (e["asset"], e["capability"]) == ("web", "Alerts"))
    assert (web["level"], web["assessed_by"]) == (3, "alice")
    assert commits(ready)[:2] == ["assess: Checkout, Login/web Alerts none→3 (alice)",
                                  "assess: Login/auth Alerts none→1 (bob)"]
    assert git(ready, "status", "--porcelain") == ""


def test_a_cell_nobody_touched_meanwhile_is_saved_after_other_writes(ready):
    child = answer_while_others_write(ready, "payment-api", DASHBOARDS, BOB)
    child.expect_exact("saved")
    code, _signal, _transcript = finish(child)
    assert code == 0
    assert commits(ready)[:2] == ["assess: Checkout/payment-api Dashboards none→1 (jdoe)",
                                  "assess: Login/auth Alerts none→1 (bob)"]
    matrix = {(e["asset"], e["capability"]): e["level"] for e in status(ready)["matrix"]}
    assert (matrix[("payment-api", "Dashboards")], matrix[("auth", "Alerts")]) == (1, 1)
    assert git(ready, "status", "--porcelain") == ""
    assert "payment-api,Checkout,Payments,Monitoring,Dashboards,Assessed,1," in (
        ready / "sre_matrix.csv").read_text()


def test_a_refused_interactive_setup_returns_to_the_review_keeping_the_rows(tmp_path):
    folder, child = setup_in_new_folder(
        tmp_path, assessments="Asset Name,Capability,Level\n"
                              "cart-service,Golden-signal dashboards,2\n")
    enter_flow(child, "Checkout", "payment-api", "Payments")
    reply(child, REVIEW, "w")
    child.expect_exact("not written: assessments.csv:2, column 'Asset Name': unknown asset "
                       "'cart-service'")
    child.expect_exact("    1) Checkout / payment-api / Payments / 3\r\n")
    assert sorted(p.name for p in folder.iterdir()) == ["assessments.csv"]
    reply(child, REVIEW, "a")
    enter_flow(child, "Checkout", "cart-service", "Shop")
    reply(child, REVIEW, "w")
    child.expect_exact("imported 1 assessment from assessments.csv")
    code, _signal, _transcript = finish(child)
    assert code == 0
    assert {e["asset"] for e in status(folder)["matrix"]} == {"payment-api", "cart-service"}
    assert git(folder, "status", "--porcelain") == ""
