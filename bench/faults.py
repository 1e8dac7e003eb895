#!/usr/bin/env python3
"""Fault injection against sre-tracker: the ways a write could go astray (issue 26).

    python bench/faults.py            # every scenario (a few minutes on a small machine)
    python bench/faults.py --quick    # one of each kind

Each scenario runs the tool as a real subprocess on a real git data folder (with real clones
for the pulls) and the fake Rally from ``tests/`` on 127.0.0.1, and stops or disturbs it at a
point it controls through the ``SRE_TRACKER_TEST_PAUSE`` stages (``interrupts.pause``). It then
checks what a user would:

* **loss**: the tool said it saved a change (exit 0, or "saved" on its output) that neither the
  folder's database nor git holds, or ``sre_matrix.csv`` in git disagrees with the database in
  git;
* **leftover**: after the run was killed, running the same command again leaves ``git status``
  with anything to commit (or leaves a note of an uncommitted change behind);
* **duplicate**: a Rally item with more than one story;
* **key in clear**: a request carrying a secret reached a plain-http listener on 127.0.0.1 that
  stands in for a proxy (``HTTP_PROXY``) between the tool and a ``http://`` service URL.

Prints one line per scenario and a summary; exits 1 when any count is not 0.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOOL = ROOT / "sre_tracker.py"
for _p in (ROOT, ROOT / "tests"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import config  # noqa: E402
from conftest import FLOWS, MODEL  # noqa: E402  (the tests' small data folder)
from database import Database  # noqa: E402
from fake_http import Listener  # noqa: E402
from fake_rally import FakeRally  # noqa: E402
from sre_maturity.render import stories  # noqa: E402
from sre_maturity.rules.views import write_matrix_file  # noqa: E402
from sre_maturity.support.context import Context  # noqa: E402

WAIT = 60.0  # a child that never reaches its pause is a failure of the script, not slowness
ASSESS = ("assess", "--asset", "web", "--capability", "Alerts", "--level", "3")
IDENTITY = {"GIT_AUTHOR_NAME": "Fault Bench", "GIT_AUTHOR_EMAIL": "faults@example.com",
            "GIT_COMMITTER_NAME": "Fault Bench", "GIT_COMMITTER_EMAIL": "faults@example.com"}


class Tally:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.scenarios = 0

    def scenario(self, name: str, problems: list[str]) -> None:
        self.scenarios += 1
        for problem in problems:
            self.counts[problem.split(":", 1)[0]] += 1
        print(f"{'ok  ' if not problems else 'FAIL'} {name}"
              + (f"  ({'; '.join(problems)})" if problems else ""), flush=True)


# ---------------------------------------------------------------------------- plumbing
def environ(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RALLY_", "CONFLUENCE_", "SRE_TRACKER_"))
           and k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")}
    env.update(IDENTITY, NO_COLOR="1", XDG_CACHE_HOME=str(Path(tempfile.gettempdir())
                                                          / "sre-faults-cache"))
    env.update(extra)
    return env


def tool(folder: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), "--data-dir", str(folder), *args],
                          env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          timeout=WAIT * 2)


def git(folder: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True,
                          check=True, env=environ()).stdout


def new_folder(root: Path, name: str) -> Path:
    folder = root / name
    folder.mkdir()
    (folder / "flows.csv").write_text(FLOWS, encoding="utf-8")
    (folder / "maturity_model.csv").write_text(MODEL, encoding="utf-8")
    done = tool(folder, "setup", "--from-csv", env=environ())
    assert done.returncode == 0, done.stderr
    return folder


def start_paused(folder: Path, stage: str, args: tuple[str, ...], env: dict[str, str],
                 marker: Path) -> subprocess.Popen:
    env = dict(env, SRE_TRACKER_TEST_PAUSE=stage, SRE_TRACKER_TEST_PAUSE_FILE=str(marker))
    proc = subprocess.Popen([sys.executable, str(TOOL), "--data-dir", str(folder), *args],
                            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + WAIT
    while not marker.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            out, err = proc.communicate()
            raise RuntimeError(f"{args} never reached {stage}: {err.strip()[-300:]}")
        time.sleep(0.02)
    return proc


def level(folder: Path, asset: str, capability: str) -> int | None:
    with Database(folder / "sre_data.db") as db:
        cell = db.load_cells().get((asset, capability))
    return cell.level if cell is not None else None


def head_pair_agrees(folder: Path, scratch: Path) -> bool:
    """sre_matrix.csv in HEAD is what the database in HEAD says it should be."""
    db_bytes = subprocess.run(["git", "show", "HEAD:sre_data.db"], cwd=folder,
                              capture_output=True, check=True).stdout
    other = scratch / "regenerated"
    other.mkdir(exist_ok=True)
    (other / "sre_data.db").write_bytes(db_bytes)
    ctx = Context(config.load(data_dir=str(other), no_commit=True, environ={}))
    with Database(other / "sre_data.db") as db:
        write_matrix_file(ctx, db)
    return git(folder, "show", "HEAD:sre_matrix.csv") == \
        (other / "sre_matrix.csv").read_text(encoding="utf-8")


def settled(folder: Path, scratch: Path) -> list[str]:
    """Leftover problems once the dust has settled."""
    problems = []
    status = git(folder, "status", "--porcelain", "--untracked-files=no")
    if status.strip():
        problems.append(f"leftover: git status shows {status.split()}")
    if (folder / ".git" / "sre-tracker.uncommitted").exists():
        problems.append("leftover: the uncommitted-change note stayed")
    if not head_pair_agrees(folder, scratch):
        problems.append("loss: sre_matrix.csv in git disagrees with the database in git")
    return problems


def rally_env(fake: FakeRally) -> dict[str, str]:
    return environ(RALLY_BASE_URL=fake.url, RALLY_API_KEY=fake.api_key,
                   RALLY_WORKSPACE_ID=fake.workspace_id, RALLY_PROJECT_ID=fake.project_id,
                   RALLY_PARENT_ID="F1")


def duplicates(fake: FakeRally) -> list[str]:
    keys = Counter(stories.key_from_text(s.get("Notes"))
                   for s in fake.stories_tagged("SRE-Maturity"))
    return [f"duplicate: {k} has {n} stories" for k, n in keys.items() if n > 1]


# ---------------------------------------------------------------------------- scenarios
def pull_during_assess(root: Path, n: int, stage: str) -> list[str]:
    """Clones A and B; A assesses and pushes; B's assess pauses at ``stage``, B pulls, the
    assess goes on. A success must mean B's level is in B's database and in git."""
    origin = new_folder(root, f"origin-{n}")
    bare = root / f"origin-{n}.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(origin), str(bare)], check=True)
    a, b = root / f"A-{n}", root / f"B-{n}"
    for clone in (a, b):
        subprocess.run(["git", "clone", "-q", str(bare), str(clone)], check=True)
    assert tool(a, "assess", "--asset", "web", "--capability", "Alerts", "--level", "2",
                env=environ()).returncode == 0
    git(a, "push", "-q", "origin", "HEAD")
    marker = root / f"pause-pull-{n}"
    proc = start_paused(b, stage, ("assess", "--asset", "auth", "--capability", "On-call",
                                   "--level", "3"), environ(), marker)
    pulled = subprocess.run(["git", "pull", "-q", "--ff-only"], cwd=b, capture_output=True,
                            env=environ())
    marker.unlink()
    out, err = proc.communicate(timeout=WAIT)
    problems = []
    said_saved = proc.returncode == 0
    if said_saved and (level(b, "auth", "On-call") != 3 or
                       "auth" not in git(b, "log", "-1", "--format=%s")):
        problems.append("loss: exit 0 but the assessment is not in the folder's database and git")
    if pulled.returncode == 0 and level(b, "web", "Alerts") != 2:
        problems.append("loss: the pulled assessment of A is gone from B")
    if proc.returncode not in (0, 1) or "Traceback" in err:
        problems.append(f"crash: exit {proc.returncode}")
    if pulled.returncode != 0:
        # git refused to pull over the database the assess had just changed: the assess
        # commits; a second pull merges with the drivers.
        git(b, "pull", "-q", "--no-rebase", "--no-edit")
    return problems + settled(b, root)


def kill_and_rerun(root: Path, n: int, stage: str, signum: int, args: tuple[str, ...],
                   fake: FakeRally | None) -> list[str]:
    folder = new_folder(root, f"kill-{n}")
    env = environ() if fake is None else rally_env(fake)
    if args[0] != "assess":
        assert tool(folder, "assess", "--asset", "web", "--capability", "On-call", "--level",
                    "1", env=env).returncode == 0
    if args[0] == "sync" and fake is not None:
        # Stories to sync: created, then moved on in Rally by the asset team.
        assert tool(folder, "report", "--push", env=env).returncode == 0
        with fake.lock:
            for story in fake.stories.values():
                story["ScheduleState"] = "Completed"
    marker = root / f"pause-kill-{n}"
    proc = start_paused(folder, stage, args, env, marker)
    proc.send_signal(signum)
    if signum != signal.SIGKILL:
        marker.unlink()  # a handled signal lets the run finish its commit
    _out, err = proc.communicate(timeout=WAIT)
    marker.unlink(missing_ok=True)
    problems = []
    if "Traceback" in err:
        problems.append("crash: a traceback")
    again = tool(folder, *args, env=env)
    if again.returncode not in (0,):
        problems.append(f"rerun: exit {again.returncode}: {again.stderr.strip()[-200:]}")
    if args[0] == "assess" and level(folder, "web", "Alerts") != 3:
        problems.append("loss: the re-run assessment is not in the database")
    if fake is not None:
        problems += duplicates(fake)
    return problems + settled(folder, root)


def clear_text(root: Path, n: int, service: str, args: tuple[str, ...]) -> list[str]:
    """One service's URL is ``http://<service>.example.com`` and ``HTTP_PROXY`` points at a
    listener on 127.0.0.1; the other service is the fake (or a host never reached), so the
    command gets as far as it can. No request with a key may reach the listener."""
    folder = new_folder(root, f"clear-{n}")
    token = "bench-confluence-pat-0123456789"
    listener = Listener()
    with FakeRally() as fake:
        env = dict(rally_env(fake), CONFLUENCE_BASE_URL="https://wiki.example.com",
                   CONFLUENCE_PAT=token, CONFLUENCE_PAGE_ID="3", HTTP_PROXY=listener.url,
                   http_proxy=listener.url, NO_PROXY="127.0.0.1,localhost",
                   no_proxy="127.0.0.1,localhost")
        env[f"{service}_BASE_URL"] = f"http://{service.lower()}.example.com"
        key = env["RALLY_API_KEY"]
        tool(folder, "assess", "--asset", "web", "--capability", "On-call", "--level", "1",
             env=environ())
        done = tool(folder, *args, env=env)
    listener.close()
    problems = []
    if key.encode() in listener.received or token.encode() in listener.received:
        problems.append("clear: a key reached the plain-http listener")
    if key in done.stdout + done.stderr or token in done.stdout + done.stderr:
        problems.append("clear: a key was printed")
    return problems


# ---------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one scenario of each kind")
    opts = parser.parse_args(argv)
    tally = Tally()
    stages = ("before-db-commit", "after-db-commit", "before-git-commit")
    signals = (signal.SIGKILL, signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
    if opts.quick:
        stages, signals = ("before-git-commit",), (signal.SIGKILL,)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="sre-faults-") as tmp:
        root = Path(tmp)
        n = 0

        def run(name: str, scenario: Callable[[], list[str]]) -> None:
            try:
                problems = scenario()
            except Exception as exc:  # noqa: BLE001 - a broken scenario is reported, not hidden
                problems = [f"script: {type(exc).__name__}: {exc}"]
            tally.scenario(name, problems)

        for stage in ("before-db-commit",) if opts.quick else ("before-db-commit",
                                                                "after-db-commit"):
            n += 1
            run(f"pull during assess at {stage}",
                lambda n=n, stage=stage: pull_during_assess(root, n, stage))
        commands: list[tuple[str, tuple[str, ...]]] = [("assess", ASSESS),
                                                       ("report --push", ("report", "--push")),
                                                       ("sync", ("sync",))]
        for label, args in commands:
            for stage in stages:
                for signum in signals:
                    n += 1
                    with FakeRally() as fake:
                        name = (f"{signal.Signals(signum).name} at {stage} of {label}, "
                                "then the same command again")
                        run(name, lambda n=n, stage=stage, signum=signum, args=args,
                            fake=fake: kill_and_rerun(root, n, stage, signum, args,
                                                      None if args[0] == "assess" else fake))
        for service in ("RALLY", "CONFLUENCE"):
            for args in (("report", "--push"), ("sync",), ("check",)):
                n += 1
                run(f"{service}_BASE_URL http:// through a proxy: {' '.join(args)}",
                    lambda n=n, service=service, args=args: clear_text(root, n, service, args))
    counts = tally.counts
    kinds = ("loss", "leftover", "duplicate", "clear")
    other = sum(n for kind, n in counts.items() if kind not in kinds)
    print(f"\n{tally.scenarios} scenarios in {time.monotonic() - started:.0f} s: "
          f"{counts['loss']} losses, {counts['leftover']} uncommitted leftovers after a re-run, "
          f"{counts['duplicate']} duplicate stories, {counts['clear']} keys sent in clear, "
          f"{other} other failures")
    return 1 if counts else 0


if __name__ == "__main__":
    sys.exit(main())
