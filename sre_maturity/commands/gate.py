"""The ``gate`` command: the go-live gate of a flow or an asset. Closed (exit 4) while
go-live-required items are open or go-live capabilities are not assessed (unless
``--allow-unassessed``), open (exit 0) otherwise, with the reasons listed."""

from __future__ import annotations

from dataclasses import dataclass

from sre_maturity.support.context import CommandOptions, Context
from sre_maturity.support.errors import EXIT_GATE_CLOSED, EXIT_OK


@dataclass(frozen=True)
class GateOptions(CommandOptions):
    """What ``gate`` was asked to check: a flow or an asset (argparse requires one)."""

    flow: str | None = None
    asset: str | None = None
    allow_unassessed: bool = False


def run(opts: GateOptions, ctx: Context) -> int:
    """Exit 4 when the flow (or asset) has open go-live-required items or go-live capabilities
    nobody assessed (unless --allow-unassessed), else 0."""
    from sre_maturity.render.reports import counted, gate_reasons
    from sre_maturity.rules import maturity as mt
    from sre_maturity.rules import views
    from sre_maturity.support.names import resolve

    with ctx.open_db() as db:
        assets = db.load_assets()
        if opts.flow:
            flow = resolve("flow", opts.flow, {f for i in assets.values() for f in i.flows})
            names = {a for a, info in assets.items() if flow in info.flows}
            scope = f"flow {flow}"
        else:
            assert opts.asset is not None  # argparse requires --flow or --asset
            asset = resolve("asset", opts.asset, assets)
            names, scope = {asset}, f"asset {asset}"
        verdict = views.gate(db, names, allow_unassessed=opts.allow_unassessed)
        standing = overrides_in_force(db, names)
    allowed = ""
    if verdict.allowed:
        allowed = (f" ({counted(verdict.allowed, 'go-live capability', 'go-live capabilities')}"
                   " not assessed, allowed by --allow-unassessed)")
    if not verdict.closed:
        ctx.print(f"gate open: {scope} has no open go-live item{allowed}")
        show_overrides(ctx, standing)
        return EXIT_OK
    blocking, unassessed = verdict.blocking, verdict.unassessed
    # A closed gate says why even with -q (then on stderr, where a pipeline's log keeps it).
    ctx.print_why(f"gate closed: {scope} has {gate_reasons(verdict)}{allowed}")
    for it in sorted(blocking, key=lambda i: (i["asset"], i["capability"], i["level"])):
        status = mt.display_status(it["work_status"], it["state"])
        task = mt.task_name(it["capability"], it["level"])
        story = f", {it['rally_id']}" if it["rally_id"] else ""
        ctx.print_why(f"  {it['priority']}  {it['asset']}  {task}  [{status}{story}]  {it['why']}")
    by_asset: dict[str, list[str]] = {}
    for asset, cap, level in unassessed:
        by_asset.setdefault(asset, []).append(f"{cap} (L{level})")
    for asset, caps in by_asset.items():
        ctx.print_why(f"  not assessed  {asset}  {', '.join(caps)}")
    if unassessed:
        ctx.print_why("  (assess them, or mark them Not Applicable; --allow-unassessed leaves them "
                  "out)")
    show_overrides(ctx, standing)
    return EXIT_GATE_CLOSED


def overrides_in_force(db, assets: set[str]) -> list:
    """The overrides of checks on ``assets`` that hold now (not cleared, not expired)."""
    from datetime import UTC, datetime

    from sre_maturity.rules import evidence as ev

    now = datetime.now(UTC)
    return [o for o in db.load_overrides() if o.asset in assets and ev.active(o, now)]


def show_overrides(ctx: Context, standing: list) -> None:
    """List the overrides in force: a gate that rests on a person's word says so."""
    if not standing:
        return
    ctx.print("overrides in force (a person's answer standing in for a check's evidence):")
    for o in standing:
        ctx.print(f"  {o.asset} / {o.check}: {o.answer} until {o.until or 'cleared'} "
                  f"(by {o.by}, {o.at[:10]}: {o.reason})")
