"""A small world for the checks to look at: the four fake sources (Splunk, Prometheus,
PagerDuty, a web site) on 127.0.0.1, and a data folder whose checks.csv / assets.csv point at
them. Used by the ``assess --auto`` tests, the README capture and the bench.

    python -m tests.evidence_world DIR     # or: python tests/evidence_world.py DIR

writes the example data into DIR (set up, committed), starts the fakes and prints the
settings to ``export``; it serves until Ctrl-C.
"""

from __future__ import annotations

import sys
from contextlib import ExitStack
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


def populate(src: Sources, assets: list[str], *, healthy: set[str] | None = None) -> None:
    """Give every asset a Prometheus alerting rule, a Splunk alert, a PagerDuty service with
    someone on call and a runbook page; assets not in ``healthy`` (None: all are) get a
    disabled alert and no one on call."""
    for asset in assets:
        good = healthy is None or asset in healthy
        src.prometheus.add_rule(f"{asset}-down", {"service": asset})
        src.splunk.add_alert(f"{asset} 5xx", disabled=not good)
        src.pagerduty.add_service(asset, on_call=1 if good else None)
        src.web.page(f"/runbooks/{asset}", f"<h1>Runbook of {asset}</h1>")


CHECKS_HEADER = "Check,Capability,Level,Question,Kind,Target,Expect,Valid Days,Applies To,Mode\n"


def assets_csv(src: Sources, assets: list[str]) -> str:
    """assets.csv for ``assets``: each one's alert, service and runbook on the fakes."""
    rows = ["Asset Name,splunk_alert,prometheus_service,pagerduty_service,runbook_url"]
    rows += [f"{a},{a} 5xx,{a},{a},{src.web.url}/runbooks/{a}" for a in assets]
    return "\n".join(rows) + "\n"


def main(argv: list[str]) -> int:
    """Serve the example world until Ctrl-C (see the module docstring)."""
    import time

    if len(argv) != 1:
        print("usage: python tests/evidence_world.py DIR", file=sys.stderr)
        return 2
    with ExitStack() as stack:
        src = start(stack)
        names = ["payment-api", "web", "auth"]
        populate(src, names, healthy={"payment-api", "auth"})
        folder = Path(argv[0])
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "assets.csv").write_text(assets_csv(src, names), encoding="utf-8")
        for name, value in src.settings().items():
            print(f"export {name}='{value}'")
        print(f"# runbooks under {src.web.url}/runbooks/ ; Ctrl-C stops the fakes", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            return 0
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
