"""What the evidence-source clients (Splunk, Prometheus, PagerDuty) share: one
``requests.Session`` per source with timeouts and the shared retry policy, credentials bound to
the source's own address, and every failure turned into one :class:`SourceError` line naming
the setting to fix (SPEC §8, §12).

A token goes only to its own URL: the session's auth adds it only to requests for the
configured scheme, host and port, and redirects are never followed (a 3xx is an error naming
the URL setting), so neither a redirect nor a link in an answer can carry it elsewhere.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import urlencode, urlsplit

import requests
from urllib3.exceptions import ReadTimeoutError

import config
from sre_maturity.clients.http_retry import mount_retries
from sre_maturity.support.errors import SourceError

if TYPE_CHECKING:
    from config import Settings

log = logging.getLogger("sre_tracker.sources")

USER_AGENT = "sre-tracker (+checks)"
_MAX_SERVER_TEXT = 200


def origin(url: str) -> tuple[str, str, int | None]:
    """``(scheme, host, port)`` of a URL, the port made explicit."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or {"http": 80,
                                                                  "https": 443}.get(scheme)


class OwnHostAuth(requests.auth.AuthBase):
    """Sets one ``Authorization`` value, and only on requests to ``base_url``'s origin."""

    def __init__(self, base_url: str, value: str) -> None:
        self.origin = origin(base_url)
        self.value = value

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if origin(request.url or "") == self.origin:
            request.headers["Authorization"] = self.value
        else:
            request.headers.pop("Authorization", None)
        return request

    def __repr__(self) -> str:
        return "OwnHostAuth(<hidden>)"


def mask(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret replaced by ``<hidden>`` (longest first, so a secret that
    contains another is hidden whole): these ``secrets`` and every other one the tool knows
    (a source may echo the Rally key; config.mask_secrets)."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, "<hidden>")
    return config.mask_secrets(text)


class SourceClient:
    """One evidence source over HTTP. Subclasses set ``name`` (``Splunk``), ``url_setting``
    and ``credentials`` (the settings to name when the credentials are refused)."""

    name = "the source"
    url_setting = ""
    credentials = ""

    def __init__(self, base_url: str, authorization: str | None, secrets: Iterable[str], *,
                 timeout: float = 30.0, retries: int = 3, backoff: float = 0.5,
                 max_retry_after: float = 30.0,
                 methods: frozenset[str] = frozenset({"GET"}),
                 headers: Mapping[str, str] | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.host = urlsplit(self.base_url).netloc
        self.timeout = timeout
        self.retries = retries
        self.secrets = [s for s in secrets if s]
        for secret in self.secrets:
            config.remember_secret(secret)
        self.sent: list[str] = []  # every request, secrets masked (for --explain)
        self.session = requests.Session()
        # trust_env stays on: REQUESTS_CA_BUNDLE and proxy variables keep working.
        if authorization:
            self.session.auth = OwnHostAuth(self.base_url, authorization)
        self.session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json",
                                     **(headers or {})})
        mount_retries(self.session, retries=retries, backoff=backoff,
                      max_retry_after=max_retry_after, allowed_methods=methods)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the session and its connections."""
        self.session.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base_url!r})"

    def hide(self, text: str) -> str:
        """``text`` with this client's secrets masked."""
        return mask(text, self.secrets)

    def describe(self, method: str, path: str, params: Any = None, data: Any = None) -> str:
        """One request as ``--explain`` shows it (secrets masked)."""
        url = self.base_url + path
        if params:
            url += "?" + urlencode(params, doseq=True)
        text = f"{method} {url}"
        if data:
            text += " " + urlencode(data, doseq=True)
        return self.hide(text)

    def request(self, method: str, path: str, what: str, *, params: Any = None,
                data: Any = None, stream: bool = False) -> requests.Response:
        """Send one request; a 2xx answer is returned, anything else is a ``SourceError``
        (``stream``: the body is read by the caller, as it arrives)."""
        self.sent.append(self.describe(method, path, params, data))
        try:
            resp = self.session.request(method, self.base_url + path, params=params, data=data,
                                        timeout=self.timeout, allow_redirects=False,
                                        stream=stream)
        except requests.exceptions.SSLError as exc:
            raise self.error(f"TLS verification of {self.host} failed; if your network uses its "
                             "own certificate authority, set REQUESTS_CA_BUNDLE to its bundle "
                             "file") from exc
        except (requests.exceptions.Timeout, requests.exceptions.ConnectionError) as exc:
            if isinstance(exc, requests.exceptions.ReadTimeout) or _timed_out(exc):
                raise self.error(f"{self.name} at {self.host} did not answer {what} within "
                                 f"{self.timeout:g} s; try again later") from exc
            raise self.error(f"cannot reach {self.name} at {self.host} ({_reason(exc)}); check "
                             f"{self.url_setting} and the network or proxy") from exc
        except requests.exceptions.RequestException as exc:
            raise self.error(f"request to {self.name} at {self.host} failed "
                             f"({type(exc).__name__}); check {self.url_setting}") from exc
        log.debug("%s %s -> HTTP %s", method, path, resp.status_code)
        if resp.status_code >= 300:
            raise self.status_error(resp, what)
        return resp

    def json(self, resp: requests.Response, what: str) -> Any:
        """The JSON body of an answer, or a ``SourceError`` saying it is not JSON."""
        try:
            return resp.json()
        except ValueError as exc:
            raise self.error(f"{self.name} at {self.host} answered {what} with something that "
                             f"is not JSON; check {self.url_setting}") from exc

    def error(self, message: str) -> SourceError:
        return SourceError(self.hide(message))

    def server_text(self, data: Any) -> str:
        """The server's own reason from its parsed error body, when it carries one
        (subclasses know their source's error envelope)."""
        return ""

    def status_error(self, resp: requests.Response, what: str) -> SourceError:
        status = resp.status_code
        try:
            data = resp.json()
        except ValueError:
            data = None
        said = re_space(self.server_text(data))[:_MAX_SERVER_TEXT]
        detail = f": {said}" if said else ""
        if 300 <= status < 400:
            target = urlsplit(resp.headers.get("Location", "")).netloc or "another address"
            return self.error(f"{self.name} at {self.host} redirected {what} to {target}; "
                              f"set {self.url_setting} to the final address (credentials "
                              "are never sent after a redirect)")
        if status == 401:
            return self.error(f"{self.name} rejected the credentials (HTTP 401); check "
                              f"{self.credentials}")
        if status == 403:
            return self.error(f"{self.name} refused {what} (HTTP 403{detail}); give the account "
                              f"of {self.credentials} permission to read it")
        if status == 404:
            return self.error(f"{self.name} at {self.host} has no {what} (HTTP 404); check "
                              f"{self.url_setting}")
        if status == 429:
            return self.error(f"{self.name} kept answering 429 Too Many Requests after "
                              f"{self.retries} retries; try again later")
        if status >= 500:
            return self.error(f"{self.name} at {self.host} answered HTTP {status} to {what}"
                              f"{detail}; try again later")
        return self.error(f"{self.name} refused {what} (HTTP {status}{detail})")


def unset(settings: Settings, name: str) -> str | None:
    """``"<name> is not set"`` when the setting is empty (why a source's checks cannot run),
    else None."""
    return None if settings.get(name) else f"{name} is not set"


def re_space(text: str) -> str:
    """Runs of white space as one space (server texts may hold line breaks)."""
    return " ".join(text.split())


def _timed_out(exc: Exception) -> bool:
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, ReadTimeoutError)


def _reason(exc: Exception) -> str:
    text = repr(exc)
    if "NameResolutionError" in text or "Name or service not known" in text:
        return "host name not found"
    if "Connection refused" in text or "ConnectionRefused" in text:
        return "connection refused"
    if "ConnectTimeout" in text or "timed out" in text:
        return "connection timed out"
    if "ProxyError" in text:
        return "proxy error"
    return "connection failed"


def flag(value: Any) -> bool | None:
    """A Splunk-style boolean in any of its spellings (``1``, ``"1"``, ``true``, ``"True"``,
    ``0``, ...); None when it is none of them (unknown never counts as true)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    text = str(value).strip().lower() if value is not None else ""
    if text in ("1", "true", "t", "yes", "y", "on"):
        return True
    if text in ("0", "false", "f", "no", "n", "off", ""):
        return False
    return None
