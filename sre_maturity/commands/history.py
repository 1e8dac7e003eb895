"""The ``history`` command: the assessment history, newest first, filtered by asset, capability
and date (archived assets and capabilities keep theirs)."""

from __future__ import annotations

from dataclasses import dataclass

from sre_maturity.support.context import CommandOptions, Context
from sre_maturity.support.errors import EXIT_OK, InputError


@dataclass(frozen=True)
class HistoryOptions(CommandOptions):
    """Which part of the history to print."""

    asset: str | None = None
    capability: str | None = None
    since: str | None = None
    limit: int | None = None


def run(opts: HistoryOptions, ctx: Context) -> int:
    """Print the assessment history, newest first."""
    from sre_maturity.store import csvfiles
    since = None
    if opts.since:
        since = csvfiles.parse_date(opts.since)
        if since is None:
            raise InputError(f"--since {opts.since!r} is not a date; use YYYY-MM-DD")
    with ctx.open_db() as db:
        asset, capability = _history_names(db, opts.asset, opts.capability)
        entries = db.history(asset, capability, since)
    if not entries:
        ctx.print("no assessments recorded" + (" for that filter" if opts.asset or
                                                opts.capability or since else ""))
        return EXIT_OK
    for e in entries[: opts.limit]:
        old = _level_text(e["old_state"], e["old_level"])
        new = _level_text(e["new_state"], e["new_level"])
        by = e["assessed_by"] or "?"
        # The checks' own entries are by "sre-tracker (checks)": their source is in the name.
        source = "" if by.endswith(f"({e['source']})") else f" ({e['source']})"
        ctx.print_data(f"{e['assessed_at']}  {e['asset']} / {e['capability']}  {old} → {new}  "
                       f"by {by}{source}")
        if e["answers"]:
            ctx.print_data("    answers: " + "; ".join(
                f"L{a['level']} {'yes' if a['answer'] else 'no'}{_answered_by(a)}: "
                f"{a['question']}" for a in e["answers"]))
        if e["failed_question"]:
            ctx.print_data(f"    answered no: {e['failed_question']}")
        if e["na_reason"]:
            until = f" (until {e['na_until']})" if e["na_until"] else ""
            ctx.print_data(f"    not applicable: {e['na_reason']}{until}")
        if e["notes"]:
            ctx.print_data(f"    notes: {e['notes']}")
    return EXIT_OK


def _history_names(db, asset: str | None, capability: str | None
                   ) -> tuple[str | None, str | None]:
    """The filters' canonical names; archived assets and capabilities keep their history."""
    from sre_maturity.support.names import resolve

    if asset:
        asset = resolve("asset", asset, {*db.load_assets(), *db.history_names("asset")})
    if capability:
        capability = resolve("capability", capability,
                             {*db.load_model(), *db.history_names("capability")})
    return asset, capability


def _answered_by(answer: dict) -> str:
    """Where a check-driven entry's answer came from (`` (evidence: pages)``, `` (person)``);
    nothing for a person's own assessment, whose answers carry no source."""
    source = answer.get("source")
    if not source:
        return ""
    checks = answer.get("checks") or []
    return f" ({source}: {', '.join(checks)})" if checks else f" ({source})"


def _level_text(state: str, level: int | None) -> str:
    if state == "Not Applicable":
        return "N/A"
    if state == "Not Assessed" or level is None:
        return "none"
    return str(level)
