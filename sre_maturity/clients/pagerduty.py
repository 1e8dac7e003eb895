"""A thin PagerDuty REST API v2 client for checks (``reference/evidence-sources.md`` §3): the
services (listed once per run) and who is on call for a batch of escalation policies."""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, NamedTuple

from sre_maturity.clients.sources import SourceClient, unset

if TYPE_CHECKING:
    from config import Settings

PAGE = 100  # the largest classic page
MAX_OFFSET = 10_000  # offset + limit may not pass it
BATCH = 25  # escalation policy ids per on-call request (keeps the URL short)
WORKERS = 4  # requests in flight at once


class Service(NamedTuple):
    """A PagerDuty service and its escalation policy."""

    id: str
    name: str
    policy_id: str
    link: str


class OnCall(NamedTuple):
    """Someone on call for an escalation policy at a level."""

    policy_id: str
    level: int
    user: str


def unconfigured(settings: Settings) -> str | None:
    """Why PagerDuty checks cannot run with these settings (None: they can)."""
    return unset(settings, "PAGERDUTY_TOKEN")


class PagerDutyClient(SourceClient):
    """PagerDuty's REST API v2."""

    name = "PagerDuty"
    url_setting = "PAGERDUTY_URL"
    credentials = "PAGERDUTY_TOKEN"

    def __init__(self, url: str, token: str, **kw: Any) -> None:
        super().__init__(url, f"Token token={token}", [token],
                         headers={"Accept": "application/vnd.pagerduty+json;version=2"}, **kw)

    def server_text(self, data: Any) -> str:
        err = data.get("error") if isinstance(data, dict) else None
        if isinstance(err, dict):
            return str(err.get("message") or "")
        return ""

    def _page(self, path: str, key: str, what: str, params: dict[str, Any],
              offset: int) -> tuple[list[dict], Any]:
        if offset + PAGE > MAX_OFFSET:
            raise self.error(f"PagerDuty's API lists at most {MAX_OFFSET:,} of {what}; "
                             "use a key that sees fewer (a team's read-only key)")
        data = self.json(self.request("GET", path, what, params={
            **params, "limit": PAGE, "offset": offset}), what)
        items = data.get(key) if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise self.error(f"PagerDuty answered {what} without {key}; check "
                             f"{self.url_setting}")
        return [i for i in items if isinstance(i, dict)], data

    def _pages(self, path: str, key: str, what: str, params: dict[str, Any]) -> list[dict]:
        """Every page of a classic-paged list: the first asks for the total, so the other
        pages can be fetched a few at a time; without a total, one after the other."""
        out, data = self._page(path, key, what, {**params, "total": "true"}, 0)
        total = data.get("total")
        if not data.get("more") or not out:
            return out
        if isinstance(total, int) and total <= MAX_OFFSET:
            offsets = range(len(out), total, PAGE)
            with ThreadPoolExecutor(max_workers=WORKERS) as pool:
                for items, _data in pool.map(
                        lambda at: self._page(path, key, what, params, at), offsets):
                    out += items
            return out
        offset = len(out)
        while True:
            items, data = self._page(path, key, what, params, offset)
            out += items
            if not data.get("more") or not items:
                return out
            offset += len(items)

    def reach(self) -> str:
        """For ``check``: one small request proving the address and key work."""
        data = self.json(self.request("GET", "/services", "the services", params={
            "limit": 1, "total": "true"}), "the services")
        total = data.get("total") if isinstance(data, dict) else None
        return f"key accepted, {total if total is not None else '?'} service" + (
            "" if total == 1 else "s")

    def services(self) -> list[Service]:
        """Every service the key may see."""
        return [Service(str(s.get("id", "")), str(s.get("name", "")),
                        str((s.get("escalation_policy") or {}).get("id", "")),
                        str(s.get("html_url") or ""))
                for s in self._pages("/services", "services", "the services", {})]

    def oncalls(self, policy_ids: Iterable[str]) -> list[OnCall]:
        """Who is on call now for these escalation policies, ``BATCH`` policies a request (a
        few requests at a time)."""
        ids = sorted(set(policy_ids))
        batches = [ids[start:start + BATCH] for start in range(0, len(ids), BATCH)]
        out: list[OnCall] = []
        with ThreadPoolExecutor(max_workers=WORKERS) as pool:
            for found in pool.map(lambda batch: self._pages(
                    "/oncalls", "oncalls", "the on-calls",
                    {"escalation_policy_ids[]": batch, "earliest": "true"}), batches):
                for o in found:
                    user = (o.get("user") or {}).get("summary") or (o.get("user") or {}).get("id")
                    level = o.get("escalation_level")
                    if user and isinstance(level, int):
                        out.append(OnCall(str((o.get("escalation_policy") or {}).get("id", "")),
                                          level, str(user)))
        return out


def client_from_settings(settings: Settings, **kw: Any) -> PagerDutyClient:
    """The client for PAGERDUTY_URL with PAGERDUTY_TOKEN."""
    return PagerDutyClient(settings.text("PAGERDUTY_URL"), settings.text("PAGERDUTY_TOKEN"), **kw)
