"""A small world for the checks to look at: the four fake sources (Splunk, Prometheus,
PagerDuty, a web site) on 127.0.0.1, and a data folder whose checks.csv / assets.csv point at
them. Used by the ``assess --auto`` tests, the README capture and the bench.

    python tests/evidence_world.py DIR [--disabled-alert ASSET] [--nobody-on-call SERVICE]
                                       [--failing-runbook ASSET]

starts the fakes with what the checks of DIR's ``assets.csv`` (the example data) look for,
points its ``runbook_url`` column at the fake web site, prints the settings to ``export`` and
serves until Ctrl-C.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

_HERE = Path(__file__).resolve().parent
for _p in (_HERE, _HERE.parent):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from fake_pagerduty import FakePagerDuty  # noqa: E402
from fake_prometheus import FakePrometheus  # noqa: E402
from fake_splunk import FakeSplunk  # noqa: E402
from fake_web import FakeWeb  # noqa: E402


@dataclass
class Sources:
    """The four running fakes."""

    splunk: FakeSplunk
    prometheus: FakePrometheus
    pagerduty: FakePagerDuty
    web: FakeWeb

    def settings(self) -> dict[str, str]:
        """The settings that point the tool at these fakes."""
        return {**self.splunk.settings(), **self.prometheus.settings(),
                **self.pagerduty.settings()}

    def counts(self) -> dict[str, int]:
        """Requests each fake has received."""
        return {"splunk": self.splunk.count(), "prometheus": self.prometheus.count(),
                "pagerduty": self.pagerduty.count(), "http": self.web.count()}


def start(stack: ExitStack, latency: float = 0.0) -> Sources:
    """Start the four fakes (closed with ``stack``)."""
    return Sources(stack.enter_context(FakeSplunk(latency=latency)),
                   stack.enter_context(FakePrometheus(latency=latency)),
                   stack.enter_context(FakePagerDuty(latency=latency)),
                   stack.enter_context(FakeWeb(latency=latency)))


@contextmanager
def serving(setenv: Callable[[str, str], object], assets: list[str], healthy: set[str]
            ) -> Iterator[Sources]:
    """The four fakes, :func:`populate` d (``healthy`` as it takes it), with the tool's
    settings pointing at them through ``setenv`` (a test's ``monkeypatch.setenv``)."""
    with ExitStack() as stack:
        src = start(stack)
        populate(src, assets, healthy=healthy)
        for name, value in src.settings().items():
            setenv(name, value)
        yield src


def populate(src: Sources, assets: list[str], *, healthy: set[str] | None = None,
             pagerduty: bool = True) -> None:
    """Give every asset a Prometheus alerting rule, a Splunk alert, a PagerDuty service with
    someone on call (``pagerduty``: else no service) and a runbook page; assets not in
    ``healthy`` (None: all are) get a disabled alert and no one on call."""
    for asset in assets:
        good = healthy is None or asset in healthy
        src.prometheus.add_rule(f"{asset}-down", {"service": asset})
        src.splunk.add_alert(f"{asset} 5xx", disabled=not good)
        if pagerduty:
            src.pagerduty.add_service(asset, on_call=1 if good else None)
        src.web.page(f"/runbooks/{asset}", f"<h1>Runbook of {asset}</h1>")


CHECKS_HEADER = "Check,Capability,Level,Question,Kind,Target,Expect,Valid Days,Applies To,Mode\n"


def assets_csv(src: Sources, assets: list[str]) -> str:
    """assets.csv for ``assets``: each one's alert, service and runbook on the fakes."""
    rows = ["Asset Name,splunk_alert,prometheus_service,pagerduty_service,runbook_url"]
    rows += [f"{a},{a} 5xx,{a},{a},{src.web.url}/runbooks/{a}" for a in assets]
    return "\n".join(rows) + "\n"


def populate_from(src: Sources, folder: Path, *, disabled: Iterable[str] = (),
                  nobody: Iterable[str] = (), failing: Iterable[str] = ()) -> None:
    """Give the assets of ``folder/assets.csv`` (the example data's columns) what their checks
    look for: an alerting rule per ``prometheus_service`` (and a request-rate series), a Splunk
    alert matching ``splunk_alert`` (disabled for the assets in ``disabled``), a PagerDuty
    service per ``pagerduty_service`` with someone on call (nobody for the services in
    ``nobody``), a routing search result, and a runbook page per ``runbook_url``, which is
    rewritten to point at the fake web site (answering 503 for the assets in ``failing``)."""
    path = folder / "assets.csv"
    with open(path, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    services: set[str] = set()
    for row in rows:
        asset = row["Asset Name"]
        if row.get("prometheus_service"):
            service = row["prometheus_service"]
            src.prometheus.add_rule(f"{service}-down", {"service": service})
            src.prometheus.series[
                f'sum(rate(http_requests_total{{service="{service}"}}[5m]))'] = [({}, 12.5)]
        if row.get("splunk_alert"):
            src.splunk.add_alert(row["splunk_alert"],
                                 disabled=asset in disabled)
            src.splunk.results[f'search index=alerts service="{asset}" | stats count'] = [
                {"count": "3"}]
        team = row.get("pagerduty_service")
        if team and team not in services:
            services.add(team)
            src.pagerduty.add_service(team, on_call=None if team in set(nobody) else 1)
        if row.get("runbook_url"):
            page = f"/runbooks/{asset}"
            if asset in set(failing):
                src.web.page(page, "upstream unavailable", status=503)
            else:
                src.web.page(page, f"<h1>Runbook: {asset}</h1>")
            row["runbook_url"] = src.web.url + page
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["Asset Name"])
        writer.writeheader()
        writer.writerows(rows)


def main(argv: list[str]) -> int:
    """Serve the example world until Ctrl-C (see the module docstring)."""
    import argparse
    import time

    parser = argparse.ArgumentParser(description="serve fake evidence sources for DIR's "
                                                 "assets.csv (its runbook_url rewritten)")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--disabled-alert", action="append", default=[], metavar="ASSET")
    parser.add_argument("--nobody-on-call", action="append", default=[], metavar="SERVICE")
    parser.add_argument("--failing-runbook", action="append", default=[], metavar="ASSET")
    args = parser.parse_args(argv)
    with ExitStack() as stack:
        src = start(stack)
        populate_from(src, args.folder, disabled=args.disabled_alert,
                      nobody=args.nobody_on_call, failing=args.failing_runbook)
        for name, value in src.settings().items():
            print(f"export {name}='{value}'")
        print("# the fakes serve until Ctrl-C", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            return 0
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
