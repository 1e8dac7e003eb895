"""The check runner (SPEC §12): every applicable check on every asset in scope, each with its
verdict and what was seen.

Requests follow sources, not assets: one saved-search listing per run, one alerting-rules read
per run, the PagerDuty services listed once and on-calls asked for in batches of escalation
policies, each distinct search, query, URL or command once, and ``http`` probes concurrent
with a bound per host. A source that fails answers ``error`` (with the reason) for every check
that needed it; a missing setting makes its checks ``unconfigured``; an untrusted command is
``untrusted`` and is not run. An invalid setting is a ``ConfigError`` (a configuration error).
"""

from __future__ import annotations

import bisect
import math
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypeVar

from config import SECRETS
from sre_maturity.clients import local, pagerduty, prometheus, splunk
from sre_maturity.clients.probe import AddressRefused, ProbeAnswer, Prober
from sre_maturity.clients.sources import mask
from sre_maturity.rules import checkspec, targets
from sre_maturity.rules import evidence as rules
from sre_maturity.rules.targets import Resolved, TargetRefused
from sre_maturity.support.errors import ConfigError, SourceError
from sre_maturity.support.trust import Trust

if TYPE_CHECKING:
    from config import Settings
    from sre_maturity.rules.checkspec import CheckRow

QUERY_WORKERS = 4  # concurrent searches and queries against one server
T = TypeVar("T")


class AssetScope(NamedTuple):
    """An asset the checks run on: its teams and flows (for ``Applies To``) and the
    capabilities marked Not Applicable on it."""

    name: str
    teams: tuple[str, ...] = ()
    flows: tuple[str, ...] = ()
    not_applicable: frozenset[str] = frozenset()


class Verdict(NamedTuple):
    """One check on one asset: its verdict (one of ``rules.evidence.VERDICTS``), what was seen
    or why it could not tell, a link, when, until when it answers (definitive verdicts only),
    the fingerprint it was taken under, and the request made (secrets masked) for
    ``--explain``."""

    asset: str
    check: str
    capability: str
    level: int
    kind: str
    verdict: str
    detail: str
    link: str | None
    checked_at: str
    valid_until: str | None
    fingerprint: str
    request: str


class RunOptions(NamedTuple):
    """Timeouts and bounds of one run."""

    timeout: float = 30.0
    retries: int = 3
    backoff: float = 0.5
    command_timeout: float = local.DEFAULT_TIMEOUT
    probe_workers: int = 16
    per_host: int = 8


class _Job(NamedTuple):
    at: int
    asset: str
    check: CheckRow
    resolved: Resolved
    expect: checkspec.Expect
    fingerprint: str


class _Outcome(NamedTuple):
    verdict: str
    detail: str
    link: str | None = None
    request: str = ""


_SOURCE_UNCONFIGURED: dict[str, Callable[[Settings], str | None]] = {
    "splunk_alert": splunk.unconfigured, "splunk_search": splunk.unconfigured,
    "prometheus_rule": prometheus.unconfigured, "prometheus_query": prometheus.unconfigured,
    "pagerduty_oncall": pagerduty.unconfigured,
}


_SOURCES: tuple[tuple[str, str, Any], ...] = (
    ("splunk", "SPLUNK_", splunk), ("prometheus", "PROMETHEUS_", prometheus),
    ("pagerduty", "PAGERDUTY_", pagerduty))


def reach_sources(settings: Settings, kinds: Iterable[str] = ()) -> list[tuple[bool | None, str]]:
    """For ``check``: one line per evidence source that is configured or that a check of
    ``kinds`` needs — reached (ok), not configured (skip) or failing (the reason)."""
    kinds = set(kinds)
    out: list[tuple[bool | None, str]] = []
    for name, prefix, module in _SOURCES:
        needed = any(k.startswith(name) for k in kinds)
        try:
            touched = any(v.source not in ("default", "unset")
                          for n, v in settings.values.items() if n.startswith(prefix))
            missing = module.unconfigured(settings)
        except ConfigError as exc:
            out.append((False, f"{name}: {exc}"))
            continue
        if missing:
            if needed or touched:
                out.append((None, f"{name}: not configured ({missing}); its checks are "
                                  "unconfigured"))
            continue
        try:
            with module.client_from_settings(settings, retries=1) as client:
                out.append((True, f"{name}: {client.reach()}"))
        except (SourceError, ConfigError) as exc:
            # An invalid URL setting (PAGERDUTY_URL is only read once its token is set) is
            # this source's failed line; the other sources are still reached.
            out.append((False, f"{name}: {exc}"))
    return out


def secrets_of(settings: Settings) -> list[str]:
    """Every secret value the settings hold (to mask them and keep them from commands)."""
    return [s.value for name, s in settings.values.items() if name in SECRETS and s.value]


def _not_applicable(check: CheckRow, asset: str) -> _Outcome:
    return _Outcome("not_applicable", f"{check.capability} is marked Not Applicable for {asset}")


def run_checks(checks: Sequence[CheckRow], params_by_asset: Mapping[str, Mapping[str, str]],
               assets: Iterable[AssetScope], settings: Settings, data_dir: Path, trust: Trust,
               explain: bool = False, *, now: datetime | None = None,
               options: RunOptions | None = None) -> list[Verdict]:
    """Run every check that applies to each asset; one :class:`Verdict` per asset × check,
    in the order of the assets, then of the checks.

    :raises ConfigError: a setting a selected check needs is invalid
    """
    now = now or datetime.now(UTC)
    options = options or RunOptions()
    checked_at = now.replace(microsecond=0).isoformat()
    outcomes: dict[int, _Outcome] = {}
    jobs: dict[str, list[_Job]] = defaultdict(list)
    rows: list[tuple[str, CheckRow, str]] = []
    unconfigured = {kind: probe(settings) for kind, probe in _SOURCE_UNCONFIGURED.items()
                    if any(c.kind == kind for c in checks)}
    for scope in assets:
        params = params_by_asset.get(scope.name, {})
        na = {c.casefold() for c in scope.not_applicable}
        for check in checks:
            if not rules.applies(check.applies_to, scope.name, scope.teams, scope.flows):
                continue
            index = len(rows)
            # The fingerprints are those rules.current_fingerprint expects of valid evidence.
            try:
                resolved = targets.resolve(check.kind, check.target, scope.name, params)
            except TargetRefused as exc:
                rows.append((scope.name, check, rules.fingerprint_for(check, ())))
                # Not Applicable is what the asset is, whatever its parameters say.
                outcomes[index] = (_not_applicable(check, scope.name)
                                   if check.capability.casefold() in na
                                   else _Outcome("unconfigured", str(exc)))
                continue
            fingerprint = rules.fingerprint_for(check, resolved.used)
            rows.append((scope.name, check, fingerprint))
            if check.capability.casefold() in na:
                outcomes[index] = _not_applicable(check, scope.name)
            elif unconfigured.get(check.kind):
                outcomes[index] = _Outcome("unconfigured", str(unconfigured[check.kind]))
            elif check.kind == "command" and not trust.allows(check.target, data_dir):
                outcomes[index] = _Outcome(
                    "untrusted", "command not trusted on this machine; run assess "
                    "interactively to trust it, or pass --trust-commands", None,
                    "would run: " + resolved.text)
            else:
                try:
                    expect = checkspec.parse_expect(check.kind, check.expect)
                except ValueError as exc:
                    outcomes[index] = _Outcome("unconfigured", str(exc))
                    continue
                jobs[check.kind].append(_Job(index, scope.name, check, resolved, expect,
                                             fingerprint))
    secrets = secrets_of(settings)
    runner = _Runner(settings, data_dir, options, secrets, outcomes)
    # Each kind asks its own source: they run side by side (a run waits for its slowest
    # source, not for the sum of them); each job's outcome has its own key.
    with ThreadPoolExecutor(max_workers=max(1, len(jobs))) as pool:
        for future in [pool.submit(runner.run, kind, kind_jobs)
                       for kind, kind_jobs in jobs.items()]:
            future.result()
    out = []
    for index, (asset, check, fingerprint) in enumerate(rows):
        o = outcomes[index]
        until = (rules.valid_until(now.replace(microsecond=0), check.valid_days).isoformat()
                 if o.verdict in rules.DEFINITIVE else None)
        out.append(Verdict(asset, check.name, check.capability, check.level, check.kind,
                           o.verdict, local.cut(mask(o.detail, secrets)), o.link,
                           checked_at, until, fingerprint,
                           mask(o.request, secrets) if explain else ""))
    return out


class _Runner:
    """Runs the jobs of each kind against its source, filling ``outcomes``."""

    def __init__(self, settings: Settings, data_dir: Path, options: RunOptions,
                 secrets: list[str], outcomes: dict[int, _Outcome]) -> None:
        self.settings = settings
        self.data_dir = data_dir
        self.options = options
        self.secrets = secrets
        self.outcomes = outcomes
        self.lock = threading.Lock()

    def client_options(self) -> dict[str, Any]:
        return {"timeout": self.options.timeout, "retries": self.options.retries,
                "backoff": self.options.backoff}

    def run(self, kind: str, jobs: list[_Job]) -> None:
        getattr(self, f"_{kind}")(jobs)

    def fail_all(self, jobs: Iterable[_Job], exc: Exception, request: str = "") -> None:
        for job in jobs:
            self.outcomes[job.at] = _Outcome("error", str(exc), None, request)

    def distinct(self, jobs: list[_Job], fetch: Callable[[str], Any], request: Callable[[str], str],
                 judge: Callable[[_Job, Any, str], _Outcome]) -> None:
        """``fetch`` each distinct target text once (a few at a time); then ``judge`` each job
        by what its text gave (a ``SourceError`` makes it ``error``)."""
        by_text: dict[str, list[_Job]] = defaultdict(list)
        for job in jobs:
            by_text[job.resolved.text].append(job)

        def one(text: str) -> None:
            asked = request(text)
            try:
                seen = fetch(text)
            except SourceError as exc:
                self.fail_all(by_text[text], exc, asked)
                return
            with self.lock:
                for job in by_text[text]:
                    self.outcomes[job.at] = judge(job, seen, asked)

        with ThreadPoolExecutor(max_workers=min(QUERY_WORKERS, len(by_text))) as pool:
            for future in [pool.submit(one, text) for text in by_text]:
                future.result()

    # --- Splunk ---------------------------------------------------------------------------

    def _splunk_alert(self, jobs: list[_Job]) -> None:
        with splunk.client_from_settings(self.settings, **self.client_options()) as client:
            try:
                saved = client.saved_searches()
            except SourceError as exc:
                self.fail_all(jobs, exc, "; ".join(client.sent))
                return
            request = client.sent[0] + (f" (+{len(client.sent) - 1} pages)"
                                        if len(client.sent) > 1 else "")
        names = _ByName(saved, lambda s: s.name)
        for job in jobs:
            found = names.matching(job.resolved.text)
            self.outcomes[job.at] = _alert_outcome(job.resolved.text, found, request)

    def _splunk_search(self, jobs: list[_Job]) -> None:
        with splunk.client_from_settings(self.settings, **self.client_options()) as client:
            self.distinct(
                jobs, client.export,
                lambda text: client.describe("POST", splunk.EXPORT_V2, None, {"search": text}),
                lambda job, rows, asked: _rows_outcome(rows, job.expect, asked, "result"))

    # --- Prometheus -----------------------------------------------------------------------

    def _prometheus_rule(self, jobs: list[_Job]) -> None:
        with prometheus.client_from_settings(self.settings, **self.client_options()) as client:
            try:
                rules_seen = client.alert_rules()
            except SourceError as exc:
                self.fail_all(jobs, exc, "; ".join(client.sent))
                return
            request = client.sent[0]
        seen = _RuleIndex(rules_seen)
        for job in jobs:
            self.outcomes[job.at] = _rule_outcome(job.resolved.text, seen, request)

    def _prometheus_query(self, jobs: list[_Job]) -> None:
        with prometheus.client_from_settings(self.settings, **self.client_options()) as client:
            self.distinct(
                jobs, lambda text: [{"value": x.value, **x.metric} for x in client.query(text)],
                lambda text: client.describe("GET", prometheus.QUERY, {"query": text}),
                lambda job, rows, asked: _rows_outcome(rows, job.expect, asked, "series"))

    # --- PagerDuty ------------------------------------------------------------------------

    def _pagerduty_oncall(self, jobs: list[_Job]) -> None:
        with pagerduty.client_from_settings(self.settings, **self.client_options()) as client:
            try:
                services = client.services()
                by_name: dict[str, pagerduty.Service] = {}
                for listed in services:
                    by_name.setdefault(listed.name.casefold(), listed)
                wanted = {by_name[j.resolved.text.casefold()].policy_id for j in jobs
                          if j.resolved.text.casefold() in by_name}
                calls = client.oncalls(wanted)
            except SourceError as exc:
                self.fail_all(jobs, exc, "; ".join(client.sent))
                return
            request = "; ".join(dict.fromkeys(s.split("?")[0] for s in client.sent))
        first: dict[str, str] = {}
        for call in calls:
            if call.level == 1:
                first.setdefault(call.policy_id, call.user)
        for job in jobs:
            service = by_name.get(job.resolved.text.casefold())
            if service is None:
                outcome = _Outcome("fail", f"no PagerDuty service named {job.resolved.text!r}",
                                   None, request)
            elif service.policy_id in first:
                outcome = _Outcome("pass", f"{first[service.policy_id]} is on call at level 1 "
                                   f"for {service.name} (escalation policy "
                                   f"{service.policy_id})", service.link or None, request)
            else:
                outcome = _Outcome("fail", f"nobody is on call at level 1 for {service.name} "
                                   f"(escalation policy {service.policy_id})",
                                   service.link or None, request)
            self.outcomes[job.at] = outcome

    # --- http -----------------------------------------------------------------------------

    def _http(self, jobs: list[_Job]) -> None:
        by_url: dict[str, list[_Job]] = defaultdict(list)
        for job in jobs:
            by_url[job.resolved.text].append(job)
        prober = Prober(timeout=self.options.timeout, retries=self.options.retries,
                        backoff=self.options.backoff, workers=self.options.probe_workers,
                        per_host=self.options.per_host)

        def done(url: str, result: ProbeAnswer | SourceError) -> None:
            with self.lock:
                for job in by_url[url]:
                    self.outcomes[job.at] = _http_outcome(url, result, job.expect)

        prober.probe_all(by_url, done)

    # --- file and command -----------------------------------------------------------------

    def _file(self, jobs: list[_Job]) -> None:
        for job in jobs:
            contains = job.expect.value if job.expect.subject == "contains" else None
            try:
                seen = local.look_for(job.resolved.text, self.data_dir, contains)
            except ValueError as exc:  # a glob pathlib cannot read, e.g. "a**b"
                self.outcomes[job.at] = _Outcome("unconfigured", f"{job.resolved.text}: {exc}")
                continue
            except OSError as exc:
                self.outcomes[job.at] = _Outcome(
                    "error", f"cannot read {exc.filename or job.resolved.text}: "
                    f"{exc.strerror or exc}")
                continue
            self.outcomes[job.at] = _file_outcome(job.resolved.text, seen, contains)

    def _command(self, jobs: list[_Job]) -> None:
        by_argv: dict[tuple[str, ...], list[_Job]] = defaultdict(list)
        for job in jobs:
            by_argv[job.resolved.argv].append(job)
        for argv, argv_jobs in by_argv.items():
            request = "run: " + argv_jobs[0].resolved.text
            try:
                run = local.run_command(argv, self.data_dir, secrets=self.secrets,
                                        timeout=self.options.command_timeout)
            except SourceError as exc:
                self.fail_all(argv_jobs, exc, request)
                continue
            for job in argv_jobs:
                self.outcomes[job.at] = _command_outcome(run, job.expect, request,
                                                            self.options.command_timeout)


# ------------------------------------------------------------------------------ verdicts
def _alert_outcome(pattern: str, found: list[splunk.SavedSearch], request: str) -> _Outcome:
    if not found:
        return _Outcome("fail", f"no saved search matches {pattern!r}", None, request)
    good = [s for s in found if s.alerting]
    if good:
        s = good[0]
        return _Outcome("pass", f"saved search {s.name!r} (app {s.app}) is enabled, scheduled "
                        f"and alerts by {', '.join(s.actions)}", s.link or None, request)
    s = found[0]
    missing = [w for w, ok in (("disabled", s.enabled), ("not scheduled", s.scheduled),
                               ("has no alert action", bool(s.actions))) if not ok]
    more = f" ({len(found)} match, none alerting)" if len(found) > 1 else ""
    return _Outcome("fail", f"saved search {s.name!r} (app {s.app}) is "
                    f"{', '.join(missing)}{more}", s.link or None, request)


def _rows_outcome(rows: list[dict[str, Any]], expect: checkspec.Expect, request: str,
                  noun: str) -> _Outcome:
    count = f"{len(rows)} {noun}{'' if len(rows) == 1 else 's'}"
    if len(rows) > splunk.MAX_ROWS:
        count = f"more than {splunk.MAX_ROWS:,} {noun}s"
    if expect.subject in ("default", "results"):
        wanted = expect if expect.subject == "results" else checkspec.Expect("results", ">=",
                                                                             "1")
        if len(rows) > splunk.MAX_ROWS and float(wanted.value) >= splunk.MAX_ROWS:
            return _Outcome("error", f"{count}, too many to compare with "
                            f"results{wanted.op}{wanted.value}; count in the search "
                            "(| stats count) and compare the count field", None, request)
        passed = wanted.holds(len(rows))
        return _Outcome("pass" if passed else "fail",
                        f"{count} (expected results{wanted.op}{wanted.value})", None, request)
    if not rows:
        return _Outcome("fail", f"{count}, so no {expect.subject} to compare", None, request)
    raw = rows[0].get(expect.subject)
    try:
        number = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return _Outcome("error", f"{expect.subject} of the first {noun} is {raw!r}, not a "
                        "number", None, request)
    if math.isnan(number):
        return _Outcome("fail", f"{expect.subject} is NaN", None, request)
    passed = expect.holds(number)
    return _Outcome("pass" if passed else "fail", f"{expect.subject}={number:g} "
                    f"(expected {expect.subject}{expect.op}{expect.value}; {count})", None,
                    request)


class _ByName(Generic[T]):
    """Items found by a name glob without trying every item: names sorted (ignoring case),
    candidates taken by the glob's literal prefix, then matched."""

    def __init__(self, items: Iterable[T], name: Callable[[T], str]) -> None:
        self.items = sorted(items, key=lambda item: name(item).casefold())
        self.keys = [name(item).casefold() for item in self.items]
        self.name = name

    def matching(self, pattern: str) -> list[T]:
        prefix = targets.glob_prefix(pattern)
        start = bisect.bisect_left(self.keys, prefix)
        regex = targets.glob_regex(pattern)
        out = []
        for key, item in zip(self.keys[start:], self.items[start:], strict=True):
            if not key.startswith(prefix):
                break
            if regex.fullmatch(self.name(item)):
                out.append(item)
        return out


class _RuleIndex:
    """The alerting rules by name (for globs) and by label value (for selectors), so a run
    with many assets does not match every rule against every selector."""

    def __init__(self, rules_seen: list[prometheus.AlertRule]) -> None:
        self.rules = rules_seen
        self.by_name = _ByName(rules_seen, lambda r: r.name)
        self.by_label: dict[tuple[str, str], list[prometheus.AlertRule]] = defaultdict(list)
        for r in rules_seen:
            for label, value in {**r.labels, "alertname": r.name}.items():
                self.by_label[(label, value)].append(r)

    def matching(self, target: str) -> list[prometheus.AlertRule]:
        """The rules a selector or a rule-name glob matches (ValueError: a bad selector)."""
        if not targets.is_selector(target):
            return self.by_name.matching(target)
        matchers = targets.parse_selector(target)
        exact = next((m for m in matchers if m.op == "=" and m.value), None)
        candidates = self.by_label.get((exact.label, exact.value), []) if exact else self.rules
        return [r for r in candidates
                if targets.selector_matches(matchers, {**r.labels, "alertname": r.name})]


def _rule_outcome(target: str, seen: _RuleIndex, request: str) -> _Outcome:
    try:
        found = seen.matching(target)
    except ValueError as exc:
        return _Outcome("unconfigured", str(exc), None, request)
    if not found:
        return _Outcome("fail", f"no alerting rule matches {target}", None, request)
    healthy = [r for r in found if r.health == "ok"]
    r = (healthy or found)[0]
    if healthy:
        return _Outcome("pass", f"alerting rule {r.name} (group {r.group}) has health ok",
                        None, request)
    return _Outcome("fail", f"alerting rule {r.name} (group {r.group}) has health {r.health}"
                    + (f" ({len(found)} match, none ok)" if len(found) > 1 else ""), None,
                    request)


def _http_outcome(url: str, result: ProbeAnswer | SourceError,
                  expect: checkspec.Expect) -> _Outcome:
    request = f"GET {url} (no credentials)"
    if isinstance(result, AddressRefused):
        return _Outcome("unconfigured", str(result), None, request)
    if isinstance(result, SourceError):
        return _Outcome("error", str(result), None, request)
    via = (f" after {len(result.hops)} redirect{'' if len(result.hops) == 1 else 's'}"
           if result.hops else "")
    seen = f"HTTP {result.status} from {result.url}{via}"
    if expect.subject == "status":
        passed = result.status == int(expect.value)
        return _Outcome("pass" if passed else "fail", f"{seen} (expected {expect.value})", url,
                        request)
    if not 200 <= result.status < 300:
        return _Outcome("fail", f"{seen} (expected 2xx)", url, request)
    if expect.subject == "contains":
        found = expect.value in result.body
        return _Outcome("pass" if found else "fail", f"{seen}; the page "
                        f"{'contains' if found else 'does not contain'} {expect.value!r}", url,
                        request)
    return _Outcome("pass", seen, url, request)


def _file_outcome(pattern: str, seen: local.FileSeen, contains: str | None) -> _Outcome:
    request = f"look for {pattern} in the data folder" + (
        f", for /{contains}/" if contains is not None else "")
    if not seen.matches:
        return _Outcome("fail", f"no file matches {pattern}", None, request)
    listed = ", ".join(seen.matches[:3]) + (f" (+{len(seen.matches) - 3})"
                                            if len(seen.matches) > 3 else "")
    if contains is None:
        return _Outcome("pass", f"found {listed}", None, request)
    if seen.containing:
        return _Outcome("pass", f"{seen.containing[0]} contains /{contains}/", None, request)
    return _Outcome("fail", f"found {listed}, but none contains /{contains}/", None, request)


def _command_outcome(run: local.CommandRun, expect: checkspec.Expect, request: str,
                     timeout: float) -> _Outcome:
    if run.exit is None:
        return _Outcome("error", f"timed out after {timeout:g} s; its process group was "
                        f"ended. Output: {run.output}".rstrip(), None, request)
    wanted = int(expect.value) if expect.subject == "exit" else 0
    passed = run.exit == wanted
    return _Outcome("pass" if passed else "fail", f"exit {run.exit} (expected {wanted})"
                    + (f": {run.output.strip()}" if run.output.strip() else ""), None, request)
