"""A thin Prometheus HTTP API client for checks (``reference/evidence-sources.md`` §2): the
alerting rules (one unfiltered ``type=alert`` read per run, filtered here, which every server
version answers) and instant queries."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, NamedTuple

import requests

from sre_maturity.clients.sources import SourceClient, unset

if TYPE_CHECKING:
    from config import Settings

RULES = "/api/v1/rules"
QUERY = "/api/v1/query"


class AlertRule(NamedTuple):
    """One alerting rule: its group, name, own labels and health (``ok``, ``err``,
    ``unknown``)."""

    group: str
    name: str
    labels: dict[str, str]
    health: str


class Sample(NamedTuple):
    """One series of an instant query's answer."""

    metric: dict[str, str]
    value: float


def unconfigured(settings: Settings) -> str | None:
    """Why Prometheus checks cannot run with these settings (None: they can)."""
    return unset(settings, "PROMETHEUS_URL")


class PrometheusClient(SourceClient):
    """A Prometheus server (or a proxy in front of it that wants a bearer token)."""

    name = "Prometheus"
    url_setting = "PROMETHEUS_URL"
    credentials = "PROMETHEUS_TOKEN"

    def __init__(self, url: str, *, token: str | None = None, **kw: Any) -> None:
        super().__init__(url, f"Bearer {token}" if token else None, [token or ""], **kw)

    def server_text(self, data: Any) -> str:
        if isinstance(data, dict) and data.get("error"):
            return f"{data.get('errorType', 'error')}: {data['error']}"
        return ""

    def _data(self, resp: requests.Response, what: str) -> Any:
        body = self.json(resp, what)
        if not isinstance(body, dict) or body.get("status") != "success":
            said = body.get("error") if isinstance(body, dict) else None
            raise self.error(f"Prometheus did not answer {what} with success"
                             + (f": {said}" if said else f"; check {self.url_setting}"))
        return body.get("data")

    def alert_rules(self) -> list[AlertRule]:
        """Every alerting rule of every group (following ``groupNextToken`` on servers that
        page)."""
        out: list[AlertRule] = []
        params = {"type": "alert"}
        while True:
            data = self._data(self.request("GET", RULES, "the rules", params=params),
                              "the rules")
            groups = data.get("groups") if isinstance(data, dict) else None
            if not isinstance(groups, list):
                raise self.error(f"Prometheus at {self.host} answered the rules without "
                                 f"groups; check {self.url_setting}")
            for group in groups:
                for rule in (group.get("rules") or []) if isinstance(group, dict) else []:
                    if isinstance(rule, dict) and rule.get("type", "alerting") == "alerting":
                        labels = rule.get("labels")
                        labels = labels if isinstance(labels, dict) else {}
                        out.append(AlertRule(str(group.get("name", "")),
                                             str(rule.get("name", "")),
                                             {str(k): str(v) for k, v in labels.items()},
                                             str(rule.get("health", "unknown"))))
            token = data.get("groupNextToken")
            if not token:
                return out
            if str(token) == params.get("group_next_token"):
                raise self.error(f"Prometheus at {self.host} answered the same rules page "
                                 "twice (groupNextToken did not move); check "
                                 f"{self.url_setting}")
            params = {"type": "alert", "group_next_token": str(token)}

    def reach(self) -> str:
        """For ``check``: the alerting rules read once, counted."""
        found = self.alert_rules()
        return f"answers, {len(found)} alerting rule{'' if len(found) == 1 else 's'}"

    def query(self, promql: str) -> list[Sample]:
        """The instant query's samples (a scalar answer is one sample)."""
        data = self._data(self.request("GET", QUERY, "the query", params={"query": promql}),
                          "the query")
        result = data.get("result") if isinstance(data, dict) else None
        if data.get("resultType") in ("scalar", "string") and isinstance(result, list):
            return [Sample({}, _number(result[1] if len(result) > 1 else None))]
        if not isinstance(result, list):
            raise self.error("Prometheus answered the query without a result")
        return [Sample(r.get("metric") or {}, _number((r.get("value") or [None, None])[1]))
                for r in result if isinstance(r, dict)]


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def client_from_settings(settings: Settings, **kw: Any) -> PrometheusClient:
    """The client for PROMETHEUS_URL (with PROMETHEUS_TOKEN when set)."""
    return PrometheusClient(settings.text("PROMETHEUS_URL"),
                            token=settings.get("PROMETHEUS_TOKEN"), **kw)
