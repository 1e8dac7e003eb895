"""Reading and validating the input CSVs: flows.csv, maturity_model.csv, assessments.csv.

Headers match case- and space-insensitively (``asset_name`` = ``Asset Name``); files from Excel
(UTF-8 BOM, CRLF, ``;`` separators) load. Every problem names file, physical line and column.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import IO, Any, TextIO

from sre_maturity.rules.maturity import MAX_LEVEL, OWNERS, PRIORITIES
from sre_maturity.support.errors import InputError

FLOWS_FILE = "flows.csv"
MODEL_FILE = "maturity_model.csv"
ASSESSMENTS_FILE = "assessments.csv"

FLOW_COLUMNS = {"flow": True, "asset name": True, "team": False, "target level": False}
MODEL_COLUMNS = {
    "category": True,
    "capability": True,
    "level": True,
    "criteria": True,
    "question": True,
    "owner": False,
    "priority": False,
    "required for go live": False,
    "target milestone": False,
}
ASSESSMENT_COLUMNS = {
    "asset name": True,
    "capability": True,
    "level": True,
    "notes": False,
    "assessed by": False,
    "assessed at": False,
    "not applicable reason": False,
}
_YES = {"yes", "y", "true", "1", "x"}
_NO = {"no", "n", "false", "0", ""}


@dataclass(frozen=True)
class FlowRow:
    line: int
    flow: str
    asset: str
    team: str
    target_level: int


@dataclass(frozen=True)
class ModelRow:
    line: int
    category: str
    capability: str
    level: int
    criteria: str
    question: str
    owner: str
    priority: str
    go_live: bool
    milestone: str


@dataclass(frozen=True)
class AssessmentRow:
    line: int
    asset: str
    capability: str
    level: int | None  # None: Not Applicable
    notes: str
    assessed_by: str
    assessed_at: str
    na_reason: str


def normalise_header(name: str) -> str:
    """``" Asset_Name "`` -> ``"asset name"``."""
    return re.sub(r"\s+", " ", name.replace("_", " ").strip().casefold())


class _Problems:
    """Collects validation errors; raises them as one line (first error, and how many more)."""

    def __init__(self, path: Path) -> None:
        self.name = path.name
        self.items: list[str] = []

    def add(self, line: int, column: str | None, message: str) -> None:
        where = f"{self.name}:{line}" + (f", column '{column}'" if column else "")
        self.items.append(f"{where}: {message}")

    def raise_if_any(self) -> None:
        if self.items:
            more = f" (and {len(self.items) - 1} more problems)" if len(self.items) > 1 else ""
            raise InputError(self.items[0] + more)


def _decode(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        line_start = raw.rfind(b"\n", 0, exc.start) + 1
        prefix = raw[line_start:exc.start].decode("utf-8", "replace")
        header = raw.split(b"\n", 1)[0].decode("utf-8-sig", "replace")
        sep = ";" if header.count(";") > header.count(",") else ","
        names = [h.strip() for h in header.split(sep)]
        index = prefix.count(sep)
        column = f", column '{names[index]}'" if line > 1 and index < len(names) else ""
        raise InputError(
            f"{path.name}:{line}{column}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at "
            f"character {len(prefix) + 1}); save the file as UTF-8 (Excel: 'CSV UTF-8')"
        ) from None


def read_rows(
    path: Path, columns: dict[str, bool], *, keep_all: bool = False
) -> tuple[list[tuple[int, dict[str, str]]], _Problems]:
    """Read a CSV into (line, {normalised column: stripped value}) pairs: the ``columns``
    known, or (``keep_all``) every named column.

    Checks encoding, the header (required columns present, none twice) and ragged rows.
    """
    text = _decode(path)
    problems = _Problems(path)
    _refuse_conflict_markers(path, text)
    first_line = text.split("\n", 1)[0]
    delimiter = ";" if first_line.count(";") > first_line.count(",") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        header = []
    if not any(h.strip() for h in header):
        raise InputError(f"{path.name}:1: the file is empty (or its first line is); it needs a "
                         "header row") from None
    names = [normalise_header(h) for h in header]
    seen: set[str] = set()
    for n, original in zip(names, header, strict=True):
        if n and n in seen:
            problems.add(1, original.strip(), "column appears twice")
        seen.add(n)
    missing = [c for c, required in columns.items() if required and c not in seen]
    if missing:
        pretty = ", ".join(f"'{_title(c)}'" for c in missing)
        problems.add(1, None, f"missing required column {pretty}; the header has {header}")
    problems.raise_if_any()

    rows: list[tuple[int, dict[str, str]]] = []
    start = reader.line_num + 1
    last: tuple[int, list[str]] | None = None
    try:
        for record in reader:
            line = start
            start = reader.line_num + 1
            last = (line, record)
            if not any(cell.strip() for cell in record):
                continue
            if len(record) > len(names) and any(c.strip() for c in record[len(names):]):
                problems.add(line, None, f"{len(record)} cells but the header has {len(names)}")
                continue
            other = "," if delimiter == ";" else ";"
            if len(record) == 1 < len(names) and other in record[0]:
                # A line pasted from another file: say so rather than "column ...: empty".
                problems.add(line, None, f"the row has one column, but the file separates "
                             f"columns with '{delimiter}' (its header does) and this line uses "
                             f"'{other}'; write it with '{delimiter}'")
                continue
            values = {n: (record[i].strip() if i < len(record) else "") for i, n in
                      enumerate(names) if n in columns or (keep_all and n)}
            rows.append((line, values))
    except csv.Error as exc:
        problems.add(reader.line_num, None, f"malformed CSV ({exc})")
    if last is not None and _quote_left_open(text, last[0], delimiter):
        # The csv module reads an unclosed quote to the end of the file as one cell.
        line, record = last
        column = header[len(record) - 1].strip() if len(record) <= len(header) else None
        problems.add(line, column, 'a quoted cell opened on this line is never closed (a " is '
                     "missing)")
        rows = [r for r in rows if r[0] != line]
    return rows, problems


def _quote_left_open(text: str, line: int, delimiter: str) -> bool:
    """True when the record starting on physical ``line`` (the last one) ends inside a quoted
    cell: a quote opened and never closed."""
    tail = text.split("\n", line - 1)[-1] if line > 1 else text
    try:
        for _record in csv.reader(io.StringIO(tail, newline=""), delimiter=delimiter,
                                  strict=True):
            pass
    except csv.Error as exc:
        return "end of data" in str(exc)
    return False


def _refuse_conflict_markers(path: Path, text: str) -> None:
    """A CSV that git left mid-merge is named as such, not reported as odd cells."""
    for number, raw in enumerate(text.split("\n"), 1):
        if raw.startswith(("<<<<<<<", ">>>>>>>")) or raw.rstrip("\r") == "=======":
            raise InputError(
                f"{path.name}:{number}: the file has git merge-conflict markers ({raw[:7]}); "
                "resolve the conflict (keep the right lines, delete the marker lines), "
                "then run again")


# Characters a name must not hold: control characters (NUL, CR, ESC, ...). Direction marks
# (RLO, ...) may be real text in right-to-left names; terminals are shown them escaped
# (reports.visible) and the pages escape them.
_NAME_BAD = re.compile("[\x00-\x1f\x7f-\x9f]")


def name_problem(value: str) -> str | None:
    """Why ``value`` cannot be a name (flow, asset, team, category, capability), or None."""
    found = _NAME_BAD.search(value)
    if found is None:
        return None
    return (f"holds the control character U+{ord(found.group()):04X} at character "
            f"{found.start() + 1}; names must be plain text on one line")


def _title(column: str) -> str:
    return " ".join(w.capitalize() for w in column.split())


def _int_in(value: str, low: int, high: int) -> int | None:
    try:
        number = int(float(value)) if re.fullmatch(r"\d+(\.0+)?", value) else int(value)
    except ValueError:
        return None
    return number if low <= number <= high else None


def read_flows(path: Path) -> list[FlowRow]:
    """Load flows.csv: one row per asset in a flow."""
    rows, problems = read_rows(path, FLOW_COLUMNS)
    result: list[FlowRow] = []
    seen: dict[tuple[str, str], int] = {}
    for line, v in rows:
        flow, asset = v.get("flow", ""), v.get("asset name", "")
        if not flow:
            problems.add(line, "Flow", "empty; every row needs a flow name")
            continue
        if not asset:
            problems.add(line, "Asset Name", "empty; every row needs an asset name")
            continue
        if " / " in asset or "\n" in asset or "\n" in flow:
            column = "Flow" if "\n" in flow else "Asset Name"
            problems.add(line, column, "must be one line without ' / ' (it separates item keys)")
            continue
        bad = [(c, p) for c, p in (("Flow", name_problem(flow)), ("Asset Name", name_problem(
            asset)), ("Team", name_problem(v.get("team", "")))) if p]
        if bad:
            problems.add(line, *bad[0])
            continue
        raw_target = v.get("target level", "")
        target = 3
        if raw_target:
            parsed = _int_in(raw_target, 1, MAX_LEVEL)
            if parsed is None:
                problems.add(line, "Target Level", f"{raw_target!r} is not a level 1-5")
                continue
            target = parsed
        key = (flow.casefold(), asset.casefold())
        if key in seen:
            problems.add(line, "Asset Name",
                         f"{asset!r} is listed twice in flow {flow!r} (first at line {seen[key]})")
            continue
        seen[key] = line
        result.append(FlowRow(line, flow, asset, v.get("team", ""), target))
    if not result and not problems.items:
        problems.add(2, None, "no rows; add one row per asset in a flow")
    problems.raise_if_any()
    return one_spelling(result)


def one_spelling(rows: list[FlowRow]) -> list[FlowRow]:
    """Names that differ only in case are one name (SPEC §11): every flow and asset takes the
    spelling of its first row, so ``Web-Frontend`` in Login is the ``web-frontend`` of
    Checkout."""
    flows: dict[str, str] = {}
    assets: dict[str, str] = {}
    return [dataclasses.replace(r, flow=flows.setdefault(r.flow.casefold(), r.flow),
                                asset=assets.setdefault(r.asset.casefold(), r.asset))
            for r in rows]


def parse_yes_no(value: str) -> bool | None:
    v = value.strip().casefold()
    if v in _YES:
        return True
    if v in _NO:
        return False
    return None


def read_model(path: Path) -> list[ModelRow]:
    """Load maturity_model.csv: one row per question."""
    rows, problems = read_rows(path, MODEL_COLUMNS)
    result: list[ModelRow] = []
    category_of: dict[str, tuple[str, int]] = {}
    seen_questions: dict[tuple[str, int, str], int] = {}
    for line, v in rows:
        bad = False
        for col in ("category", "capability", "criteria", "question"):
            if not v.get(col):
                problems.add(line, _title(col), "empty; this column is required")
                bad = True
        if bad:
            continue
        category, capability = v["category"], v["capability"]
        if " / " in capability or "\n" in capability or "\n" in category:
            problems.add(line, "Capability",
                         "must be one line without ' / ' (it separates item keys)")
            continue
        named = [(c, p) for c, p in (("Category", name_problem(category)),
                                     ("Capability", name_problem(capability))) if p]
        if named:
            problems.add(line, *named[0])
            continue
        level = _int_in(v.get("level", ""), 1, MAX_LEVEL)
        if level is None:
            problems.add(line, "Level", f"{v.get('level', '')!r} is not a level 1-5")
            continue
        owner = v.get("owner", "") or "Asset"
        owner_match = next((o for o in OWNERS if o.casefold() == owner.casefold()), None)
        if owner_match is None:
            problems.add(line, "Owner", f"{owner!r} is not one of {', '.join(OWNERS)}")
            continue
        priority = v.get("priority", "").upper()
        if priority and priority not in PRIORITIES:
            problems.add(line, "Priority", f"{v['priority']!r} is not one of P1-P4")
            continue
        go_live = parse_yes_no(v.get("required for go live", ""))
        if go_live is None:
            problems.add(line, "Required for Go Live",
                         f"{v['required for go live']!r} is not Yes or No")
            continue
        previous = category_of.get(capability.casefold())
        if previous and previous[0] != category:
            problems.add(line, "Category",
                         f"capability {capability!r} is under {previous[0]!r} at line "
                         f"{previous[1]}; a capability belongs to one category")
            continue
        category_of.setdefault(capability.casefold(), (category, line))
        qkey = (capability.casefold(), level, v["question"].casefold())
        if qkey in seen_questions:
            problems.add(line, "Question",
                         f"duplicate of line {seen_questions[qkey]} ({capability} L{level})")
            continue
        seen_questions[qkey] = line
        result.append(ModelRow(line, category, capability, level, v["criteria"], v["question"],
                               owner_match, priority, go_live, v.get("target milestone", "")))
    if not result and not problems.items:
        problems.add(2, None, "no rows; the model needs at least one question")
    _check_level_gaps(result, problems)
    problems.raise_if_any()
    return result


def _check_level_gaps(rows: list[ModelRow], problems: _Problems) -> None:
    """A capability's levels run 1..N with no gap; the first row past a gap is the error."""
    levels: dict[str, dict[int, int]] = {}  # capability -> level -> first line
    names: dict[str, str] = {}
    for r in rows:
        key = r.capability.casefold()
        names.setdefault(key, r.capability)
        levels.setdefault(key, {}).setdefault(r.level, r.line)
    for key, lines in levels.items():
        have = sorted(lines)
        missing = [lv for lv in range(1, have[-1]) if lv not in lines]
        if not missing:
            continue
        after = min(lv for lv in have if lv > missing[0])
        gap = f"level {missing[0]}" if len(missing) == 1 else f"levels {_spans(missing)}"
        problems.add(lines[after], "Level",
                     f"capability {names[key]!r} has levels {_spans(have)}; levels run 1..N with "
                     f"no gap, so add {gap} or renumber")
    problems.items.sort(key=_line_of)


def _spans(levels: list[int]) -> str:
    """[1, 2, 3, 5] -> '1-3 and 5'."""
    spans: list[list[int]] = []
    for lv in levels:
        if spans and lv == spans[-1][-1] + 1:
            spans[-1].append(lv)
        else:
            spans.append([lv])
    parts = [f"{s[0]}-{s[-1]}" if len(s) > 1 else str(s[0]) for s in spans]
    return ", ".join(parts[:-1]) + f" and {parts[-1]}" if len(parts) > 1 else parts[0]


@lru_cache(maxsize=4096)  # bulk imports repeat the same few dates
def parse_date(value: str) -> str | None:
    """An ISO date or date-time -> ISO string ('YYYY-MM-DD' or full timestamp); None if bad."""
    value = value.strip()
    try:
        if len(value) == 10:
            return date.fromisoformat(value).isoformat()
        return datetime.fromisoformat(value.replace("Z", "+00:00")).isoformat(timespec="seconds")
    except ValueError:
        return None


def parse_until(text: str | None, today: str) -> str:
    """An expiry typed by a person (``--until``, a prompt): an ISO date not before ``today``,
    or "" for none."""
    if not text:
        return ""
    try:
        value = date.fromisoformat(text.strip()).isoformat()
    except ValueError:
        raise InputError(f"--until {text!r} is not a date; use YYYY-MM-DD") from None
    if value < today:
        raise InputError(f"--until {value} is in the past; give a future date or none")
    return value


def read_assessments(path: Path) -> list[AssessmentRow]:
    """Load assessments.csv (bulk levels): Level 0-5 or N/A (with a reason)."""
    rows, problems = read_rows(path, ASSESSMENT_COLUMNS)
    result: list[AssessmentRow] = []
    seen: dict[tuple[str, str], int] = {}
    for line, v in rows:
        asset, capability = v.get("asset name", ""), v.get("capability", "")
        if not asset:
            problems.add(line, "Asset Name", "empty; every row needs an asset name")
            continue
        if not capability:
            problems.add(line, "Capability", "empty; every row needs a capability")
            continue
        raw = v.get("level", "")
        reason = v.get("not applicable reason", "")
        level: int | None
        if raw.replace("/", "").casefold() == "na":
            level = None
            if not reason:
                problems.add(line, "Not Applicable Reason",
                             "empty; a Not Applicable mark needs a reason")
                continue
        else:
            level = _int_in(raw, 0, MAX_LEVEL)
            if level is None:
                problems.add(line, "Level", f"{raw!r} is not a level 0-5 or N/A")
                continue
        at = v.get("assessed at", "")
        when = parse_date(at) if at else ""
        if when is None:
            problems.add(line, "Assessed At", f"{at!r} is not an ISO date (YYYY-MM-DD)")
            continue
        key = (asset.casefold(), capability.casefold())
        if key in seen:
            problems.add(line, "Capability",
                         f"{asset} / {capability} appears twice (first at line {seen[key]})")
            continue
        seen[key] = line
        result.append(AssessmentRow(line, asset, capability, level, v.get("notes", ""),
                                    v.get("assessed by", ""), when,
                                    reason))
    problems.raise_if_any()
    return result


def check_assessment_names(rows: list[AssessmentRow], flows: list[FlowRow],
                           model: list[ModelRow], source_name: str = ASSESSMENTS_FILE) -> None:
    """Every asset and capability of ``rows`` is one flows.csv and the model define (any case);
    else InputError naming file, line, column and the close matches."""
    from sre_maturity.support.names import unknown_message

    assets = {r.asset.casefold(): r.asset for r in flows}
    caps = {r.capability.casefold(): r.capability for r in model}
    problems = _Problems(Path(source_name))
    for row in rows:
        if row.asset.casefold() not in assets:
            problems.add(row.line, "Asset Name", unknown_message(
                "asset", row.asset, assets.values(), "add it to flows.csv or fix the name"))
        elif row.capability.casefold() not in caps:
            problems.add(row.line, "Capability", unknown_message(
                "capability", row.capability, caps.values(),
                "add it to maturity_model.csv or fix the name"))
    problems.raise_if_any()


def flow_rows(rows: list[tuple[str, str, str, int]]) -> list[FlowRow]:
    """Rows as write_flows writes them (header on line 1), e.g. from the setup prompts."""
    return one_spelling([FlowRow(line, flow, asset, team, target)
                         for line, (flow, asset, team, target) in enumerate(rows, 2)])


def write_flows(path: Path, rows: list[tuple[str, str, str, int]]) -> None:
    """Write flows.csv atomically (temporary file, then rename)."""
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["Flow", "Asset Name", "Team", "Target Level"])
    writer.writerows(rows)
    atomic_write(path, buf.getvalue())


# What makes csv.writer quote a cell (QUOTE_MINIMAL, "," and '"', lineterminator "\r\n").
_NEEDS_QUOTES = re.compile('[,"\r\n]')


def csv_record(cells: Sequence[str]) -> str:
    """One CSV record, CRLF-terminated, exactly as ``csv.writer(stream,
    lineterminator="\\r\\n")`` writes it: a cell holding a comma, a quote or a line break is
    quoted, with its quotes doubled.

    csv.writer copies every character through its state machine one by one; for long cells
    (rally_import.csv's descriptions: 54k of ~450 characters at 2,000 assets) these string
    methods are about three times faster. tests/test_csvfiles.py checks the two agree.
    """
    if len(cells) == 1 and cells[0] == "":
        return '""\r\n'  # a lone empty cell is quoted, or the record would be a blank line
    return ",".join(map(csv_cell, cells)) + "\r\n"


def csv_cell(cell: str) -> str:
    """One cell as :func:`csv_record` writes it among others: quoted, its quotes doubled,
    when it holds a comma, a quote or a line break."""
    return '"' + cell.replace('"', '""') + '"' if _NEEDS_QUOTES.search(cell) else cell


def atomic_write(path: Path, text: str) -> None:
    """Write text to path via a temporary file so a crash never leaves half a file."""
    with atomic_stream(path) as handle:
        handle.write(text)


@contextmanager
def atomic_stream(path: Path) -> Iterator[TextIO]:
    """A file written through a temporary sibling and renamed over ``path`` when complete:
    a crash or an error never leaves half a file.

    The temporary file's name is unique (``.<name>.<random>.tmp``, ignored by the data folder's
    .gitignore), so two writers never share one; it takes the mode the file has or would get.
    A failure (a full disk, a read-only folder) names ``path``, never the temporary file.
    """
    with _atomic(path, lambda fd: open(fd, "w", encoding="utf-8", newline="")) as fh:
        yield fh


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` (text already encoded) to ``path`` as :func:`atomic_stream` does."""
    with _atomic(path, lambda fd: open(fd, "wb")) as fh:
        fh.write(data)


@contextmanager
def _atomic(path: Path, opener: Callable[[int], IO[Any]]) -> Iterator[Any]:
    import tempfile

    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    try:
        with opener(fd) as fh:
            yield fh
        os.chmod(tmp, _mode_for(path))
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        if exc.filename in (None, tmp):
            raise OSError(exc.errno, exc.strerror, str(path)) from None
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _mode_for(path: Path) -> int:
    """The mode ``path`` has, or a new file would get (mkstemp makes its file 0600)."""
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask


def _line_of(problem: str) -> int:
    """The line number in a problem text (``file:LINE: ...``), for sorting problems."""
    found = re.search(r":(\d+)", problem)
    return int(found.group(1)) if found else 0
