"""The ``check`` command: settings, database, git wiring, Rally and Confluence access, the
configured evidence sources (Splunk, Prometheus, PagerDuty), one line each (ok, skip or FAIL
with the reason and the fix)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from config import RALLY_REQUIRED, Settings
from database import DB_FILE
from sre_maturity.clients import confluence, evidence, rally
from sre_maturity.git import gitops
from sre_maturity.render import pages
from sre_maturity.support.errors import (
    EXIT_ERROR,
    EXIT_OK,
    ConfigError,
    ConfluenceError,
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
    if db_path.exists():
        try:
            with ctx.open_db() as db:
                results.append((True, f"database: {db_path.name} schema {db.schema_version()}"))
                kinds = {c.kind for c in db.load_checks()}
        except TrackerError as exc:
            results.append((False, f"database: {exc}"))
    else:
        results.append((False, f"database: no {DB_FILE} in {folder}; run setup"))
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

