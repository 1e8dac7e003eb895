"""Interactive ``setup``: prompt for flows and their assets, write flows.csv and the model.

The database itself is then built by :mod:`setup_data`, exactly as ``setup --from-csv`` does.
"""

from __future__ import annotations

import sys

import csvfiles
from errors import InputError
from prompts import Prompter
from setup_data import ensure_model


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


def collect_flows(p: Prompter) -> list[tuple[str, str, str, int]]:
    """Ask for flows, then each flow's assets, teams and target levels."""
    rows: list[tuple[str, str, str, int]] = []
    teams: dict[str, str] = {}
    p.write("Enter the application flows (e.g. Login, Checkout); an empty name finishes.")
    while True:
        flow = ask_name(p, "flow name (empty to finish): ", allow_empty=True)
        if not flow:
            if rows:
                return rows
            p.write("  at least one flow is needed")
            continue
        if any(r[0].casefold() == flow.casefold() for r in rows):
            p.write(f"  flow {flow!r} is already entered")
            continue
        assets: list[str] = []
        while not assets:
            raw = p.ask(f"  assets in {flow} (comma-separated): ")
            names = [a.strip() for a in raw.split(",") if a.strip()]
            bad = [a for a in names if " / " in a]
            dupes = {a for a in names if names.count(a) > 1}
            if not names:
                p.write("  at least one asset is needed")
            elif bad:
                p.write(f"  asset names may not contain ' / ': {', '.join(bad)}")
            elif dupes:
                p.write(f"  listed twice: {', '.join(sorted(dupes))}")
            else:
                assets = names
        for asset in assets:
            team = teams.get(asset)
            if team is None:
                team = p.ask(f"  team owning {asset} (optional): ")
                teams[asset] = team
            target = ask_level(p, f"  target level for {asset} in {flow} [3]: ", 3)
            rows.append((flow, asset, team, target))


def run(ctx, *, keep_model: bool = True) -> None:
    """Prompt, then write flows.csv and (unless kept) the default maturity_model.csv."""
    if not sys.stdin.isatty():
        raise InputError("setup asks questions and needs a terminal; to build from the CSVs "
                         "instead, run setup --from-csv")
    folder = ctx.data_dir
    if not folder.is_dir():
        raise InputError(f"data folder {folder} does not exist; create it or pass --data-dir")
    p = Prompter(write=lambda text: print(text, file=ctx.out, flush=True))
    flows_path = folder / csvfiles.FLOWS_FILE
    existing: list[tuple[str, str, str, int]] = []
    if flows_path.exists():
        current = csvfiles.read_flows(flows_path)
        existing = [(r.flow, r.asset, r.team, r.target_level) for r in current]
        p.write(f"{flows_path.name} has {len(existing)} rows in "
                f"{len({r[0] for r in existing})} flows.")
        choice = ""
        while choice not in ("k", "a", "r"):
            choice = p.ask("(k)eep it, (a)dd flows to it, or (r)eplace it? [k/a/r] ").casefold()
        if choice == "r":
            existing = []
        if choice == "k":
            p.write(f"kept the existing {flows_path.name}")
        else:
            rows = collect_flows(p)
            csvfiles.write_flows(flows_path, existing + [
                r for r in rows if (r[0], r[1]) not in {(e[0], e[1]) for e in existing}])
            p.write(f"wrote {flows_path}")
    else:
        csvfiles.write_flows(flows_path, collect_flows(p))
        p.write(f"wrote {flows_path}")
    if ensure_model(folder, replace=not keep_model):
        p.write(f"wrote the default {csvfiles.MODEL_FILE} (edit it to fit your teams)")
    else:
        p.write(f"kept the existing {csvfiles.MODEL_FILE}")
