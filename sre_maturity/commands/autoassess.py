"""``assess --auto`` and ``assess --override`` / ``--clear-override`` (SPEC §12): the
non-interactive side of automated evidence.

``--auto`` runs the applicable checks through the runner (:mod:`sre_maturity.clients.evidence`),
records each verdict with its evidence, recomputes the levels it moves through the pure rules
(:mod:`sre_maturity.rules.evidence`) and makes one commit for the run. The checks run without
the data folder's lock (they may take minutes); the lock is taken only to save, and the levels
are recomputed under it from what the database holds then, so a run never undoes an assessment
saved while its checks were running.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from sre_maturity.support.context import CommandOptions, Context
from sre_maturity.support.errors import EXIT_OK, EXIT_PARTIAL, ConfigError, InputError

if TYPE_CHECKING:
    from database import AssetInfo, Database
    from sre_maturity.clients.evidence import AssetScope, Verdict
    from sre_maturity.rules import maturity as mt
    from sre_maturity.rules import views
    from sre_maturity.rules.checkspec import CheckRow

MESSAGE_MOVES = 40  # moved cells listed in a run's commit message
# Verdicts that told nothing because the source could not answer (exit 3, listed).
COULD_NOT_TELL = ("error",)


@dataclass(frozen=True)
class AutoOptions(CommandOptions):
    """What ``assess --auto`` / ``--override`` / ``--clear-override`` were asked to do."""

    flow: str | None = None
    asset: str | None = None
    capability: str | None = None
    check: list[str] | None = None
    auto: bool = False
    override: str | None = None
    clear_override: str | None = None
    answer: str | None = None
    reason: str | None = None
    until: str | None = None
    assessor: str | None = None
    dry_run: bool = False
    explain: bool = False
    format: str = "table"
    trust_commands: bool = False


class Move(NamedTuple):
    """A cell whose level the evidence moves: old and new level (None: not assessed), the
    question now answered no (if any), the answers and the history note naming the checks."""

    asset: str
    capability: str
    old: int | None
    new: int
    failed_question: str
    answers: list[dict]
    notes: str


def run(opts: AutoOptions, ctx: Context) -> int:
    """Dispatch ``--auto``, ``--override`` or ``--clear-override``."""
    if opts.override or opts.clear_override:
        return run_override(opts, ctx)
    return run_auto(opts, ctx)


def refuse_auto_flags(opts: AutoOptions) -> None:
    """A flag of ``--auto`` or ``--override`` given to a plain assess is an error, not
    silently ignored."""
    for flag, value in (("--check", opts.check), ("--explain", opts.explain),
                        ("--format", opts.format != "table"), ("--answer", opts.answer),
                        ("--reason", opts.reason)):
        if value:
            goes = "--override CHECK" if flag in ("--answer", "--reason") else "--auto"
            raise InputError(f"{flag} goes with {goes}")


# ---------------------------------------------------------------------------- --auto
def run_auto(opts: AutoOptions, ctx: Context) -> int:
    """Run the checks, record verdicts and moved levels, commit once; exit 0, 3 or 1."""
    from sre_maturity.clients import evidence as runner
    from sre_maturity.support import trust as trusting

    for flag, value in (("--answer", opts.answer), ("--reason", opts.reason),
                        ("--until", opts.until)):
        if value is not None:
            raise InputError(f"{flag} goes with --override CHECK")
    if not opts.dry_run:
        ctx.require_identity()
    with ctx.open_db() as db:
        checks, assets, params = _scope(db, opts)
        model = db.load_model()
    trust = trusting.from_run(opts.trust_commands)
    verdicts = runner.run_checks(checks, params, assets, ctx.settings, ctx.data_dir, trust,
                                 explain=opts.explain)
    if opts.dry_run:
        with ctx.open_db() as db:
            moves = plan_moves(db, model, verdicts)
    else:
        moves = save_run(ctx, verdicts, model)
    show_run(ctx, opts, verdicts, moves)
    unknown = [v for v in verdicts if v.verdict in COULD_NOT_TELL]
    if unknown:
        # Said on stderr whatever the format and -q: a pipeline's log keeps why it was 3.
        import sys

        print(f"sre_tracker: {len(unknown)} check(s) could not tell:", file=sys.stderr)
        for v in unknown:
            print(f"  {v.asset} / {v.check}: {_visible(v.detail)}", file=sys.stderr)
        return EXIT_PARTIAL
    return EXIT_OK


def _scope(db: Database, opts: AutoOptions
           ) -> tuple[list[CheckRow], list[AssetScope], dict[str, dict[str, str]]]:
    """The checks and assets the filters select, and the assets' parameters; a filter naming
    nothing known, or no check at all, is a configuration error (exit 1)."""
    from database import now_iso
    from sre_maturity.clients.evidence import AssetScope
    from sre_maturity.rules import maturity as mt
    from sre_maturity.support.names import resolve

    checks = db.load_checks()
    if not checks:
        raise ConfigError("no checks to run: checks.csv is missing, empty or not imported; "
                          "write it (see examples/checks.csv) and run setup --from-csv")
    assets = db.load_assets()
    names = set(assets)
    if opts.flow:
        flow = resolve("flow", opts.flow, {f for i in assets.values() for f in i.flows},
                       "see flows.csv")
        names = {a for a in names if flow in assets[a].flows}
    if opts.asset:
        asset = resolve("asset", opts.asset, assets, "see flows.csv")
        if asset not in names:
            raise InputError(f"asset {asset!r} is not in flow {opts.flow!r} (it is in "
                             f"{assets[asset].flow_label})")
        names = {asset}
    if opts.check:
        by_name = {c.name: c for c in checks}
        wanted = {resolve("check", n, by_name, "see checks.csv") for n in opts.check}
        checks = [c for c in checks if c.name in wanted]
    if opts.capability:
        model = db.load_model()
        cap = resolve("capability", opts.capability, model, "see maturity_model.csv")
        checks = [c for c in checks if c.capability == cap]
        if not checks:
            raise InputError(f"no check{' so named' if opts.check else ''} in checks.csv "
                             f"answers a question of {cap!r}")
    today = now_iso()[:10]
    not_applicable: dict[str, set[str]] = {}
    for asset, capability, state, _level, until in db.cell_levels(names):
        if mt.not_applicable_now(state, until, today):
            not_applicable.setdefault(asset, set()).add(capability)
    scopes = [AssetScope(a, (info.team,) if info.team else (), tuple(info.flows),
                         frozenset(not_applicable.get(a, ())))
              for a, info in assets.items() if a in names]
    params = db.load_asset_params()
    return checks, scopes, {a: p for a, p in params.items() if a in names}


def _visible(text: str | None) -> str:
    from sre_maturity.render.reports import visible

    return visible(text or "")


# ---------------------------------------------------------------------------- output
def _level_text(level: int | None) -> str:
    return "none" if level is None else str(level)


def result_dict(v: Verdict, *, explain: bool = False) -> dict[str, Any]:
    """One result of the pinned JSON (``request`` added with --explain)."""
    out: dict[str, Any] = {"asset": v.asset, "check": v.check, "capability": v.capability,
                           "level": v.level, "kind": v.kind, "verdict": v.verdict,
                           "detail": v.detail, "link": v.link or None,
                           "checked_at": v.checked_at, "valid_until": v.valid_until or None}
    if explain:
        out["request"] = v.request or None
    return out


def summary_counts(verdicts: Iterable[Verdict]) -> dict[str, int]:
    """Results counted by verdict (every verdict named, 0 when none)."""
    from sre_maturity.rules.checkspec import VERDICTS

    counted = Counter(v.verdict for v in verdicts)
    return {name: counted.get(name, 0) for name in VERDICTS}


def json_text(verdicts: Sequence[Verdict], moves: Sequence[Move], *,
              explain: bool = False) -> str:
    """``{"results", "levels", "summary"}`` as SPEC §12 pins it (the summary holds only the
    counts by verdict, so they add up to the results)."""
    import json

    def rows(items: Iterable[dict]) -> str:
        # One entry a line, each by the C encoder (an indented dump takes the pure-Python
        # one, seconds for 10,000 results).
        text = ",\n".join("    " + json.dumps(i, ensure_ascii=False) for i in items)
        return f"[\n{text}\n  ]" if text else "[]"

    results = rows(result_dict(v, explain=explain) for v in verdicts)
    levels = rows({"asset": m.asset, "capability": m.capability, "old": m.old, "new": m.new}
                  for m in moves)
    return (f'{{\n  "results": {results},\n  "levels": {levels},\n'
            f'  "summary": {json.dumps(summary_counts(verdicts))}\n}}')


def junit_text(verdicts: Sequence[Verdict]) -> str:
    """JUnit XML: one test case per asset × check (``failure`` for fail, ``error`` for error,
    ``skipped`` for the verdicts that did not run); escaping is the XML library's."""
    import xml.etree.ElementTree as ET

    counts = summary_counts(verdicts)
    skipped = len(verdicts) - counts["pass"] - counts["fail"] - counts["error"]
    root = ET.Element("testsuites", name="sre-tracker assess --auto",
                      tests=str(len(verdicts)), failures=str(counts["fail"]),
                      errors=str(counts["error"]), skipped=str(skipped))
    suite = ET.SubElement(root, "testsuite", name="sre-tracker checks",
                          tests=str(len(verdicts)), failures=str(counts["fail"]),
                          errors=str(counts["error"]), skipped=str(skipped),
                          timestamp=min((v.checked_at for v in verdicts), default=""))
    for v in verdicts:
        case = ET.SubElement(suite, "testcase", classname=_xml_safe(v.asset),
                             name=_xml_safe(v.check))
        text = _xml_safe(v.detail)
        if v.verdict == "fail":
            ET.SubElement(case, "failure", message=text, type="fail").text = text
        elif v.verdict == "error":
            ET.SubElement(case, "error", message=text, type="error").text = text
        elif v.verdict != "pass":
            ET.SubElement(case, "skipped", message=_xml_safe(f"{v.verdict}: {v.detail}"))
        out = [f"{v.capability} L{v.level} ({v.kind}): {v.verdict}", v.detail]
        if v.link:
            out.append(f"link: {v.link}")
        if v.valid_until:
            out.append(f"valid until: {v.valid_until}")
        ET.SubElement(case, "system-out").text = _xml_safe("\n".join(out))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode")


def _xml_safe(text: str | None) -> str:
    """XML 1.0 cannot carry most control characters, even escaped: they are shown as \\xNN."""
    return "".join(c if c in "\t\n\r" or ord(c) >= 0x20 and c not in "\ufffe\uffff"
                   else f"\\x{ord(c):02x}" for c in (text or ""))


def show_run(ctx: Context, opts: AutoOptions, verdicts: Sequence[Verdict],
             moves: Sequence[Move]) -> None:
    """Print the run in the asked format: json and junit always (they are the data asked
    for); the table too with --dry-run or --explain, whose whole answer it is; otherwise -q
    silences it, as a run's summary."""
    if opts.format == "json":
        _data(json_text(verdicts, moves, explain=opts.explain))
        return
    if opts.format == "junit":
        _data(junit_text(verdicts))
        return
    emit = ctx.print_data if opts.dry_run or opts.explain else ctx.print
    shown = [v for v in verdicts if v.verdict != "not_applicable"]
    if not shown:
        emit("no check applies to the selected assets")
    width_a = max((len(v.asset) for v in shown), default=0)
    width_c = max((len(v.check) for v in shown), default=0)
    for v in shown:
        emit(f"{v.verdict:<12}  {v.asset:<{width_a}}  {v.check:<{width_c}}  {v.detail}")
        if opts.explain:
            emit(f"    question: {v.capability} L{v.level} ({v.kind})")
            emit(f"    request:  {v.request or 'none'}")
            emit(f"    seen:     {v.detail}")
            if v.link:
                emit(f"    link:     {v.link}")
            if v.valid_until:
                emit(f"    valid until {v.valid_until}")
    verb = "would move" if opts.dry_run else "moved"
    if moves:
        emit(f"levels {verb}:")
        for m in moves:
            emit(f"  {m.asset} / {m.capability}  {_level_text(m.old)} → "
                 f"{_level_text(m.new)}  ({m.notes})")
    counts = summary_counts(verdicts)
    said = ", ".join(f"{n} {name.replace('_', ' ')}" for name, n in counts.items() if n)
    tail = " (dry run: nothing written)" if opts.dry_run else ""
    ctx.print(f"{len(verdicts)} results: {said or 'none'}; {len(moves)} level(s) {verb}{tail}")


def _data(text: str) -> None:
    """The data a command was asked for goes to stdout even with -q (SPEC §11)."""
    import sys

    sys.stdout.write(text + "\n")
    sys.stdout.flush()


# ---------------------------------------------------------------------------- saving
def save_run(ctx: Context, verdicts: Sequence[Verdict], model: Mapping[str, mt.Capability]
             ) -> list[Move]:
    """Under the folder's lock: record the verdicts and the levels they move (recomputed from
    what the database holds now), rewrite the moved rows of sre_matrix.csv, commit once."""
    from database import DB_FILE, MATRIX_FILE
    from sre_maturity.support import interrupts

    recorded = [v for v in verdicts if v.verdict != "not_applicable"]
    if not recorded:
        return []
    with ctx.writing(), interrupts.deferred():
        # Held Ctrl-C: the save is short, and a half-saved run would leave the database
        # ahead of git; the interrupt is raised once the commit is made.
        with ctx.open_db() as db:
            with db.transaction():
                db.record_evidence(recorded)
                moves = plan_moves(db, model, recorded)
                record_moves(db, moves)
            _update_matrix(ctx, db, moves)
        ctx.commit([DB_FILE, MATRIX_FILE], run_message(recorded, moves))
    return moves


def _update_matrix(ctx: Context, db: Database, moves: Sequence[Move]) -> None:
    from sre_maturity.rules.views import update_matrix_file

    if moves:
        update_matrix_file(ctx, db, {(m.asset, m.capability) for m in moves})


def record_moves(db: Database, moves: Sequence[Move]) -> None:
    """One history entry per moved cell, by ``sre-tracker (checks)``, noting the checks; the
    items of all of them brought in line at once (inside the caller's transaction)."""
    from database import history_entry, now_iso
    from sre_maturity.rules import evidence as ev
    from sre_maturity.rules import maturity as mt

    if not moves:
        return
    at = now_iso()
    db.append_history([history_entry(
        m.asset, m.capability, mt.ASSESSED if m.old is not None else mt.NOT_ASSESSED, m.old,
        mt.ASSESSED, m.new, m.answers, m.failed_question, m.notes, "", "",
        ev.CHECKS_ASSESSOR, at, ev.CHECKS_SOURCE) for m in moves])
    touched = {(m.asset, m.capability) for m in moves}
    db.refresh_items(touched, reassessed=touched, now=at)


def run_message(verdicts: Sequence[Verdict], moves: Sequence[Move]) -> str:
    """The run's commit message: what moved (or that nothing did), then the counts."""
    counts = summary_counts(verdicts)
    said = ", ".join(f"{n} {name.replace('_', ' ')}" for name, n in counts.items() if n)
    if not moves:
        head = f"assess --auto: no level moved ({said})"
    elif len(moves) == 1:
        m = moves[0]
        head = (f"assess --auto: {m.asset} / {m.capability} {_level_text(m.old)}→"
                f"{_level_text(m.new)} ({said})")
    else:
        head = f"assess --auto: {len(moves)} levels moved ({said})"
    # The moves one line each, up to a screenful (the history holds every one, with notes).
    body = [f"{m.asset} / {m.capability} {_level_text(m.old)}→{_level_text(m.new)}"
            for m in moves[:MESSAGE_MOVES]]
    if len(moves) > MESSAGE_MOVES:
        body.append(f"... and {len(moves) - MESSAGE_MOVES} more (see history)")
    return head + ("\n\n" + "\n".join(body) if len(moves) > 1 else "")


# ---------------------------------------------------------------------------- overrides
def run_override(opts: AutoOptions, ctx: Context) -> int:
    """Record (``--override``) or lift (``--clear-override``) a person's answer to one check
    for one asset; the level is recomputed and committed at once."""
    from database import DB_FILE, MATRIX_FILE, now_iso
    from sre_maturity.git import gitops
    from sre_maturity.rules import evidence as ev
    from sre_maturity.rules.checkspec import Override
    from sre_maturity.store.csvfiles import parse_until
    from sre_maturity.support import interrupts
    from sre_maturity.support.names import resolve

    clearing = opts.clear_override is not None
    flag = "--clear-override" if clearing else "--override"
    name = str(opts.clear_override if clearing else opts.override)
    for other, value in (("--flow", opts.flow), ("--capability", opts.capability),
                         ("--check", opts.check), ("--dry-run", opts.dry_run),
                         ("--explain", opts.explain), ("--trust-commands", opts.trust_commands),
                         ("--format", opts.format != "table")):
        if value:
            raise InputError(f"{other} goes with --auto, not with {flag}")
    if not opts.asset:
        raise InputError(f"{flag} {name} needs --asset A (the asset whose check it is)")
    if clearing:
        for other, value in (("--answer", opts.answer), ("--reason", opts.reason),
                             ("--until", opts.until)):
            if value is not None:
                raise InputError(f"{other} goes with --override, not with --clear-override")
    else:
        if opts.answer is None:
            raise InputError("--override needs --answer yes or --answer no (the answer that "
                             "stands instead of the check's evidence)")
        if not (opts.reason or "").strip():
            raise InputError("--override needs --reason TEXT (why the check's evidence does "
                             "not stand)")
    ctx.require_identity()
    now = now_iso()
    today = now[:10]
    until = ""
    if not clearing:
        until = ev.override_until(datetime.fromisoformat(now), parse_until(opts.until, today))
    by = opts.assessor or gitops.user_name(ctx.data_dir)
    with ctx.writing(), interrupts.deferred():
        with ctx.open_db() as db:
            checks = {c.name: c for c in db.load_checks()}
            check = checks[resolve("check", name, checks, "see checks.csv")]
            assets = db.load_assets()
            asset = resolve("asset", opts.asset, assets, "see flows.csv")
            if not applies(check, asset, assets[asset]):
                raise InputError(f"check {check.name} does not apply to {asset} (its Applies "
                                 f"To is {', '.join(check.applies_to)}; see checks.csv)")
            model = db.load_model()
            with db.transaction():
                if clearing:
                    if not db.clear_override(asset, check.name, now):
                        raise InputError(f"no override of {check.name} for {asset} to clear")
                else:
                    db.set_override(Override(asset, check.name, str(opts.answer),
                                             str(opts.reason).strip(), by, now, until))
                moves = plan_moves(db, model, (), cells={(asset, check.capability)})
                record_moves(db, moves)
            _update_matrix(ctx, db, moves)
        moved = "; ".join(f"{m.capability} {_level_text(m.old)}→{_level_text(m.new)}"
                          for m in moves) or "no level moved"
        if clearing:
            message = f"assess: cleared override of {check.name} for {asset} ({moved}) ({by})"
        else:
            message = (f"assess: override {check.name} for {asset}: {opts.answer} until {until} "
                       f"({moved}) ({by})\n\n{str(opts.reason).strip()}")
        ctx.commit([DB_FILE, MATRIX_FILE], message)
    if clearing:
        ctx.print(f"override of {check.name} for {asset} cleared; its evidence answers again")
    else:
        ctx.print(f"override of {check.name} for {asset}: {opts.answer} until {until} "
                  f"(by {by}: {str(opts.reason).strip()})")
    for m in moves:
        ctx.print(f"  {asset} / {m.capability}  {_level_text(m.old)} → {_level_text(m.new)}")
    if not moves:
        ctx.print(f"  {check.capability}: level unchanged")
    return EXIT_OK


# ---------------------------------------------------------------------------- levels
def plan_moves(db: Database, model: Mapping[str, mt.Capability], verdicts: Iterable[Verdict],
               *, cells: Iterable[tuple[str, str]] = (), now: datetime | None = None
               ) -> list[Move]:
    """The cells whose level the evidence moves now: those the ``verdicts`` touch and
    ``cells``, recomputed by the rules from the stored evidence (the ``verdicts``' definitive
    ones standing in for it, so a dry run sees what a run would record), the overrides and
    the person's latest answer. A Not Applicable cell is left as it is."""
    from sre_maturity.rules import maturity as mt
    from sre_maturity.rules import views

    verdicts = list(verdicts)
    now = now or datetime.now(UTC)
    keys = set(cells) | {(v.asset, v.capability) for v in verdicts
                         if v.verdict != "not_applicable"}
    found = views.cell_evidence(db, keys, now, overlay=verdicts)
    current = {(r[0], r[1]): r for r in db.cell_levels({a for a, _c in found})}
    today = now.date().isoformat()
    moves = []
    for key, seen in found.items():
        asset, capability, state, level, until = current.get(key) or (*key, mt.NOT_ASSESSED,
                                                                      None, "")
        cap = model.get(capability)
        if mt.not_applicable_now(state, until, today) or cap is None:
            continue
        old = level if state == mt.ASSESSED else None
        new = seen.result.level
        notes = _notes(seen)
        if new is None:
            if old is None:
                continue
            # An assessed cell cannot go back to Not Assessed, and unknown never counts as
            # healthy: with nothing answering level 1 any more, the level is 0.
            new = 0
            notes += "; nothing answers level 1 now (no valid evidence, no person's answer)"
        if new == old:
            continue
        answers, failed = _answers(cap, seen)
        moves.append(Move(key[0], key[1], old, new, failed, answers, notes))
    return moves


def _answers(cap: mt.Capability, seen: views.CellEvidence) -> tuple[list[dict], str]:
    """The answers in asking order up to the first that is not yes (as a person's are
    recorded), each with where it came from; and the question answered no, if one was."""
    out: list[dict] = []
    for level in sorted(cap.levels):
        for number, question in enumerate(cap.levels[level].questions, start=1):
            got = seen.result.answers.get((level, number))
            if got is None or got.value is None:
                return out, ""
            out.append({"level": level, "question": question, "answer": got.value,
                        "source": got.source, "checks": list(got.failed)})
            if not got.value:
                from sre_maturity.rules import evidence as ev

                # The gap texts (status, page, story) say which check said no and what it saw.
                said = ev.says_no(seen.failed(got.failed))
                return out, f"{question} — {said}" if said else question
    return out, ""


def _notes(seen: views.CellEvidence) -> str:
    """The history note: each check of the cell, what it says now and what it saw."""
    from sre_maturity.rules import evidence as ev

    parts = []
    for s in seen.states:
        mode = "" if s.gate else " (advisory)"
        if s.override is not None:
            parts.append(f"{s.check}{mode} overridden: {'yes' if s.override else 'no'}")
        elif s.evidence is not None:
            record = seen.records.get(s.check)
            detail = f" ({ev.gist(record.detail)})" if record and record.detail.strip() else ""
            parts.append(f"{s.check}{mode} {s.evidence}{detail}")
        else:
            parts.append(f"{s.check}{mode} no valid evidence")
    text = "checks: " + "; ".join(parts)
    if seen.result.conflict:
        text += (f"; the evidence disagrees with the person's answer (L{seen.person_level})"
                 if seen.person_level is not None else "")
    return text


def applies(check: CheckRow, asset: str, info: AssetInfo) -> bool:
    """Whether ``check``'s Applies To takes in ``asset``."""
    from sre_maturity.rules import evidence as ev

    return ev.applies(check.applies_to, asset, (info.team,) if info.team else (), info.flows)
