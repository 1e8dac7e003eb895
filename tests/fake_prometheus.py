"""A fake Prometheus HTTP API on 127.0.0.1, following ``reference/evidence-sources.md`` §2.

* Envelope ``{"status": "success"|"error", "data", "errorType", "error"}``.
* ``GET /api/v1/rules?type=alert``: ``data.groups[]`` of ``{name, file, interval, rules[]}``,
  each rule ``{name, query, duration, labels, annotations, health, type, alerts}``.
  ``group_page`` (a newer server with ``group_limit`` paging) answers that many groups at a time
  with ``groupNextToken``; the client must follow ``group_next_token``.
* ``GET|POST /api/v1/query?query=…``: ``data.resultType`` ``vector`` and ``data.result[]`` of
  ``{metric, value: [time, "number"]}`` from ``series[query text]``. A query whose quotes or
  braces do not balance is a 400 ``bad_data`` parse error, as Prometheus answers.
* Optional bearer ``token`` (a proxy in front of Prometheus): without it, 401.

Observation: ``requests``/``count()``, ``queries`` (every query text received).
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qs

from fake_http import FakeSource, Reply

DEFAULT_TOKEN = "prom-proxy-fake-token-42"
RULES = "/api/v1/rules"
QUERY = "/api/v1/query"


def error(status: int, kind: str, text: str) -> Reply:
    """Prometheus's error envelope."""
    return Reply(status, {"status": "error", "errorType": kind, "error": text})


class FakePrometheus(FakeSource):
    """Prometheus: alerting rules and instant queries."""

    def __init__(self, *, token: str | None = None, latency: float = 0.0,
                 group_page: int | None = None) -> None:
        super().__init__(latency)
        self.token = token
        self.group_page = group_page
        self.groups: list[dict[str, Any]] = []
        self.series: dict[str, list[tuple[dict[str, str], float]]] = {}
        self.queries: list[str] = []

    def settings(self) -> dict[str, str]:
        """The PROMETHEUS_* settings reaching this fake."""
        out = {"PROMETHEUS_URL": self.url}
        if self.token:
            out["PROMETHEUS_TOKEN"] = self.token
        return out

    def add_rule(self, name: str, labels: dict[str, str] | None = None, *, health: str = "ok",
                 group: str = "sre", kind: str = "alerting",
                 query: str = "up == 0") -> None:
        """An alerting (or recording) rule in ``group``."""
        found = next((g for g in self.groups if g["name"] == group), None)
        if found is None:
            found = {"name": group, "file": f"/etc/prometheus/rules/{group}.yml",
                     "interval": 60, "rules": []}
            self.groups.append(found)
        rule: dict[str, Any] = {"name": name, "query": query, "labels": labels or {},
                                "health": health, "type": kind, "lastError": "",
                                "evaluationTime": 0.0001, "lastEvaluation": "2026-12-06T10:00:00Z"}
        if kind == "alerting":
            rule.update({"duration": 300, "annotations": {"summary": name}, "alerts": [],
                         "state": "inactive"})
        found["rules"].append(rule)

    def serve(self, method: str, path: str, query: dict[str, list[str]], headers: Any,
              body: bytes) -> Reply:
        if self.token and headers.get("Authorization") != f"Bearer {self.token}":
            return Reply(401, "Unauthorized\n", "text/plain")
        if path == RULES and method == "GET":
            return self._rules(query)
        if path == QUERY and method in ("GET", "POST"):
            if method == "POST":
                query = {**query, **parse_qs(body.decode(), keep_blank_values=True)}
            return self._query(query.get("query", [""])[-1])
        return Reply(404, "404 page not found\n", "text/plain")

    def _rules(self, query: dict[str, list[str]]) -> Reply:
        wanted = {"alert": "alerting", "record": "recording"}.get(query.get("type", [""])[-1])
        groups = [{**g, "rules": [r for r in g["rules"] if not wanted or r["type"] == wanted]}
                  for g in self.groups]
        data: dict[str, Any] = {"groups": groups}
        if self.group_page:
            start = int(query.get("group_next_token", ["0"])[-1] or 0)
            data["groups"] = groups[start:start + self.group_page]
            if start + self.group_page < len(groups):
                data["groupNextToken"] = str(start + self.group_page)
        return Reply(200, {"status": "success", "data": data})

    def _query(self, text: str) -> Reply:
        self.queries.append(text)
        if not text.strip() or _unbalanced(text):
            return error(400, "bad_data", f'invalid parameter "query": 1:1: parse error: '
                                          f"unexpected end of input in {text!r}")
        now = time.time()
        result = [{"metric": metric, "value": [now, repr(float(value))]}
                  for metric, value in self.series.get(text, [])]
        return Reply(200, {"status": "success",
                           "data": {"resultType": "vector", "result": result}})


def _unbalanced(text: str) -> bool:
    depth, quote, i = 0, "", 0
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\" and quote != "`":
                i += 2
                continue
            if c == quote:
                quote = ""
        elif c in "\"'`":
            quote = c
        elif c in "({[":
            depth += 1
        elif c in ")}]":
            depth -= 1
        i += 1
    return bool(quote) or depth != 0
