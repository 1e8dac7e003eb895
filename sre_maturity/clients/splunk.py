"""A thin Splunk REST client for checks (``reference/evidence-sources.md`` §1): the saved
searches (one listing of every owner's and app's, read once per run) and export searches.

Auth: ``SPLUNK_TOKEN`` as a bearer token, else ``SPLUNK_USER`` + ``SPLUNK_PASSWORD`` as basic
auth. Run checks with a read-only role: a search runs with the account's capabilities.
"""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING, Any, NamedTuple

import requests

from sre_maturity.clients.sources import SourceClient, flag
from sre_maturity.support.errors import SourceError

if TYPE_CHECKING:
    from config import Settings

SAVED = "/servicesNS/-/-/saved/searches"
EXPORT_V2 = "/services/search/v2/jobs/export"
EXPORT_V1 = "/services/search/jobs/export"  # Splunk before 9.0.1
CREDENTIALS = "SPLUNK_TOKEN (or SPLUNK_USER and SPLUNK_PASSWORD)"
EARLIEST = "-24h"
MAX_ROWS = 10_000  # result rows a check reads at most (results<op>N compares up to it)


class SavedSearch(NamedTuple):
    """One saved search as a check sees it."""

    name: str
    app: str
    enabled: bool
    scheduled: bool
    actions: tuple[str, ...]
    link: str

    @property
    def alerting(self) -> bool:
        """Enabled, scheduled and with at least one alert action."""
        return self.enabled and self.scheduled and bool(self.actions)


def unconfigured(settings: Settings) -> str | None:
    """Why Splunk checks cannot run with these settings (None: they can)."""
    if not settings.get("SPLUNK_URL"):
        return "SPLUNK_URL is not set"
    if not settings.get("SPLUNK_TOKEN") and settings.missing(("SPLUNK_USER", "SPLUNK_PASSWORD")):
        return f"{CREDENTIALS} is not set"
    return None


class SplunkClient(SourceClient):
    """Splunk's management port (``https://host:8089``)."""

    name = "Splunk"
    url_setting = "SPLUNK_URL"
    credentials = CREDENTIALS

    def __init__(self, url: str, *, token: str | None = None, user: str | None = None,
                 password: str | None = None, **kw: Any) -> None:
        if token:
            authorization, secrets = f"Bearer {token}", [token]
        else:
            pair = base64.b64encode(f"{user}:{password}".encode()).decode()
            authorization, secrets = f"Basic {pair}", [pair, password or ""]
        # An export search only reads, so a POST that failed may be sent again.
        super().__init__(url, authorization, secrets, methods=frozenset({"GET", "POST"}), **kw)
        self._export_path = EXPORT_V2

    def server_text(self, data: Any) -> str:
        found = data.get("messages") if isinstance(data, dict) else None
        if not isinstance(found, list):
            return ""
        return "; ".join(str(m.get("text")) for m in found if isinstance(m, dict) and
                         m.get("text"))

    def saved_searches(self) -> list[SavedSearch]:
        """Every saved search the account may see, all owners and apps (paged when the server
        answers fewer than all)."""
        out: list[SavedSearch] = []
        offset = 0
        while True:
            params = {"output_mode": "json", "count": "0", "offset": str(offset)}
            data = self.json(self.request("GET", SAVED, "the saved searches", params=params),
                             "the saved searches")
            entries = data.get("entry") if isinstance(data, dict) else None
            if not isinstance(entries, list):
                raise self.error(f"Splunk at {self.host} answered the saved searches without "
                                 f"entries; check {self.url_setting}")
            out += [_saved(e) for e in entries if isinstance(e, dict)]
            total = (data.get("paging") or {}).get("total")
            offset += len(entries)
            if not entries or not isinstance(total, int) or offset >= total:
                return out

    def reach(self) -> str:
        """For ``check``: one small request proving the address and credentials work."""
        data = self.json(self.request("GET", SAVED, "the saved searches", params={
            "output_mode": "json", "count": "1"}), "the saved searches")
        total = ((data.get("paging") or {}) if isinstance(data, dict) else {}).get("total")
        return (f"credentials accepted, {total if total is not None else '?'} saved "
                f"search{'' if total == 1 else 'es'}")

    def export(self, search: str, *, earliest: str = EARLIEST,
               max_rows: int = MAX_ROWS) -> list[dict[str, Any]]:
        """Run ``search`` as an export search over ``earliest`` .. now: its result rows
        (field -> value; Splunk sends numbers as strings). The answer is read as it streams
        and at most ``max_rows`` + 1 rows are kept (one more than the most a check compares
        with, so "more than" can still be told): a search of raw events stops there."""
        text = search.strip()
        if not text.startswith(("search ", "|")):
            text = "search " + text
        form = {"search": text, "earliest_time": earliest, "latest_time": "now",
                "output_mode": "json"}
        try:
            resp = self.request("POST", self._export_path, "the search", data=form,
                                stream=True)
        except SourceError as exc:
            if self._export_path != EXPORT_V2 or "HTTP 404" not in str(exc):
                raise
            self._export_path = EXPORT_V1  # before 9.0.1 there is no v2 endpoint
            resp = self.request("POST", self._export_path, "the search", data=form,
                                stream=True)
        rows: list[dict[str, Any]] = []
        try:
            for line in resp.iter_lines():
                if not line.strip():
                    continue
                try:
                    item = json.loads(line)
                except ValueError as exc:
                    raise self.error(f"Splunk at {self.host} answered the search with "
                                     "something that is not JSON lines") from exc
                if not isinstance(item, dict):
                    continue
                for message in item.get("messages") or []:
                    if isinstance(message, dict) and message.get("type") in ("ERROR", "FATAL"):
                        raise self.error("Splunk could not run the search: "
                                         f"{message.get('text')}")
                if isinstance(item.get("result"), dict) and not item.get("preview"):
                    rows.append(item["result"])
                    if len(rows) > max_rows:
                        break
        except requests.exceptions.RequestException as exc:
            raise self.error(f"the answer of Splunk at {self.host} to the search broke off "
                             f"({type(exc).__name__}); try again later") from exc
        finally:
            resp.close()
        return rows


def _saved(entry: dict[str, Any]) -> SavedSearch:
    content = entry.get("content")
    content = content if isinstance(content, dict) else {}
    acl = entry.get("acl")
    acl = acl if isinstance(acl, dict) else {}
    actions = tuple(a.strip() for a in str(content.get("actions") or "").split(",")
                    if a.strip())
    # A flag spelled in a way Splunk is not known to use counts against the alert.
    return SavedSearch(str(entry.get("name", "")), str(acl.get("app", "")),
                       flag(content.get("disabled")) is False,
                       flag(content.get("is_scheduled")) is True, actions,
                       str(entry.get("id") or ""))


def client_from_settings(settings: Settings, **kw: Any) -> SplunkClient:
    """The client for SPLUNK_URL with SPLUNK_TOKEN or SPLUNK_USER/SPLUNK_PASSWORD."""
    return SplunkClient(settings.text("SPLUNK_URL"), token=settings.get("SPLUNK_TOKEN"),
                        user=settings.get("SPLUNK_USER"),
                        password=settings.get("SPLUNK_PASSWORD"), **kw)
