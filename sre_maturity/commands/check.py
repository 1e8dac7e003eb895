"""The ``check`` command: settings, database, git wiring, Rally and Confluence access, the
configured evidence sources (Splunk, Prometheus, PagerDuty), one line each (ok, skip or FAIL
with the reason and the fix)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from config import RALLY_REQUIRED, Settings
from database import DB_FILE
from sre_maturity.clients import confluence, evidence, rally
from sre_maturity.git import gitops
from sre_maturity.render import pages
from sre_maturity.render.reports import counted
from sre_maturity.rules.checkspec import CheckRow
from sre_maturity.store import checkfiles, csvfiles
from sre_maturity.store.sources import stale_sources
from sre_maturity.support.errors import (
    EXIT_ERROR,
    EXIT_OK,
    ConfigError,
    ConfluenceError,
    InputError,
    RallyError,
    TrackerError,
)

if TYPE_CHECKING:
    from sre_maturity.support.context import Context


def run(ctx: Context) -> int:
    """``check``: one line per check, ok or the reason and the fix."""
    settings: Settings = ctx.settings
    results: list[tuple[bool | None, str]] = []
    source = f" ({settings.env_file})" if settings.env_file else " (no .env file)"
    results.append((True, f"settings: loaded{source}"))
    folder = settings.data_dir
    db_path = folder / DB_FILE
    kinds: set[str] = set()
    stored: tuple[list[CheckRow], dict[str, dict[str, str]]] | None = None
    if db_path.exists():
        try:
            with ctx.open_db(warn_stale=False) as db:
                results.append((True, f"database: {db_path.name} schema {db.schema_version()}"))
                stale = stale_sources(db, folder)
                results += [(False, f"csv: {line}") for line in stale] or [
                    (True, "csv: the CSVs are what the database was built from")]
                stored = db.load_checks(), db.load_asset_params()
                kinds = {c.kind for c in stored[0]}
        except TrackerError as exc:
            results.append((False, f"database: {exc}"))
    else:
        results.append((False, f"database: no {DB_FILE} in {folder}; run setup"))
    results.append(_check_evidence_files(folder, stored))
    if not gitops.available():
        results.append((False, "git: not installed; install git to keep the history"))
    elif gitops.repo_root(folder) is None:
        results.append((False, f"git: {folder} is not a repository; run setup"))
    else:
        registered = gitops.drivers_registered(folder)
        results.append((registered, "git: merge driver and diff registered" if registered else
                        "git: merge driver not registered; run any command in the folder"))
        if gitops.env_tracked(folder):
            results.append((False, "git: .env is tracked; run git rm --cached .env"))
    results.extend(_check_rally(settings))
    results.extend(_check_confluence(settings))
    results.extend(evidence.reach_sources(settings, kinds))
    results.extend(pages.check(settings))
    failed = 0
    for ok, text in results:
        label = "ok  " if ok else "skip" if ok is None else "FAIL"
        failed += ok is False
        # A failed check says why even with -q (then on stderr).
        (ctx.print_why if ok is False else ctx.print)(f"{label}  {text}")
    return EXIT_OK if not failed else EXIT_ERROR


def _check_evidence_files(folder: Path,
                          stored: tuple[list[CheckRow], dict[str, dict[str, str]]] | None
                          ) -> tuple[bool | None, str]:
    """checks.csv and assets.csv: valid against flows.csv and the model (the first problem,
    with file, line and column), and imported (the database holds the same checks and
    parameters, as ``stored``)."""
    from sre_maturity.commands.setup_data import default_model

    present = [n for n in (checkfiles.CHECKS_FILE, checkfiles.ASSETS_FILE)
               if (folder / n).exists()]
    if not present and not (stored and (stored[0] or stored[1])):
        return None, ("checks: no checks.csv (optional: checks answer questions from Splunk, "
                      "Prometheus, PagerDuty, HTTP, files and commands)")
    try:
        flows = csvfiles.read_flows(folder / csvfiles.FLOWS_FILE)
        model_path = folder / csvfiles.MODEL_FILE
        model = csvfiles.read_model(model_path if model_path.exists() else default_model())
        checks, assets = checkfiles.read_folder(folder, flows, model)
    except InputError as exc:
        return False, f"checks: {exc}"
    gates = sum(c.mode == "gate" for c in checks)
    said = (f"{' and '.join(present)}: {counted(len(checks), 'check')} ({gates} gate, "
            f"{len(checks) - gates} advisory), parameters of {counted(len(assets), 'asset')}")
    if stored is not None and (_definition(checks) != _definition(stored[0])
                               or {a.asset: a.params for a in assets} != stored[1]):
        return False, (f"checks: {said}; the database holds others: run setup --from-csv to "
                       "import them")
    return True, f"checks: {said}, valid"


def _definition(checks: list[CheckRow]) -> set[tuple]:
    """What a check is, without where it stands in the file."""
    return {(c.name, c.fingerprint, c.valid_days, c.applies_to, c.mode) for c in checks}


def _check_rally(settings: Settings) -> list[tuple[bool | None, str]]:
    try:
        missing = settings.missing(RALLY_REQUIRED)
        settings.get("RALLY_BASE_URL")
        settings.get("RALLY_TAG")
    except ConfigError as exc:
        return [(False, f"rally: {exc}")]
    if missing:
        return [(None, f"rally: not configured ({', '.join(missing)} not set); "
                       "report works offline")]
    out: list[tuple[bool | None, str]] = []
    try:
        with rally.client_from_settings(settings) as rc:
            user = rc.current_user()
            out.append((True, f"rally: API key accepted (user {user.get('UserName', '?')})"))
            ws = rc.get_workspace()
            out.append((True, f"rally: workspace {ws.get('Name', '?')}"))
            pr = rc.get_project()
            out.append((True, f"rally: project {pr.get('Name', '?')}"))
            parent = rc.resolve_parent(settings.text("RALLY_PARENT_ID"))
            out.append((True, f"rally: parent {parent.get('FormattedID')} "
                              f"{parent.get('Name', '')}".rstrip()))
            tag = settings.text("RALLY_TAG")
            if rc.find_tag(tag):
                out.append((True, f"rally: tag {tag} exists"))
            else:
                out.append((True, f"rally: tag {tag} will be created by the first push"))
    except RallyError as exc:
        out.append((False, f"rally: {exc}"))
    return out


def _check_confluence(settings: Settings) -> list[tuple[bool | None, str]]:
    try:
        missing = settings.confluence_missing()
        settings.get("CONFLUENCE_TABLE_TITLE")
    except ConfigError as exc:
        return [(False, f"confluence: {exc}")]
    if missing:
        return [(None, f"confluence: not configured ({', '.join(missing)} not set); "
                       "paste confluence_page.txt instead")]
    try:
        client = confluence.client_from_settings(settings)
        try:
            line = confluence.check_page(client, settings.text("CONFLUENCE_PAGE_ID"),
                                         settings.text("CONFLUENCE_TABLE_TITLE"))
        finally:
            client.close()
    except ConfluenceError as exc:
        return [(False, f"confluence: {exc}")]
    return [(True, f"confluence: {line}")]

