"""Configuration: precedence, sources, masking, validation."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import config
from sre_maturity.support.errors import ConfigError


@pytest.fixture
def env_file(tmp_path: Path) -> Path:
    path = tmp_path / ".env"
    path.write_text("RALLY_TAG=from-file\nRALLY_PROJECT_ID=111\nRALLY_API_KEY=_file_secret_\n")
    return path


@pytest.mark.parametrize(
    ("flags", "environ", "expected", "source"),
    [
        ({}, {}, "from-file", ".env"),
        ({}, {"RALLY_TAG": "from-env"}, "from-env", "environment"),
        ({"RALLY_TAG": "from-flag"}, {"RALLY_TAG": "from-env"}, "from-flag", "flag"),
    ],
)
def test_precedence_flag_over_environment_over_file(tmp_path, env_file, flags, environ,
                                                    expected, source):
    s = config.load(data_dir=str(tmp_path), flags=flags, environ=environ)
    assert (s.get("RALLY_TAG"), s.values["RALLY_TAG"].source.split(" ")[0]) == (expected, source)


def test_defaults_apply_when_nothing_is_set(tmp_path):
    s = config.load(data_dir=str(tmp_path), environ={})
    assert (s.get("RALLY_BASE_URL"), s.get("CONFLUENCE_TABLE_TITLE"), s.get("RALLY_API_KEY")) \
        == ("https://rally1.rallydev.com", "SRE Action Items", None)


def test_data_dir_from_environment(tmp_path):
    s = config.load(environ={"SRE_TRACKER_DATA_DIR": str(tmp_path)})
    assert s.data_dir == tmp_path.resolve()


def test_explicit_env_file_must_exist(tmp_path):
    with pytest.raises(ConfigError, match="--env-file"):
        config.load(data_dir=str(tmp_path), env_file=str(tmp_path / "nope.env"), environ={})


def test_env_file_dev_null_means_no_settings_file_and_a_pipe_is_refused(tmp_path):
    (tmp_path / ".env").write_text("RALLY_API_KEY=_from_folder_\n", encoding="utf-8")
    s = config.load(data_dir=str(tmp_path), env_file=os.devnull, environ={})
    assert s.get("RALLY_API_KEY") is None  # the folder's .env is not read either
    fifo = tmp_path / "settings.pipe"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="is not a regular file"):
        config.load(data_dir=str(tmp_path), env_file=str(fifo), environ={})


def test_secrets_are_masked_everywhere(tmp_path, env_file):
    s = config.load(data_dir=str(tmp_path), environ={"CONFLUENCE_PAT": "_pat_secret_"})
    shown = "\n".join(s.describe()) + repr(s.values["RALLY_API_KEY"]) + repr(s)
    assert "_file_secret_" not in shown and "_pat_secret_" not in shown and "<hidden>" in shown


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RALLY_PROJECT_ID", "abc"),
        ("RALLY_WORKSPACE_ID", "12x"),
        ("CONFLUENCE_PAGE_ID", "page"),
        ("RALLY_BASE_URL", "rally1.rallydev.com"),
        ("CONFLUENCE_BASE_URL", "ftp://wiki"),
        ("CONFLUENCE_API", "server"),
        ("RALLY_PARENT_ID", "feature 12"),
        ("SRE_TRACKER_GIT_COMMIT", "maybe"),
    ],
)
def test_invalid_values_name_the_variable(tmp_path, name, value):
    # A Rally or Confluence setting is refused when a command uses it, not at load time.
    with pytest.raises(ConfigError, match=name):
        config.load(data_dir=str(tmp_path), environ={name: value}).get(name)


def test_invalid_secret_error_does_not_echo_it(tmp_path):
    settings = config.load(data_dir=str(tmp_path), environ={"RALLY_API_KEY": "_abc def_"})
    with pytest.raises(ConfigError) as info:
        settings.get("RALLY_API_KEY")
    assert "RALLY_API_KEY" in str(info.value) and "_abc" not in str(info.value)
    assert "_abc" not in "\n".join(settings.describe())


def test_describe_says_not_set_and_not_valid_in_words(tmp_path):
    lines = config.load(data_dir=str(tmp_path),
                        environ={"RALLY_PROJECT_ID": "abc"}).describe()
    assert "RALLY_API_KEY not set" in lines
    assert "RALLY_PROJECT_ID not valid (environment): RALLY_PROJECT_ID must be a numeric id, " \
        "not 'abc'" in lines
    assert not any("(not set) (unset)" in line for line in lines)


def test_git_commit_switch_and_no_commit_flag(tmp_path):
    off = config.load(data_dir=str(tmp_path), environ={"SRE_TRACKER_GIT_COMMIT": "false"})
    flag = config.load(data_dir=str(tmp_path), environ={}, no_commit=True)
    on = config.load(data_dir=str(tmp_path), environ={})
    assert (off.commit, flag.commit, on.commit) == (False, False, True)


@pytest.mark.parametrize(
    ("url", "api"),
    [("https://acme.atlassian.net/wiki", "cloud"), ("https://wiki.corp.example", "datacenter")],
)
def test_confluence_api_auto(tmp_path, url, api):
    s = config.load(data_dir=str(tmp_path), environ={"CONFLUENCE_BASE_URL": url})
    assert s.confluence_api == api


def test_require_names_every_missing_setting(tmp_path):
    s = config.load(data_dir=str(tmp_path), environ={"RALLY_API_KEY": "k"})
    with pytest.raises(ConfigError) as info:
        s.require(config.RALLY_REQUIRED, "report --push")
    assert all(n in str(info.value) for n in
               ("RALLY_WORKSPACE_ID", "RALLY_PROJECT_ID", "RALLY_PARENT_ID"))


def test_require_without_a_settings_file_names_where_one_would_be_read(tmp_path):
    s = config.load(data_dir=str(tmp_path), environ={})
    with pytest.raises(ConfigError) as info:
        s.require(config.RALLY_REQUIRED, "sync")
    assert f"set them in {tmp_path.resolve() / '.env'} or in the environment" in str(info.value)


def test_an_env_file_that_is_a_folder_says_so(tmp_path):
    with pytest.raises(ConfigError, match="is a folder"):
        config.load(data_dir=str(tmp_path), env_file=str(tmp_path), environ={})


def test_confluence_missing_lists_credentials(tmp_path):
    s = config.load(data_dir=str(tmp_path), environ={
        "CONFLUENCE_BASE_URL": "https://acme.atlassian.net/wiki", "CONFLUENCE_PAGE_ID": "1"})
    assert s.confluence_missing() == ["CONFLUENCE_USER", "CONFLUENCE_API_TOKEN"]


def test_env_example_lists_every_variable():
    text = (Path(__file__).parents[1] / ".env.example").read_text()
    assert all(f"\n{name}=" in text for name in config.VARIABLES)


def test_evidence_source_settings_and_their_secrets(tmp_path):
    s = config.load(data_dir=str(tmp_path), environ={
        "SPLUNK_URL": "https://splunk.example.com:8089/", "SPLUNK_TOKEN": "_splunk_secret_",
        "PROMETHEUS_TOKEN": "_prom_secret_", "PAGERDUTY_TOKEN": "_pd_secret_",
        "SPLUNK_PASSWORD": "_pw_secret_"})
    assert s.get("SPLUNK_URL") == "https://splunk.example.com:8089"
    assert s.get("PAGERDUTY_URL") == "https://api.pagerduty.com"
    shown = "\n".join(s.describe())
    assert "_secret_" not in shown and shown.count("<hidden>") == 4


@pytest.mark.parametrize(("name", "own"), [
    ("SPLUNK_URL", "SPLUNK_TOKEN"), ("PROMETHEUS_URL", "PROMETHEUS_TOKEN"),
    ("PAGERDUTY_URL", "PAGERDUTY_TOKEN")])
def test_a_source_url_with_credentials_names_the_setting_they_belong_in(tmp_path, name, own):
    s = config.load(data_dir=str(tmp_path), environ={name: "https://bot:_pw_@host:8089"})
    with pytest.raises(ConfigError) as info:
        s.get(name)
    assert own in str(info.value) and "_pw_" not in str(info.value)
    # Only the commands using that source stop: the others still load and run.
    assert s.get("RALLY_BASE_URL") == "https://rally1.rallydev.com"


def test_env_file_cannot_switch_command_trust_on(tmp_path):
    (tmp_path / ".env").write_text("SRE_TRACKER_TRUST_COMMANDS=1\n")
    s = config.load(data_dir=str(tmp_path), environ={})
    assert "SRE_TRACKER_TRUST_COMMANDS" not in s.values
    assert "never from this file" in config.env_example()


def test_a_splunk_password_may_hold_spaces_a_token_may_not(tmp_path):
    s = config.load(data_dir=str(tmp_path), environ={"SPLUNK_PASSWORD": "correct horse battery",
                                                      "SPLUNK_TOKEN": "ab cd"})
    assert s.get("SPLUNK_PASSWORD") == "correct horse battery"
    with pytest.raises(ConfigError, match="SPLUNK_TOKEN contains white space"):
        s.get("SPLUNK_TOKEN")
