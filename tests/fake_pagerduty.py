"""A fake PagerDuty REST API v2 on 127.0.0.1, following ``reference/evidence-sources.md`` §3.

* Auth: exactly ``Authorization: Token token=<key>``; any other form is 401
  ``{"error": {"message": "Unauthorized", "code": 2001}}``. ``forbidden`` keys get 403.
* Classic paging: ``limit`` (default 25, max 100), ``offset``, ``more``; ``total`` null unless
  ``total=true``; ``offset + limit`` over 10,000 is a 400.
* ``GET /services?query=…``: ``services[]`` of ``{id, name, escalation_policy: {id, type}}``
  (``query`` matches part of the name, ignoring case).
* ``GET /oncalls?escalation_policy_ids[]=…&earliest=true``: ``oncalls[]`` of ``{user,
  schedule, escalation_policy, escalation_level, start, end}``.

Observation: ``requests``/``count()``; ``policy_batches`` (the ids asked for per request).
"""

from __future__ import annotations

import itertools
from typing import Any

from fake_http import FakeSource, Reply

DEFAULT_TOKEN = "u+fakePagerDutyKey_0123456789"
MAX_OFFSET = 10_000


def pd_error(status: int, message: str, code: int) -> Reply:
    """PagerDuty's error envelope."""
    return Reply(status, {"error": {"message": message, "code": code}})


class FakePagerDuty(FakeSource):
    """PagerDuty: services and on-calls."""

    def __init__(self, *, token: str = DEFAULT_TOKEN, latency: float = 0.0) -> None:
        super().__init__(latency)
        self.token = token
        self.forbidden = False
        self.totals = True  # False: answer total null even when asked (the client must walk)
        self.services: list[dict[str, Any]] = []
        self.oncalls: list[dict[str, Any]] = []
        self.policy_batches: list[list[str]] = []
        self._ids = itertools.count(1)

    def settings(self) -> dict[str, str]:
        """The PAGERDUTY_* settings reaching this fake."""
        return {"PAGERDUTY_URL": self.url, "PAGERDUTY_TOKEN": self.token}

    def add_service(self, name: str, *, on_call: int | None = 1,
                    policy_id: str | None = None) -> str:
        """A service with its escalation policy; ``on_call`` is the escalation level someone is
        on call at (None: nobody). Returns the policy id."""
        n = next(self._ids)
        policy = policy_id or f"PEP{n:05d}"
        self.services.append({"id": f"PSV{n:05d}", "type": "service", "name": name,
                              "summary": name, "status": "active",
                              "escalation_policy": {"id": policy,
                                                    "type": "escalation_policy_reference"}})
        if on_call is not None:
            self.oncalls.append({
                "user": {"id": f"PU{n:05d}", "type": "user_reference",
                         "summary": f"On Call {n}"},
                "schedule": {"id": f"PSC{n:05d}", "type": "schedule_reference"},
                "escalation_policy": {"id": policy, "type": "escalation_policy_reference"},
                "escalation_level": on_call, "start": "2026-12-06T00:00:00Z",
                "end": "2026-12-13T00:00:00Z"})
        return policy

    def serve(self, method: str, path: str, query: dict[str, list[str]], headers: Any,
              body: bytes) -> Reply:
        if headers.get("Authorization") != f"Token token={self.token}":
            return pd_error(401, "Unauthorized", 2001)
        if self.forbidden:
            return pd_error(403, "Access Denied", 2010)
        try:
            limit = int(query.get("limit", ["25"])[-1])
            offset = int(query.get("offset", ["0"])[-1])
        except ValueError:
            return pd_error(400, "Invalid Input Provided", 2001)
        if limit > 100 or offset + limit > MAX_OFFSET:
            return pd_error(400, "Offset must be less than 10000.", 2001)
        if path == "/services" and method == "GET":
            wanted = query.get("query", [""])[-1].lower()
            found = [s for s in self.services if wanted in s["name"].lower()]
            return self._page("services", found, limit, offset, query)
        if path == "/oncalls" and method == "GET":
            ids = query.get("escalation_policy_ids[]", [])
            self.policy_batches.append(ids)
            found = [o for o in self.oncalls if not ids or o["escalation_policy"]["id"] in ids]
            if query.get("earliest", [""])[-1] == "true":
                found = _earliest(found)
            return self._page("oncalls", found, limit, offset, query)
        return pd_error(404, "Not Found", 2100)

    def _page(self, key: str, found: list, limit: int, offset: int,
              query: dict[str, list[str]]) -> Reply:
        asked = query.get("total", [""])[-1] == "true" and self.totals
        total = len(found) if asked else None
        return Reply(200, {key: found[offset:offset + limit], "limit": limit, "offset": offset,
                           "more": offset + limit < len(found), "total": total})


def _earliest(oncalls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per user, policy and level (``earliest=true``)."""
    seen: dict[tuple[str, str, int], dict[str, Any]] = {}
    for o in oncalls:
        seen.setdefault((o["user"]["id"], o["escalation_policy"]["id"], o["escalation_level"]), o)
    return list(seen.values())
