"""A fake Splunk management port (splunkd REST) on 127.0.0.1, following
``reference/evidence-sources.md`` §1.

* Auth: ``Authorization: Bearer <token>`` or basic ``user:password``; anything else is 401
  with Splunk's ``{"messages": [{"type": "WARN", "text": "call not properly
  authenticated"}]}``. A user without the capability to list saved searches gets 403.
* ``GET /servicesNS/-/-/saved/searches?output_mode=json&count=0&offset=N``: entries
  ``{name, id, acl, content}`` with ``paging {total, perPage, offset}``. ``page_cap`` makes the
  server return fewer entries than asked (as a server-side limit would), so a client must page.
  Booleans arrive in the three spellings Splunk is seen to use (``0/1``, ``"0"/"1"``,
  ``true/false``).
* ``POST /services/search/v2/jobs/export`` (``v2=False``: only the pre-9.0.1
  ``/services/search/jobs/export``): form fields ``search``, ``earliest_time``,
  ``latest_time``, ``output_mode=json``; the answer is one JSON object per line with
  ``result``. A search with an unbalanced double quote is refused as Splunk's parser would
  (400 with a FATAL message). Results come from ``results[search text]``.

Observation: ``requests``/``count()`` (from ``FakeSource``), ``searches`` (every search text
received), ``forms``.
"""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import parse_qs, quote

from fake_http import FakeSource, Reply

DEFAULT_TOKEN = "eyJraWQiOiJzcGx1bmsuc2VjcmV0IiwiYWxnIjoiSFM1MTIifQ.fake-splunk-token"
DEFAULT_USER = "svc-sre"
DEFAULT_PASSWORD = "fake-splunk-password-7"
SAVED = "/servicesNS/-/-/saved/searches"
EXPORT_V2 = "/services/search/v2/jobs/export"
EXPORT_V1 = "/services/search/jobs/export"

_BOOLS = ({True: 1, False: 0}, {True: "1", False: "0"}, {True: True, False: False})


def messages(kind: str, text: str) -> dict[str, Any]:
    """Splunk's error envelope."""
    return {"messages": [{"type": kind, "text": text}]}


class FakeSplunk(FakeSource):
    """Splunk's management port: saved searches and export searches."""

    def __init__(self, *, token: str = DEFAULT_TOKEN, user: str = DEFAULT_USER,
                 password: str = DEFAULT_PASSWORD, latency: float = 0.0, v2: bool = True,
                 page_cap: int | None = None) -> None:
        super().__init__(latency)
        self.token = token
        self.user = user
        self.password = password
        self.v2 = v2
        self.page_cap = page_cap
        self.may_list = True
        self.saved: list[dict[str, Any]] = []
        self.results: dict[str, list[dict[str, str]]] = {}
        self.searches: list[str] = []
        self.forms: list[dict[str, str]] = []

    def settings(self, *, basic: bool = False) -> dict[str, str]:
        """The SPLUNK_* settings reaching this fake (token, or user and password)."""
        if basic:
            return {"SPLUNK_URL": self.url, "SPLUNK_USER": self.user,
                    "SPLUNK_PASSWORD": self.password}
        return {"SPLUNK_URL": self.url, "SPLUNK_TOKEN": self.token}

    def add_alert(self, name: str, *, disabled: bool = False, scheduled: bool = True,
                  actions: str = "email,pagerduty", app: str = "search",
                  search: str = "index=main error | stats count") -> None:
        """A saved search (an alert when scheduled with actions)."""
        spelling = _BOOLS[len(self.saved) % len(_BOOLS)]
        self.saved.append({
            "name": name,
            "id": f"{self.url}/servicesNS/nobody/{app}/saved/searches/{quote(name, safe='')}",
            "acl": {"app": app, "owner": "nobody", "sharing": "app"},
            "content": {"search": search, "disabled": spelling[disabled],
                        "is_scheduled": spelling[scheduled], "cron_schedule": "*/5 * * * *",
                        "actions": actions, "alert_type": "number of events",
                        "alert_comparator": "greater than", "alert_threshold": "0"}})

    # --- serving ---

    def _authorised(self, headers: Any) -> bool:
        auth = headers.get("Authorization") or ""
        basic = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        return auth in (f"Bearer {self.token}", f"Basic {basic}")

    def serve(self, method: str, path: str, query: dict[str, list[str]], headers: Any,
              body: bytes) -> Reply:
        if not self._authorised(headers):
            return Reply(401, messages("WARN", "call not properly authenticated"))
        if path == SAVED and method == "GET":
            return self._saved(query)
        if method == "POST" and (path == EXPORT_V2 and self.v2 or path == EXPORT_V1):
            return self._export(body)
        return Reply(404, messages("ERROR", f"Not Found: {path}"))

    def _saved(self, query: dict[str, list[str]]) -> Reply:
        if not self.may_list:
            return Reply(403, messages("ERROR", "You (user=svc-sre) do not have permission to "
                                                "perform this operation (requires capability: "
                                                "list_saved_searches)."))
        if query.get("output_mode") != ["json"]:
            return Reply(200, "<feed><entry/></feed>", "text/xml")
        count = int(query.get("count", ["30"])[0])
        offset = int(query.get("offset", ["0"])[0])
        entries = self.saved[offset:] if count == 0 else self.saved[offset:offset + count]
        if self.page_cap is not None:
            entries = entries[:self.page_cap]
        return Reply(200, {"links": {}, "origin": self.url + SAVED, "entry": entries,
                           "paging": {"total": len(self.saved), "perPage": count,
                                      "offset": offset}, "messages": []})

    def _export(self, body: bytes) -> Reply:
        form = {k: v[-1] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}
        self.forms.append(form)
        search = form.get("search", "")
        self.searches.append(search)
        if _unbalanced(search):
            return Reply(400, messages("FATAL", "Error in 'search' command: Unbalanced quotes."))
        rows = self.results.get(search, [])
        lines = [json.dumps({"preview": False, "offset": i, "result": row})
                 for i, row in enumerate(rows)]
        if not rows:
            lines.append(json.dumps({"preview": False, "offset": 0, "lastrow": True}))
        return Reply(200, "\n".join(lines) + "\n", "application/json")


def _unbalanced(search: str) -> bool:
    quoted = False
    i = 0
    while i < len(search):
        if search[i] == "\\" and quoted:
            i += 2
            continue
        if search[i] == '"':
            quoted = not quoted
        i += 1
    return quoted
