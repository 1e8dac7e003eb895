"""Reading and validating ``checks.csv`` and ``assets.csv`` (SPEC §12): the automated
evidence's definitions and each asset's parameters.

Same header rules and messages as the other CSVs (csvfiles.py): every problem names the file,
the physical line and the column. The checks are validated against the model and the flows
they will run on, so a name, level or question that does not exist is refused before anything
is written.
"""

from __future__ import annotations

import shlex
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

from sre_maturity.rules import checkspec
from sre_maturity.rules.checkspec import AssetParams, CheckRow
from sre_maturity.store.csvfiles import FlowRow, ModelRow, _Problems, name_problem, read_rows
from sre_maturity.support.names import unknown_message

CHECKS_FILE = "checks.csv"
ASSETS_FILE = "assets.csv"

CHECK_COLUMNS = {
    "check": True,
    "capability": True,
    "level": True,
    "question": False,
    "kind": True,
    "target": True,
    "expect": False,
    "valid days": False,
    "applies to": False,
    "mode": False,
}
ASSET_COLUMNS = {"asset name": True}
MAX_VALID_DAYS = 3660  # ten years: a longer validity is a typo, not a policy

__all__ = ["ASSETS_FILE", "CHECKS_FILE", "AssetParams", "CheckRow", "param_columns",
           "read_assets", "read_checks", "read_folder"]


def read_assets(path: Path, flows: list[FlowRow]) -> list[AssetParams]:
    """Load ``assets.csv``: ``Asset Name`` (an asset of flows.csv, once) and any further
    columns, the asset's parameters."""
    rows, problems = read_rows(path, ASSET_COLUMNS, keep_all=True)
    known = {f.asset.casefold(): f.asset for f in flows}
    result: list[AssetParams] = []
    seen: dict[str, int] = {}
    if rows and "asset" in {checkspec.param_key(n) for n in rows[0][1]}:
        problems.add(1, "Asset", "the name 'asset' is taken by the {asset} placeholder (the "
                     "asset's own name); rename the column")
        problems.raise_if_any()
    for line, values in rows:
        asset = values.get("asset name", "")
        if not asset:
            problems.add(line, "Asset Name", "empty; every row needs an asset name")
            continue
        canonical = known.get(asset.casefold())
        if canonical is None:
            problems.add(line, "Asset Name", unknown_message(
                "asset", asset, known.values(), "add it to flows.csv or fix the name"))
            continue
        if canonical.casefold() in seen:
            problems.add(line, "Asset Name", f"{asset!r} has a row already (line "
                         f"{seen[canonical.casefold()]}); one row per asset")
            continue
        seen[canonical.casefold()] = line
        params = {checkspec.param_key(n): v for n, v in values.items() if n != "asset name"}
        result.append(AssetParams(canonical, params, line))
    problems.raise_if_any()
    return result


def read_folder(folder: Path, flows: list[FlowRow], model: list[ModelRow]
                ) -> tuple[list[CheckRow], list[AssetParams]]:
    """checks.csv and assets.csv of ``folder`` validated against the flows and the model
    (each an empty list when its file is absent)."""
    assets_path = folder / ASSETS_FILE
    assets = read_assets(assets_path, flows) if assets_path.exists() else []
    checks_path = folder / CHECKS_FILE
    checks = read_checks(checks_path, model, flows, param_columns(assets)) \
        if checks_path.exists() else []
    return checks, assets


def param_columns(assets: Iterable[AssetParams]) -> set[str]:
    """The parameter keys of the rows of ``assets.csv`` (every row holds every column)."""
    return {key for row in assets for key in row.params}


def read_checks(path: Path, model: list[ModelRow], flows: list[FlowRow],
                columns: Iterable[str] = ()) -> list[CheckRow]:
    """Load ``checks.csv`` and validate each row against the model, the flows and the
    parameter ``columns`` of assets.csv (their keys, :func:`checkspec.param_key`)."""
    rows, problems = read_rows(path, CHECK_COLUMNS)
    context = _Context(model, flows, {checkspec.param_key(c) for c in columns})
    result: list[CheckRow] = []
    seen: dict[str, int] = {}
    for line, v in rows:
        row = _check_row(line, v, context, problems)
        if row is None:
            continue
        first = seen.get(row.name.casefold())
        if first is not None:
            problems.add(line, "Check", f"{row.name!r} is the name of the check at line "
                         f"{first} too; check names are unique (any case)")
            continue
        seen[row.name.casefold()] = line
        result.append(row)
    problems.raise_if_any()
    return result


class _Context:
    """What a check row is validated against: the model's questions, assets, teams, flows."""

    def __init__(self, model: list[ModelRow], flows: list[FlowRow], columns: set[str]) -> None:
        self.capabilities: dict[str, str] = {}
        self.questions: dict[tuple[str, int], list[str]] = defaultdict(list)
        for m in model:
            self.capabilities.setdefault(m.capability.casefold(), m.capability)
            self.questions[(m.capability, m.level)].append(m.question)
        self.assets = {f.asset.casefold(): f.asset for f in flows}
        self.teams = {f.team.casefold(): f.team for f in flows if f.team}
        self.flows = {f.flow.casefold(): f.flow for f in flows}
        self.columns = columns


def _check_row(line: int, v: dict[str, str], ctx: _Context,
               problems: _Problems) -> CheckRow | None:
    """One validated row, or None after adding its first problem."""
    def refuse(column: str, message: str) -> None:
        problems.add(line, column, message)

    for column in ("check", "capability", "level", "kind", "target"):
        if not v.get(column):
            refuse(column.title(), "empty; this column is required")
            return None
    name = v["check"]
    bad = name_problem(name)
    if bad:
        refuse("Check", bad)
        return None
    capability = ctx.capabilities.get(v["capability"].casefold())
    if capability is None:
        refuse("Capability", unknown_message("capability", v["capability"],
                                             ctx.capabilities.values(),
                                             "add it to maturity_model.csv or fix the name"))
        return None
    levels = sorted(lv for cap, lv in ctx.questions if cap == capability)
    try:
        level = int(v["level"])
    except ValueError:
        level = 0
    if level not in levels:
        refuse("Level", f"{v['level']!r} is not a level of {capability!r} (it has levels "
               f"{levels[0]}-{levels[-1]})")
        return None
    question = _question(v.get("question", ""), ctx.questions[(capability, level)])
    if isinstance(question, str):
        refuse("Question", f"{capability} L{level}: {question}")
        return None
    kind = v["kind"].casefold()
    if kind not in checkspec.KINDS:
        refuse("Kind", f"{v['kind']!r} is not a kind of check; use one of "
               f"{', '.join(checkspec.KINDS)}")
        return None
    target = v["target"]
    problem = _target_problem(kind, target, ctx.columns)
    if problem:
        refuse("Target", problem)
        return None
    expect = v.get("expect", "")
    try:
        checkspec.parse_expect(kind, expect)
    except ValueError as exc:
        refuse("Expect", str(exc))
        return None
    raw_days = v.get("valid days", "")
    days = checkspec.DEFAULT_VALID_DAYS
    if raw_days:
        days = int(raw_days) if raw_days.isdigit() else 0
        if not 1 <= days <= MAX_VALID_DAYS:
            refuse("Valid Days", f"{raw_days!r} is not a number of days 1-{MAX_VALID_DAYS}")
            return None
    applies = _applies_to(v.get("applies to", ""), ctx)
    if isinstance(applies, str):
        refuse("Applies To", applies)
        return None
    mode = (v.get("mode", "") or "gate").casefold()
    if mode not in checkspec.MODES:
        refuse("Mode", f"{v['mode']!r} is not gate or advisory (advisory: shown, never "
               "counted)")
        return None
    return CheckRow(name, capability, level, question, kind, target, expect, days, applies,
                    mode, line)


def _question(raw: str, questions: list[str]) -> int | str:
    """The 1-based number of the question ``raw`` names among the level's ``questions``, or
    why it names none."""
    count = len(questions)
    listing = "; ".join(f"{n}. {q}" for n, q in enumerate(questions, 1))
    if not raw:
        if count == 1:
            return 1
        return (f"the level has {count} questions, so name one by its number 1-{count} or "
                f"its text: {listing}")
    if raw.isdigit():
        if 1 <= int(raw) <= count:
            return int(raw)
        return (f"{raw} is not a question number; the level has {count} "
                f"question{'' if count == 1 else 's'}: {listing}")
    folded = " ".join(raw.split()).casefold()
    for n, q in enumerate(questions, 1):
        if " ".join(q.split()).casefold() == folded:
            return n
    return f"{raw!r} is not a question of this level; write its number or text: {listing}"


def _target_problem(kind: str, target: str, columns: set[str]) -> str | None:
    """Why ``target`` cannot be the target of a ``kind`` check, or None."""
    for name in checkspec.placeholders(target):
        key = checkspec.param_key(name)
        if key == "asset" or key in columns:
            continue
        hint = unknown_message("column", key, columns).partition("; ")[2]
        return ("the placeholder {" + name + "} is not {asset} and names no column of "
                + ASSETS_FILE + (f" ({hint})" if hint else "")
                + "; add the column there, or fix the name")
    if kind == "http" and not target.casefold().startswith(("http://", "https://", "{")):
        return f"{target!r} is not an http:// or https:// URL"
    if kind == "command":
        try:
            words = shlex.split(target)
        except ValueError as exc:
            return f"cannot be split into words like a shell would ({exc}); close the quote"
        if not words:
            return "holds no command"
    if kind == "file" and (target.startswith("/") or ".." in Path(target).parts):
        return (f"{target!r} leaves the data folder; a file check's path is relative to it "
                "and stays inside")
    return None


def _applies_to(raw: str, ctx: _Context) -> tuple[str, ...] | str:
    """The canonical entries of an ``Applies To`` cell, or why one is unknown."""
    entries: list[str] = []
    for part in (p.strip() for p in raw.split(",")):
        if not part:
            continue
        prefix, colon, rest = part.partition(":")
        prefix = prefix.strip().casefold()
        if colon and prefix in ("team", "flow"):
            names = ctx.teams if prefix == "team" else ctx.flows
            found = names.get(rest.strip().casefold())
            if found is None:
                return unknown_message(prefix, rest.strip(), names.values(),
                                       f"{prefix}s come from flows.csv")
            entry = f"{prefix}:{found}"
        else:
            asset = ctx.assets.get(part.casefold())
            if asset is None:
                return unknown_message("asset", part, ctx.assets.values(),
                                       "write an asset of flows.csv, team:<Team> or "
                                       "flow:<Flow>")
            entry = asset
        if entry not in entries:
            entries.append(entry)
    return tuple(entries)
