"""Interactive ``setup``: prompt for flows and their assets, review them, then hand the rows
to :mod:`setup_data`, which validates everything and writes flows.csv, the model and the
database exactly as ``setup --from-csv`` does.

``python interactive_setup.py [--data-dir DIR]`` (the seeds' name) runs this same setup.
"""

from __future__ import annotations

import sys

from sre_maturity.render.reports import counted
from sre_maturity.store import csvfiles
from sre_maturity.support.errors import InputError, require_data_folder
from sre_maturity.support.prompts import Prompter, Quit


def ask_name(p: Prompter, prompt: str, *, allow_empty: bool = False) -> str:
    while True:
        name = p.ask(prompt)
        if not name and allow_empty:
            return ""
        if not name:
            p.write("  a name is needed")
        elif " / " in name or "," in name:
            p.write("  names may not contain ' / ' or ','")
        else:
            return name


def ask_level(p: Prompter, prompt: str, default: int) -> int:
    while True:
        raw = p.ask(prompt)
        if not raw:
            return default
        if raw.isdigit() and 1 <= int(raw) <= 5:
            return int(raw)
        p.write("  type a level from 1 to 5 (empty for the default)")


Row = tuple[str, str, str, int]  # flow, asset, team, target level


def collect_flows(p: Prompter, rows: list[Row] | None = None,
                  previous: list[Row] | None = None) -> list[Row]:
    """Ask for flows, then each flow's assets, teams and target levels; returns ``rows`` with
    the answers merged in (an asset entered again in a flow gets the new team and target).
    ``previous``: the rows of a flows.csv being replaced, whose teams and targets are offered
    as the defaults."""
    rows = list(rows or [])
    teams = {r[1]: r[2] for r in rows}
    old_teams = {r[1].casefold(): r[2] for r in previous or [] if r[2]}
    old_targets = {(r[0].casefold(), r[1].casefold()): r[3] for r in previous or []}
    # An asset named again in any case is the one already entered, spelled as first entered.
    spelling: dict[str, str] = {}
    for r in rows:
        spelling.setdefault(r[1].casefold(), r[1])
    entered: set[str] = set()
    p.write("Enter the application flows (e.g. Login, Checkout); an empty name finishes.")
    while True:
        flow = ask_name(p, "flow name (empty to finish): ", allow_empty=True)
        if not flow:
            if rows:
                return rows
            p.write("  at least one flow is needed")
            continue
        known = {r[0].casefold(): r[0] for r in rows}
        if flow.casefold() in entered:
            p.write(f"  flow {flow!r} is already entered")
            continue
        entered.add(flow.casefold())
        if flow.casefold() in known:
            flow = known[flow.casefold()]
            in_flow = [r[1] for r in rows if r[0] == flow]
            p.write(f"  {flow} already has {', '.join(in_flow)}; assets named again get the "
                    "new target")
        assets = [spelling.setdefault(a.casefold(), a) for a in ask_assets(p, flow)]
        for asset in assets:
            team = teams.get(asset)
            if team is None:
                before = old_teams.get(asset.casefold())
                if before:
                    team = p.ask(f"  team owning {asset} [{before}] ('-' for none): ") or before
                    team = "" if team == "-" else team
                else:
                    team = p.ask(f"  team owning {asset} (optional): ")
                teams[asset] = team
            old = next((r for r in rows if (r[0], r[1]) == (flow, asset)), None)
            default = old[3] if old else old_targets.get((flow.casefold(), asset.casefold()), 3)
            target = ask_level(p, f"  target level for {asset} in {flow} [{default}]: ", default)
            if old:
                rows[rows.index(old)] = (flow, asset, team, target)
                if old[3] != target:
                    p.write(f"  {asset} in {flow}: target {old[3]} → {target}")
            else:
                rows.append((flow, asset, team, target))


def ask_assets(p: Prompter, flow: str) -> list[str]:
    while True:
        raw = p.ask(f"  assets in {flow} (comma-separated): ")
        names = [a.strip() for a in raw.split(",") if a.strip()]
        bad = [a for a in names if " / " in a]
        folded = [a.casefold() for a in names]  # names that differ only in case are one
        dupes = {a for a in names if folded.count(a.casefold()) > 1}
        if not names:
            p.write("  at least one asset is needed")
        elif bad:
            p.write(f"  asset names may not contain ' / ': {', '.join(bad)}")
        elif dupes:
            p.write(f"  listed twice: {', '.join(sorted(dupes))}")
        else:
            return names


REVIEW = "(w)rite it, (e)dit a row, (d)elete a row, (a)dd flows, or (q)uit writing nothing? "


def review(p: Prompter, rows: list[Row]) -> list[Row]:
    """Show what flows.csv will hold; let the user fix rows before anything is written."""
    rows = list(rows)
    shown: list[Row] | None = None
    while True:
        if rows != shown:  # the table again only when a row changed, not after a typo
            p.write(f"flows.csv will hold {counted(len(rows), 'row')}:")
            p.write("       flow / asset / team / target level")
            for i, (flow, asset, team, target) in enumerate(rows, 1):
                p.write(f"  {i:>3}) {flow} / {asset} / {team or '-'} / {target}")
            shown = list(rows)
        choice = p.ask(REVIEW + "[w/e/d/a/q] ").casefold()
        if choice == "w":
            if rows:
                return rows
            p.write("  at least one row is needed; (a)dd flows")
        elif choice == "q":
            raise Quit
        elif choice == "a":
            rows = collect_flows(p, rows)
        elif choice in ("e", "d"):
            index = ask_row(p, len(rows))
            if index is None:
                continue
            if choice == "d":
                p.write(f"  deleted {rows[index][0]} / {rows[index][1]}")
                del rows[index]
            else:
                edited = edit_row(p, rows[index])
                clash = [r for i, r in enumerate(rows) if i != index and
                         (r[0].casefold(), r[1].casefold()) ==
                         (edited[0].casefold(), edited[1].casefold())]
                if clash:
                    p.write(f"  {edited[1]} is already in {edited[0]} (row "
                            f"{rows.index(clash[0]) + 1}); edit or delete that row instead")
                else:
                    rows[index] = edited
        else:
            p.write("  type w, e, d, a or q")


def ask_row(p: Prompter, count: int) -> int | None:
    raw = p.ask(f"  row number (1-{count}, empty to go back): ")
    if raw.isdigit() and 1 <= int(raw) <= count:
        return int(raw) - 1
    if raw:
        p.write(f"  no row {raw}")
    return None


def edit_row(p: Prompter, row: Row) -> Row:
    """Ask each field again; empty keeps the current value."""
    flow = ask_name(p, f"  flow [{row[0]}]: ", allow_empty=True) or row[0]
    asset = ask_name(p, f"  asset [{row[1]}]: ", allow_empty=True) or row[1]
    team = p.ask(f"  team [{row[2]}] ('-' for none): ") or row[2]
    target = ask_level(p, f"  target level [{row[3]}]: ", row[3])
    return flow, asset, "" if team == "-" else team, target


def run(ctx) -> list[Row] | None:
    """Prompt for the flows; return the rows flows.csv is to hold (None: keep it as it is).

    Nothing is written here: :func:`setup_data.apply` validates everything, then writes.
    """
    if not sys.stdin.isatty():
        raise InputError("setup asks questions and needs a terminal; to build from the CSVs "
                         "instead, run setup --from-csv")
    folder = ctx.data_dir
    require_data_folder(folder)
    # Refuse before the questions, not after them, when the commit would fail.
    ctx.require_identity(creating_repo=True)
    p = _prompter(ctx)
    flows_path = folder / csvfiles.FLOWS_FILE
    existing: list[Row] = []
    if flows_path.exists():
        current = csvfiles.read_flows(flows_path)
        existing = [(r.flow, r.asset, r.team, r.target_level) for r in current]
        p.write(f"{flows_path.name} has {len(existing)} rows in "
                f"{len({r[0] for r in existing})} flows.")
        choice = ""
        while True:
            choice = p.ask("(k)eep it, (a)dd flows to it, or (r)eplace it? [k/a/r] ").casefold()
            if choice in ("k", "a", "r"):
                break
            p.write("  type k, a or r")
        if choice == "k":
            p.write(f"kept the existing {flows_path.name}")
            return None
        if choice == "r":  # a new list; the old teams and targets are offered as defaults
            return review(p, collect_flows(p, [], previous=existing))
    return review(p, collect_flows(p, existing))


def review_refused(ctx, rows: list[Row], problem: str) -> list[Row]:
    """Setup refused the rows (``problem``): say why and go back to the review, keeping
    everything typed; returns the rows to try again (Quit: the user gave up)."""
    p = _prompter(ctx)
    p.write(f"not written: {problem}")
    p.write("fix the rows below, or (q)uit writing nothing")
    return review(p, rows)


def _prompter(ctx) -> Prompter:
    return Prompter(write=lambda text: print(text, file=ctx.term, flush=True))


def main(argv: list[str] | None = None) -> int:
    """``python interactive_setup.py [--data-dir DIR] [options]``: the interactive setup.

    The script hands over to the command-line entry (``sre_tracker.py setup ...``) as a
    program, not as an imported module: the library layers never depend on the entry point.
    """
    import runpy

    args = sys.argv[1:] if argv is None else argv
    saved = sys.argv
    sys.argv = ["sre_tracker.py", "setup", *args]
    try:
        runpy.run_module("sre_tracker", run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        return int(exc.code or 0)
    finally:
        sys.argv = saved
    return 0  # pragma: no cover - sre_tracker's __main__ always exits


if __name__ == "__main__":
    sys.exit(main())
