"""Configuration: flags > environment > ``.env`` > defaults, each value knowing its source.

Secrets (API key, token, PAT) are never shown: ``Setting.shown`` and ``repr`` mask them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from sre_maturity.support.errors import ConfigError

__version__ = "0.1.0"

SECRETS = frozenset({"RALLY_API_KEY", "CONFLUENCE_API_TOKEN", "CONFLUENCE_PAT", "SPLUNK_TOKEN",
                     "SPLUNK_PASSWORD", "PROMETHEUS_TOKEN", "PAGERDUTY_TOKEN"})

# name -> (default, one-line meaning); the order is the order of `.env.example` and `check`.
VARIABLES: dict[str, tuple[str | None, str]] = {
    "RALLY_BASE_URL": ("https://rally1.rallydev.com", "Rally server"),
    "RALLY_API_KEY": (None, "Rally API key (sent as the ZSESSIONID header)"),
    "RALLY_WORKSPACE_ID": (None, "ObjectID of the Rally workspace"),
    "RALLY_PROJECT_ID": (None, "ObjectID of the Rally project the stories go to"),
    "RALLY_PARENT_ID": (None, "FormattedID of the feature the stories hang under, e.g. F1234"),
    "RALLY_TAG": ("SRE-Maturity", "tag put on every SRE story"),
    "CONFLUENCE_BASE_URL": (None, "e.g. https://example.atlassian.net/wiki"),
    "CONFLUENCE_USER": (None, "Cloud: account e-mail"),
    "CONFLUENCE_API_TOKEN": (None, "Cloud: API token"),
    "CONFLUENCE_PAT": (None, "Data Center: personal access token"),
    "CONFLUENCE_API": ("auto", "cloud, datacenter or auto"),
    "CONFLUENCE_PAGE_ID": (None, "id of the to-do page"),
    "CONFLUENCE_TABLE_TITLE": ("SRE Action Items", "heading the to-do table sits under"),
    "CONFLUENCE_RULEBOOK_PAGE_ID": (None, "id of the Rulebook page (the model, under heading "
                                          "'SRE Maturity Model')"),
    "CONFLUENCE_MATRIX_PAGE_ID": (None, "id of the matrix page (heatmap under heading "
                                        "'SRE Maturity Matrix')"),
    "SPLUNK_URL": (None, "Splunk management endpoint for checks, e.g. "
                         "https://splunk.example.com:8089"),
    "SPLUNK_TOKEN": (None, "Splunk authentication token (sent as a bearer token)"),
    "SPLUNK_USER": (None, "Splunk user name (basic auth; used when SPLUNK_TOKEN is not set)"),
    "SPLUNK_PASSWORD": (None, "Splunk password of SPLUNK_USER"),
    "PROMETHEUS_URL": (None, "Prometheus server for checks, e.g. https://prometheus.example.com"),
    "PROMETHEUS_TOKEN": (None, "optional bearer token for a Prometheus behind a proxy"),
    "PAGERDUTY_TOKEN": (None, "PagerDuty REST API key (read-only is enough)"),
    "PAGERDUTY_URL": ("https://api.pagerduty.com", "PagerDuty REST API"),
    "SRE_TRACKER_DATA_DIR": (None, "data folder"),
    "SRE_TRACKER_GIT_COMMIT": ("true", "false turns the git commits off"),
}

# Settings of one service: a bad value blocks only the commands that talk to that service.
SERVICE_PREFIXES = ("RALLY_", "CONFLUENCE_", "SPLUNK_", "PROMETHEUS_", "PAGERDUTY_")
# Sent in HTTP headers: ZSESSIONID, basic auth, bearer token.
HEADER_VALUES = SECRETS | {"CONFLUENCE_USER", "SPLUNK_USER"}
# Where the credential of a URL setting goes instead of the URL itself.
_CREDENTIAL_SETTINGS = {
    "RALLY_": "RALLY_API_KEY",
    "CONFLUENCE_": "CONFLUENCE_USER and CONFLUENCE_API_TOKEN, or CONFLUENCE_PAT",
    "SPLUNK_": "SPLUNK_TOKEN, or SPLUNK_USER and SPLUNK_PASSWORD",
    "PROMETHEUS_": "PROMETHEUS_TOKEN",
    "PAGERDUTY_": "PAGERDUTY_TOKEN",
}

RALLY_REQUIRED = ("RALLY_API_KEY", "RALLY_WORKSPACE_ID", "RALLY_PROJECT_ID", "RALLY_PARENT_ID")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Setting:
    """One resolved configuration value and where it came from."""

    name: str
    value: str | None
    source: str
    # Why the value given is not valid (it is then only refused by the commands that use it).
    error: str | None = None

    @property
    def secret(self) -> bool:
        return self.name in SECRETS

    @property
    def shown(self) -> str:
        if self.error is not None:
            return "(not valid)"
        if self.value is None:
            return "(not set)"
        return "<hidden>" if self.secret else self.value

    def __repr__(self) -> str:
        return f"Setting({self.name}={self.shown!s} from {self.source})"


@dataclass(frozen=True)
class Settings:
    """The resolved configuration of one run."""

    data_dir: Path
    env_file: Path | None
    values: Mapping[str, Setting] = field(repr=False)
    commit: bool = True

    def get(self, name: str) -> str | None:
        """The value; ConfigError when the value given is not valid, so a bad Rally setting
        stops only the commands that talk to Rally (likewise Confluence)."""
        setting = self.values[name]
        if setting.error is not None:
            raise ConfigError(setting.error)
        return setting.value

    def text(self, name: str) -> str:
        """The value of a setting that must be there: callers check the required ones first
        (:meth:`require`), and the rest have defaults; a gap is still one clear error."""
        value = self.get(name)
        if value is None:
            self.require((name,), "this command")
        return value or ""

    def describe(self) -> list[str]:
        """Lines ``NAME = value (source)`` with secrets masked, for ``-v`` and ``check``."""
        lines = []
        for s in self.values.values():
            if s.error is not None:
                lines.append(f"{s.name} not valid ({s.source}): {s.error}")
            elif s.value is None:
                lines.append(f"{s.name} not set")
            else:
                lines.append(f"{s.name} = {s.shown} ({s.source})")
        return lines

    def check_service(self, prefix: str) -> None:
        """Raise ConfigError for the first setting of one service (``CONFLUENCE_``, ``RALLY_``,
        ...) whose value is not valid: a command checks every service it will talk to before
        it writes anything."""
        for name in self.values:
            if name.startswith(prefix):
                self.get(name)

    def missing(self, names: tuple[str, ...] | list[str]) -> list[str]:
        return [n for n in names if not self.get(n)]

    def require(self, names: tuple[str, ...] | list[str], purpose: str) -> None:
        """Raise ConfigError naming every unset variable of ``names``."""
        missing = self.missing(names)
        if missing:
            # Without a settings file yet, name the one the tool would read.
            where = f" in {self.env_file or self.data_dir / '.env'}"
            raise ConfigError(
                f"{purpose} needs {', '.join(missing)}; set {'it' if len(missing) == 1 else 'them'}"
                f"{where} or in the environment (see .env.example)"
            )

    @property
    def rally_configured(self) -> bool:
        return not self.missing(RALLY_REQUIRED)

    @property
    def confluence_api(self) -> str:
        host = urlparse(self.get("CONFLUENCE_BASE_URL") or "").hostname or ""
        return confluence_flavour(self.get("CONFLUENCE_API"), host)

    def confluence_missing(self) -> list[str]:
        """Which Confluence settings are missing for a page update (empty: all there)."""
        missing = self.missing(("CONFLUENCE_BASE_URL", "CONFLUENCE_PAGE_ID"))
        if not self.get("CONFLUENCE_PAT") and self.missing(
            ("CONFLUENCE_USER", "CONFLUENCE_API_TOKEN")
        ):
            if self.confluence_api == "datacenter":
                missing.append("CONFLUENCE_PAT (or CONFLUENCE_USER and CONFLUENCE_API_TOKEN)")
            else:
                missing += self.missing(("CONFLUENCE_USER", "CONFLUENCE_API_TOKEN"))
        return missing


def is_cloud_host(host: str) -> bool:
    """Atlassian serves every Confluence Cloud site from ``<site>.atlassian.net``."""
    return host.lower().endswith(".atlassian.net")


def confluence_flavour(api: str | None, host: str) -> str:
    """``cloud`` or ``datacenter``: CONFLUENCE_API when it names one, else (``auto``) Cloud
    for an ``*.atlassian.net`` host and Data Center for any other."""
    api = (api or "auto").strip().lower()
    if api == "auto":
        return "cloud" if is_cloud_host(host) else "datacenter"
    return api


def _parse_bool(name: str, value: str) -> bool:
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ConfigError(f"{name}={value!r} is not a yes/no value; use true or false")


# Below this length a "secret" is not a real key: masking it would mangle ordinary words.
MIN_SECRET = 8
# Every secret value this process has read (settings of any source, valid or not).
_known_secrets: set[str] = set()


def remember_secret(value: str | None) -> None:
    """Add a value to what :func:`mask_secrets` hides (clients of other services call this
    for their own tokens)."""
    if value and len(value.strip()) >= MIN_SECRET:
        _known_secrets.add(value.strip())


def mask_secrets(text: str) -> str:
    """``text`` with every known secret (any service's, from any source) replaced by
    ``<hidden>``: a server may echo another service's key, a user may paste a key into the
    wrong setting. Longest first, so a key that contains another is hidden whole."""
    for secret in sorted(_known_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, "<hidden>")
    return text


def _shown(value: str) -> str:
    """A value quoted in a validation message: a long one (a key pasted into the wrong
    setting?) is described, never echoed."""
    return repr(value) if len(value) <= 24 else f"a {len(value)}-character value"


def is_loopback(host: str) -> bool:
    """True for this machine (localhost, 127.0.0.0/8, ::1): the only place plain http may go."""
    import ipaddress

    if host.lower() in ("localhost", "localhost.localdomain") or \
            host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(name: str, value: str) -> str:
    """Validate a service URL setting (any ``*_URL``); return it without a trailing ``/``.

    Refused, never echoing what could be a credential: a user or password in it, a query or
    fragment (``?apikey=…``), plain ``http://`` to anything but this machine (the key would
    cross the network, and any proxy, in clear text), and anything that is not a URL.
    """
    authority = value.split("//", 1)[-1].split("/", 1)[0]
    if "@" in authority:
        # Never echo it: what precedes the @ is a user name and often a password.
        own = next((v for k, v in _CREDENTIAL_SETTINGS.items() if name.startswith(k)),
                   "its own setting")
        raise ConfigError(
            f"{name} holds a user name or password (user:…@host); remove it and put the "
            f"credential in its own setting ({own})"
        )
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ConfigError(
            f"{name} is not a valid URL ({_shown(value)}); use the form https://host[/path]"
        )
    if parsed.query or parsed.fragment or "?" in value or "#" in value:
        raise ConfigError(
            f"{name} has a query or fragment (?… or #…); give only https://host[/path] and put "
            "any key in its own setting"
        )
    if parsed.scheme == "http" and not is_loopback(parsed.hostname):
        raise ConfigError(
            f"{name} uses http://, which would send the credentials in clear text to "
            f"{parsed.hostname} and every proxy on the way; use https:// (plain http is "
            "accepted only for this machine: localhost, 127.0.0.1, ::1)"
        )
    return value.rstrip("/")


def validate(name: str, value: str) -> str:
    """Check one setting's value; return it normalised or raise ConfigError naming it."""
    value = value.strip()
    if name.endswith("_URL"):
        return check_url(name, value)
    if name in ("RALLY_WORKSPACE_ID", "RALLY_PROJECT_ID", "CONFLUENCE_PAGE_ID",
                "CONFLUENCE_RULEBOOK_PAGE_ID", "CONFLUENCE_MATRIX_PAGE_ID"):
        if not (value.isascii() and value.isdigit()):  # "²³".isdigit() is True
            raise ConfigError(f"{name} must be a numeric id, not {_shown(value)}")
    elif name == "RALLY_PARENT_ID":
        if not re.fullmatch(r"[A-Za-z]+[0-9]+", value):
            raise ConfigError(f"{name} must be a FormattedID such as F1234, not "
                              f"{_shown(value)}")
        return value.upper()
    elif name == "CONFLUENCE_API":
        if value.lower() not in ("auto", "cloud", "datacenter"):
            raise ConfigError(f"{name} must be cloud, datacenter or auto, not {_shown(value)}")
        return value.lower()
    elif name == "SRE_TRACKER_GIT_COMMIT":
        return "true" if _parse_bool(name, value) else "false"
    elif name in SECRETS and name != "SPLUNK_PASSWORD" and any(c.isspace() for c in value):
        # Keys and tokens never hold spaces (a paste went wrong); a password may.
        # Never echo the value of a secret, not even in an error.
        raise ConfigError(f"{name} contains white space; paste the key again without spaces")
    if name in HEADER_VALUES and not _latin1(value):
        # HTTP headers (and basic auth) carry Latin-1 only; a curly quote or a look-alike
        # letter from a copy and paste would fail deep in the HTTP library instead.
        position = next(i for i, c in enumerate(value, 1) if not _latin1(c))
        raise ConfigError(f"{name} has a character HTTP cannot send (character {position}); "
                          "type or paste it again as plain text")
    return value


def _latin1(text: str) -> bool:
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


def _read_env_file(path: Path) -> dict[str, str | None]:
    """The file's values; a secret is taken exactly as written (python-dotenv would expand a
    ``${…}`` inside a generated key or token)."""
    from dotenv import dotenv_values

    try:
        values = dict(dotenv_values(path, encoding="utf-8"))
        raw = dotenv_values(path, encoding="utf-8", interpolate=False)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text; save it as UTF-8") from exc
    values.update({name: raw[name] for name in SECRETS if name in raw})
    return values


def load(
    *,
    data_dir: str | None = None,
    env_file: str | None = None,
    no_commit: bool = False,
    flags: Mapping[str, str | None] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Resolve every setting: flags > environment > ``.env`` > defaults.

    The data folder is ``--data-dir``, else ``$SRE_TRACKER_DATA_DIR``, else the current folder;
    the ``.env`` file is ``--env-file``, else ``.env`` in the data folder.
    """
    environ = os.environ if environ is None else environ
    flags = flags or {}
    if data_dir:
        folder, folder_source = Path(data_dir), "flag --data-dir"
    elif environ.get("SRE_TRACKER_DATA_DIR"):
        folder, folder_source = Path(environ["SRE_TRACKER_DATA_DIR"]), "environment"
    else:
        folder, folder_source = Path.cwd(), "current folder"
    folder = folder.expanduser().resolve()

    env_path: Path | None
    if env_file:
        env_path = Path(env_file).expanduser()
        if env_path.is_dir():
            raise ConfigError(f"--env-file {env_file} is a folder; give the settings file "
                              "(e.g. .env in the data folder)")
        if not env_path.exists():
            raise ConfigError(f"--env-file {env_file}: no such file")
        if not (env_path.is_file() or env_path.is_char_device()):  # /dev/null: no settings
            raise ConfigError(f"--env-file {env_file} is not a regular file (a pipe or a "
                              "socket?); give the settings file, or /dev/null for none")
    else:
        env_path = folder / ".env"
        if not env_path.is_file():
            env_path = None
    file_values = _read_env_file(env_path) if env_path else {}

    for name in SECRETS:
        for given in (flags, environ, file_values):
            remember_secret(given.get(name))
    values: dict[str, Setting] = {}
    for name, (default, _meaning) in VARIABLES.items():
        if name == "SRE_TRACKER_DATA_DIR":
            values[name] = Setting(name, str(folder), folder_source)
            continue
        candidates = (
            (flags.get(name), "flag"),
            (environ.get(name), "environment"),
            (file_values.get(name), f".env ({env_path})"),
            (default, "default"),
        )
        for raw, source in candidates:
            if raw is not None and str(raw).strip() != "":
                try:
                    values[name] = Setting(name, validate(name, str(raw)), source)
                except ConfigError as exc:
                    if not name.startswith(SERVICE_PREFIXES):
                        raise
                    values[name] = Setting(name, None, source,
                                           error=mask_secrets(str(exc)))
                break
        else:
            values[name] = Setting(name, None, "unset")

    commit = values["SRE_TRACKER_GIT_COMMIT"].value != "false" and not no_commit
    return Settings(data_dir=folder, env_file=env_path, values=values, commit=commit)


def env_example() -> str:
    """The text of ``.env.example``: every variable, commented."""
    lines = [
        "# sre-tracker settings. Copy to .env in the data folder and fill in.",
        "# Environment variables override this file; command-line flags override both.",
        "# Never commit .env: it holds secrets.",
        "",
    ]
    for name, (default, meaning) in VARIABLES.items():
        lines.append(f"# {meaning}" + (f" (default: {default})" if default else ""))
        lines.append(f"{name}=")
        lines.append("")
    lines += ["# SRE_TRACKER_TRUST_COMMANDS=1 (run every command check) is read only from the real",
              "# environment or --trust-commands, never from this file: a shared data folder",
              "# must not be able to switch it on.", ""]
    return "\n".join(lines)
