"""Interactive ``assess`` with checks (SPEC §12): before the questions, the cell's applicable
checks run through the runner (:mod:`sre_maturity.clients.evidence`), their verdicts are shown,
an untrusted command check may be trusted on the terminal, and a person may override a verdict
(reason and expiry asked). The answers the evidence gives are not asked again; the level is the
one :func:`rules.evidence.cell` gives, as ``assess --auto`` computes it.

Nothing here writes to the data folder: the verdicts and overrides are saved with the
assessment, under the folder's lock, only when the person confirms it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, NamedTuple

from sre_maturity.support.errors import ConfigError

if TYPE_CHECKING:
    from database import Database
    from sre_maturity.clients.evidence import Verdict
    from sre_maturity.rules import maturity as mt
    from sre_maturity.rules.checkspec import CheckRow, Override
    from sre_maturity.support.context import Context
    from sre_maturity.support.prompts import Prompter


class CellRun(NamedTuple):
    """What the checks of one cell found: the verdicts to record, the overrides the person
    gave, and the answers they settle (``(level, question number)`` -> yes/no, with the
    words shown for it)."""

    verdicts: list[Verdict]
    overrides: list[Override]
    known: dict[tuple[int, int], tuple[bool, str]]

    def level(self, cap: mt.Capability, person_level: int | None, db: Database,
              asset: str) -> int | None:
        """The cell's level from this evidence and the person's answers (the one rule
        ``assess --auto`` uses)."""
        seen = _seen(db, asset, cap.name, self.verdicts, self.overrides)
        if seen is None:
            return person_level
        from sre_maturity.rules import evidence as ev

        questions = {lv: len(spec.questions) for lv, spec in cap.levels.items()}
        return ev.cell(questions, seen.states, person_level).level


def run_cell(p: Prompter, ctx: Context, db: Database, asset: str, cap: mt.Capability,
             assessor: str) -> CellRun | None:
    """Run the checks of ``asset`` × ``cap`` and show them, asking about untrusted commands
    and overrides (recorded as by ``assessor``); None when no check applies."""
    from sre_maturity.clients import evidence as runner
    from sre_maturity.clients.evidence import AssetScope
    from sre_maturity.commands.autoassess import applies
    from sre_maturity.support import trust as trusting

    assets = db.load_assets()
    info = assets.get(asset)
    checks = [c for c in db.load_checks() if c.capability == cap.name and info is not None
              and applies(c, asset, info)]
    if not checks or info is None:
        return None
    scope = AssetScope(asset, (info.team,) if info.team else (), tuple(info.flows))
    params = {asset: db.load_asset_params().get(asset, {})}
    trust = trusting.from_run(False)
    p.write(f"  running {len(checks)} check(s) of {cap.name} for {asset} ...")
    try:
        verdicts = runner.run_checks(checks, params, [scope], ctx.settings, ctx.data_dir, trust)
    except ConfigError as exc:
        p.write(f"  the checks could not run: {exc}; every question is asked")
        return CellRun([], [], {})
    for v in verdicts:
        _show(p, v)
    by_name = {c.name: c for c in checks}
    trusted = [by_name[v.check] for v in verdicts
               if v.verdict == "untrusted" and _ask_trust(p, by_name[v.check])]
    if trusted:
        for c in trusted:
            trust.store.trust(c.target, ctx.data_dir)
        again = {v.check: v for v in runner.run_checks(trusted, params, [scope], ctx.settings,
                                                       ctx.data_dir, trust)}
        for v in again.values():
            _show(p, v)
        verdicts = [again.get(v.check, v) for v in verdicts]
    overrides = _ask_overrides(p, asset, verdicts, assessor)
    seen = _seen(db, asset, cap.name, verdicts, overrides)
    known: dict[tuple[int, int], tuple[bool, str]] = {}
    if seen is not None:
        for key, answer in seen.result.answers.items():
            if answer.source in ("evidence", "override") and answer.value is not None:
                states = [s for s in seen.states if (s.level, s.question) == key and s.gate]
                names = ", ".join(s.check for s in states if s.says is answer.value)
                known[key] = (answer.value, f"{answer.source} of {names}")
    return CellRun([v for v in verdicts if v.verdict != "not_applicable"], overrides, known)


def _show(p: Prompter, v: Verdict) -> None:
    p.write(f"  check {v.check} (L{v.level}, {v.kind}): {v.verdict} — {_visible(v.detail)}")


def _seen(db: Database, asset: str, capability: str, verdicts, overrides):
    from sre_maturity.rules import views

    found = views.cell_evidence(db, {(asset, capability)}, datetime.now(UTC),
                                overlay=verdicts, overlay_overrides=overrides)
    return found.get((asset, capability))


def _ask_trust(p: Prompter, check: CheckRow) -> bool:
    """Whether the person trusts this exact command on this machine."""
    reply = p.ask(f"  check {check.name} runs the command `{_visible(check.target)}`; trust "
                  "this exact command on this machine? [y/N] ").casefold()
    return reply in ("y", "yes")


def _ask_overrides(p: Prompter, asset: str, verdicts: list[Verdict], by: str
                   ) -> list[Override]:
    """Overrides the person gives of definitive verdicts (name, answer, reason, expiry)."""
    from database import now_iso
    from sre_maturity.rules import evidence as ev
    from sre_maturity.rules.checkspec import DEFINITIVE, Override
    from sre_maturity.store.csvfiles import parse_until
    from sre_maturity.support.errors import InputError

    can = {v.check: v for v in verdicts if v.verdict in DEFINITIVE}
    if not can:
        return []
    out: dict[str, Override] = {}
    while True:
        name = p.ask("  override a check's verdict? (its name; empty: none) ").strip()
        if not name:
            return list(out.values())
        match = [c for c in can if c.casefold() == name.casefold()]
        if not match:
            p.write(f"    {name!r} is not a check with a verdict here; one of: "
                    f"{', '.join(can)}")
            continue
        answer = ""
        while answer not in ("yes", "no"):
            reply = p.ask("    the answer instead of its verdict (yes/no): ").strip().casefold()
            answer = {"y": "yes", "n": "no"}.get(reply, reply)
        reason = ""
        while not reason:
            reason = p.ask("    why does its verdict not stand? (required) ").strip()
        now = now_iso()
        default = ev.override_until(datetime.fromisoformat(now))
        while True:
            text = p.ask(f"    until when? (YYYY-MM-DD, empty: {default}) ").strip()
            try:
                until = parse_until(text, now[:10]) or default
                break
            except InputError as exc:
                p.write(f"    {str(exc).replace('--until ', '')}")
        out[match[0]] = Override(asset, match[0], answer, reason, by, now, until)
        p.write(f"    override of {match[0]}: {answer} until {until}")


def _visible(text: str) -> str:
    from sre_maturity.render.reports import visible

    return visible(text or "")


def known_words(known: Mapping[tuple[int, int], tuple[bool, str]], key: tuple[int, int]
                ) -> str:
    """How an answer the checks settle is shown in place of its question."""
    value, words = known[key]
    return f"{'yes' if value else 'no'} ({words})"
