#!/usr/bin/env python3
"""Benchmark ``assess --auto`` against the SPEC §12 figure.

    python bench/bench_checks.py              # 2,000 assets x 5 checks (and 500 for the counts)
    python bench/bench_checks.py --assets 300 # a smaller run

A large organisation (``datagen.write_folder``: N assets x 60 capabilities, 90 % of the cells
assessed) gets five checks on five capabilities — ``splunk_alert``, ``prometheus_rule``,
``pagerduty_oncall``, ``http`` and ``file`` — and an ``assets.csv`` pointing each asset at its
alert, rule, PagerDuty service, runbook page and runbook file. The four fakes
(``tests/evidence_world.py``) run in this process, in threads, on 127.0.0.1, with 20 ms added
to every request; the tool runs as a subprocess (``python sre_tracker.py assess --auto``), so
start-up and imports are included. Printed: the wall time against the 15 s target, the commits
the run made (target: one) and the requests each source received, once for all the assets and
once for a quarter of them (``--flow``), to show which counts follow the sources and which the
assets.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for _p in (ROOT, ROOT / "tests", ROOT / "bench"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import datagen  # noqa: E402
import evidence_world  # noqa: E402

LATENCY = 0.02
TARGET = 15.0
TEAMS = 40  # datagen's teams
CHECKS = evidence_world.CHECKS_HEADER + """\
alert-pages,Capability 00-0,1,,splunk_alert,{splunk_alert},,7,,gate
alert-rule,Capability 00-1,1,,prometheus_rule,{service={prometheus_service}},,7,,gate
on-call,Capability 00-2,1,,pagerduty_oncall,{pagerduty_service},,7,,gate
runbook-up,Capability 00-3,1,,http,{runbook_url},,7,,gate
runbook-file,Capability 00-4,1,,file,runbooks/{asset}.md,,7,,gate
"""


PROFILE: list[str] = []  # ["-m", "cProfile", "-o", FILE] with --profile FILE


def tool(folder: Path, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    prefix = PROFILE[:] if args[:2] == ["assess", "--auto"] else []
    PROFILE[:] = [] if prefix else PROFILE  # the first (full) run only
    return subprocess.run([sys.executable, *prefix, str(ROOT / "sre_tracker.py"), "--data-dir",
                           str(folder), *args], capture_output=True, text=True, env=env)


def commits(folder: Path) -> int:
    return int(subprocess.run(["git", "rev-list", "--count", "HEAD"], cwd=folder,
                              capture_output=True, text=True, check=True).stdout)


def prepare(folder: Path, assets: int, src: evidence_world.Sources,
            env: dict[str, str]) -> list[str]:
    """The data folder (set up, not timed) and the fakes' data; returns the asset names."""
    datagen.write_folder(folder, assets)
    names = [f"asset-{a:05d}" for a in range(assets)]
    (folder / "checks.csv").write_text(CHECKS, encoding="utf-8")
    # Each asset's PagerDuty service is its team's (as on-call is organised): 40 services.
    rows = evidence_world.assets_csv(src, names).splitlines()
    rows = [rows[0]] + [_team_service(row, i) for i, row in enumerate(rows[1:])]
    (folder / "assets.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    (folder / "runbooks").mkdir()
    for i, name in enumerate(names):
        if i % 10:  # every tenth asset has no runbook file: some checks fail
            (folder / "runbooks" / f"{name}.md").write_text(f"# {name}\n", encoding="utf-8")
    evidence_world.populate(src, names, healthy={n for i, n in enumerate(names) if i % 7},
                            pagerduty=False)
    for team in range(TEAMS):
        src.pagerduty.add_service(f"team-{team}", on_call=1 if team % 9 else None)
    done = tool(folder, ["setup", "--from-csv"], env)
    if done.returncode != 0:
        raise SystemExit(f"setup failed: {done.stderr}")
    return names


def _team_service(row: str, index: int) -> str:
    """An assets.csv row (asset, alert, service, pagerduty service, runbook) with the asset's
    team (datagen: ``team-<index % 40>``) as its PagerDuty service."""
    cells = row.split(",")
    cells[3] = f"team-{index % TEAMS}"
    return ",".join(cells)


def flows_of(folder: Path) -> list[str]:
    with open(folder / "flows.csv", encoding="utf-8", newline="") as fh:
        return sorted({row["Flow"] for row in csv.DictReader(fh)})


def timed_run(folder: Path, src: evidence_world.Sources, env: dict[str, str],
              extra: list[str]) -> tuple[float, int, dict[str, int], dict]:
    before_commits = commits(folder)
    before = src.counts()
    start = time.perf_counter()
    done = tool(folder, ["assess", "--auto", "--format", "json", *extra], env)
    wall = time.perf_counter() - start
    if done.returncode not in (0, 3) or not done.stdout:
        raise SystemExit(f"assess --auto failed ({done.returncode}): {done.stderr}")
    after = src.counts()
    return (wall, commits(folder) - before_commits,
            {k: after[k] - before[k] for k in after}, json.loads(done.stdout))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", type=int, default=2000)
    parser.add_argument("--profile", metavar="FILE",
                        help="run assess --auto under cProfile, the stats written to FILE")
    args = parser.parse_args()
    if args.profile:
        PROFILE[:] = ["-m", "cProfile", "-o", str(Path(args.profile).resolve())]
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="sre-bench-checks-") as tmp:
        src = evidence_world.start(stack, latency=LATENCY)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("RALLY_", "CONFLUENCE_", "SPLUNK_", "PROMETHEUS_",
                                    "PAGERDUTY_", "SRE_TRACKER_"))}
        env.update(src.settings())
        env.setdefault("GIT_AUTHOR_NAME", "bench")
        env.setdefault("GIT_AUTHOR_EMAIL", "bench@example.com")
        env.setdefault("GIT_COMMITTER_NAME", "bench")
        env.setdefault("GIT_COMMITTER_EMAIL", "bench@example.com")
        folder = Path(tmp) / "data"
        print(f"preparing {args.assets:,} assets x 60 capabilities (set up, not timed)...",
              flush=True)
        prepare(folder, args.assets, src, env)
        wall, made, counts, result = timed_run(folder, src, env, [])
        results = len(result["results"])
        ok = wall < TARGET and made == 1
        print(f"\nassess --auto, {args.assets:,} assets x 5 checks ({results:,} results, "
              f"{len(result['levels']):,} levels moved), fakes at {LATENCY * 1000:.0f} ms a "
              "request:")
        print(f"  wall time     {wall:6.2f} s   target < {TARGET:.0f} s   "
              f"{'ok' if wall < TARGET else 'MISS'}   (load average "
              f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
        print(f"  commits       {made:6d}     target 1        {'ok' if made == 1 else 'MISS'}")
        summary = {k: v for k, v in result["summary"].items() if v}
        print(f"  verdicts      {summary}")
        flows = flows_of(folder)
        quarter = flows[: max(1, len(flows) // 4)]
        _wall, _made, part, part_result = timed_run(
            folder, src, env, [a for f in quarter for a in ("--flow", f)][:2])
        part_assets = len({r["asset"] for r in part_result["results"]})
        print(f"\nrequests per source, {args.assets:,} assets vs {part_assets:,} (one flow):")
        for name in ("splunk", "prometheus", "pagerduty", "http"):
            print(f"  {name:<11} {counts[name]:6d}  vs {part[name]:6d}")
        print("  file             0  (no request: read from the data folder)")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
