"""The maturity matrix as pages to look at: ``sre_matrix.html`` (one self-contained file) and
the matrix table for Confluence (cells coloured with Confluence's cell highlight).

``sre_matrix.html`` holds, per flow, the assets x categories heatmap (level printed in every
cell, RAG as colour *and* letter, Not Assessed hatched, Not Applicable marked), the flow's
weakest-link row, its counts, its open go-live items and its trend (share of go-live
capabilities met, week by week, as an inline SVG line). Inline CSS and SVG only: no script, no
font, no image, no link to anything outside the file, so it opens from disk, from a mail or a
build artefact, and prints. Everything from the data is HTML-escaped.

Functions here are pure: they take the read model (matrix rows, flow roll-ups, items) and
yield text; writing the file is the caller's job (:mod:`pages`).
"""

from __future__ import annotations

import html
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import lru_cache
from typing import Any, NamedTuple

from sre_maturity.render import reports, storage_format
from sre_maturity.rules import evidence as ev
from sre_maturity.rules import maturity as mt

HTML_FILE = "sre_matrix.html"
CONFLUENCE_TITLE = "SRE Maturity Matrix"
TREND_WEEKS = 12
FOLD_ITEMS = 50  # a flow's go-live item list longer than this starts folded

# Confluence's cell highlight, as each editor stores it (reference/confluence.md §6, marked
# unconfirmed there): Data Center a class plus a colour name, Cloud a hex colour. The one place
# these values live; the fakes and tests read them from here.
HIGHLIGHTS: dict[str, dict[str | None, dict[str, str]]] = {
    "datacenter": {
        mt.RED: {"class": "highlight-red", "data-highlight-colour": "red"},
        mt.AMBER: {"class": "highlight-yellow", "data-highlight-colour": "yellow"},
        mt.GREEN: {"class": "highlight-green", "data-highlight-colour": "green"},
        None: {"class": "highlight-grey", "data-highlight-colour": "grey"},
    },
    "cloud": {
        mt.RED: {"data-highlight-colour": "#ffebe6"},
        mt.AMBER: {"data-highlight-colour": "#fffae6"},
        mt.GREEN: {"data-highlight-colour": "#e3fcef"},
        None: {"data-highlight-colour": "#f4f5f7"},
    },
}
NOT_ASSESSED_TEXT = "–"
NOT_APPLICABLE_TEXT = "n/a"
# The Confluence matrix table's fixed columns; one column per category follows.
CONFLUENCE_COLUMNS = ["Flow", "Asset Name", "Team", "Target Level"]
# How the tool recognises its table under the heading (a human table there is left alone).
SIGNATURE = ("Flow", "Asset Name", "Target Level")
# What a row of the table on the page is matched by (a person's columns follow their row).
KEY = ("Flow", "Asset Name")
WEAKEST_LINK = "weakest link"  # the Asset Name cell of a flow's roll-up row
# The last row of the table on Confluence: what the cells mean (sre_matrix.html's legend).
LEGEND_LABEL = "Legend"
LEGEND = (
    "A cell: the asset's weakest level (0–5) in the category and its RAG — Red: a go-live "
    "level is missing; Amber: below target; Green: at target.\n"
    f"* some capabilities of the category still to assess; {NOT_ASSESSED_TEXT} not assessed "
    f"(no items yet; not a 0); {NOT_APPLICABLE_TEXT} not applicable.\n"
    f"A flow's {WEAKEST_LINK} row: the lowest level among its assessed assets; with * when "
    "some asset is not assessed, and then never Green."
)

# The legend row for the evidence marks (SPEC §12), its own row so the first one's text (what
# the tool recognises its row by) stays as pages already hold it.
MARKS_LEGEND = "After a level: " + "; ".join(f"{m} {text}" for m, text in ev.MARKS.items())


@lru_cache(maxsize=65536)  # names, owners, criteria and reasons recur on every row
def _e(value: object) -> str:
    """HTML-escaped text (quotes too, so it is safe in attributes), control characters and
    bidirectional overrides out (reports.clean_text)."""
    return html.escape(reports.clean_text(value), quote=True)


# ---------------------------------------------------------------------------- cells
class Mark(NamedTuple):
    """What one heatmap cell shows: text, RAG (None unless assessed), kind, tooltip (a tuple:
    one is made for each of 10^4 cells)."""

    text: str
    rag: str | None
    kind: str  # "assessed", "partial", "not-assessed", "not-applicable", "empty"
    detail: str = ""


def category_mark(entries: Sequence[mt.MatrixRow]) -> Mark:
    """One asset's capabilities in one category: weakest level and worst RAG.

    Not Assessed when none is assessed, Not Applicable when all are; ``*`` after the level
    when some capabilities of the category are still to assess.
    """
    if not entries:
        return Mark("", None, "empty")
    detail = "; ".join([_entry_label(e) for e in entries])
    # One pass: the lowest level and worst RAG of the assessed ones, and what the others are.
    levels, rags, unassessed, applicable = [], [], False, False
    for e in entries:
        state = e.state
        if state == mt.ASSESSED:
            if e.level is not None:
                levels.append(e.level)
            rags.append(e.rag)
        elif state == mt.NOT_ASSESSED:
            unassessed = True
        elif state != mt.NOT_APPLICABLE:
            applicable = True
    if not rags:  # nothing assessed
        if not unassessed and not applicable:
            return Mark(NOT_APPLICABLE_TEXT, None, "not-applicable", detail)
        return Mark(NOT_ASSESSED_TEXT, None, "not-assessed", detail)
    level = min(levels)
    rag = mt.worst_rag(rags)
    if unassessed:
        return Mark(f"{level}*", rag, "partial", detail)
    return Mark(str(level), rag, "assessed", detail)


def with_evidence(mark: Mark, entries: Sequence[mt.MatrixRow],
                  evidence: Mapping[tuple[str, str], Any]) -> Mark:
    """``mark`` with what its capabilities' levels rest on (SPEC §12): the most telling
    evidence mark (:data:`evidence.MARKS`) after the text, each checked capability's evidence
    in the detail (``evidence``: :class:`views.Shown` by asset and capability)."""
    if not evidence:
        return mark
    found = [(e.capability, evidence[e.asset, e.capability]) for e in entries
             if (e.asset, e.capability) in evidence]
    sign = ev.strongest(seen.mark for _c, seen in found)
    if not found or not sign:
        return mark
    words = "; ".join(f"{c}: {reports.evidence_line(seen)}" for c, seen in found)
    return mark._replace(text=mark.text + sign,
                         detail=f"{mark.detail}; {words}" if mark.detail else words)


def _entry_label(e: mt.MatrixRow) -> str:
    if e.state == mt.ASSESSED:
        return f"{e.capability}: L{e.level} {e.rag}"
    if e.state == mt.NOT_APPLICABLE:
        return f"{e.capability}: not applicable ({e.not_applicable_reason or ''})"
    return f"{e.capability}: not assessed"


def rollup_mark(entries: Sequence[Mapping]) -> Mark:
    """A flow's weakest link in one category, from its flow x capability roll-ups."""
    levels = [f["level"] for f in entries if f["level"] is not None]
    detail = "; ".join(
        f"{f['capability']}: " + (f"L{f['level']} {f['rag']}" if f["level"] is not None
                                  else "nobody assessed")
        + (f" ({f['not_assessed']} not assessed)" if f.get("not_assessed") else "")
        for f in entries)
    if not levels:
        return Mark(NOT_ASSESSED_TEXT, None, "not-assessed", detail)
    partial = any(f.get("not_assessed") for f in entries)
    rag = mt.flow_rag_shown(mt.worst_rag(f["rag"] for f in entries), partial)
    if rag is None:  # on target as far as assessed, but some asset is not assessed
        return Mark(f"{min(levels)}*", None, "unknown", detail)
    return Mark(f"{min(levels)}{'*' if partial else ''}", rag,
                "partial" if partial else "assessed", detail)


# ---------------------------------------------------------------------------- the trend
def week_ends(today: str, weeks: int = TREND_WEEKS) -> list[str]:
    """The dates of the trend's points: ``today`` and the same weekday of earlier weeks."""
    end = date.fromisoformat(today[:10])
    return [(end - timedelta(weeks=weeks - 1 - i)).isoformat() for i in range(weeks)]


def go_live_trend(history: Iterable[Sequence], matrix: Sequence[mt.MatrixRow],
                  dates: Sequence[str]) -> dict[str, list[float | None]]:
    """Per flow, the share of go-live capabilities met at the end of each of ``dates``.

    A capability is met on an asset when its level then was at least the capability's go-live
    level; the share counts every asset of the flow x every capability with a go-live level
    (today's flows and model), leaving out those Not Applicable at the time. ``history`` is the
    assessment history oldest first, as tuples (``asset``, ``capability``, ``new_state``,
    ``new_level``, ``na_until``, ``assessed_at``); it is read once, so the work is linear in
    its length.
    None where a flow has no go-live capability to meet.
    """
    go_live: dict[str, int] = {}
    flows_of: dict[str, list[str]] = {}
    for e in matrix:
        if e.go_live_level:
            go_live[e.capability] = e.go_live_level
        flows_of.setdefault(e.asset, list(e.flows))
    total: Counter[str] = Counter()
    for flows in flows_of.values():
        for flow in flows:
            total[flow] += len(go_live)
    met: Counter[str] = Counter()
    cell_met: dict[tuple[str, str], bool] = {}
    na: dict[tuple[str, str], str] = {}  # cell -> its Not Applicable expiry ('' = none)
    shares: dict[str, list[float | None]] = {f: [] for f in total}

    def snapshot(day: str) -> None:
        excluded: Counter[str] = Counter()
        for (asset, _cap), until in na.items():
            if not until or until >= day:
                for flow in flows_of[asset]:
                    excluded[flow] += 1
        for flow in shares:
            room = total[flow] - excluded[flow]
            shares[flow].append(round(met[flow] / room, 4) if room > 0 else None)

    points = iter(dates)
    day = next(points, None)
    for asset, cap, new_state, new_level, na_until, assessed_at in history:
        need = go_live.get(cap)
        if need is None or asset not in flows_of:
            continue
        while day is not None and str(assessed_at)[:10] > day:
            snapshot(day)
            day = next(points, None)
        if day is None:
            break
        key = (asset, cap)
        now_met = new_state == mt.ASSESSED and (new_level or 0) >= need
        if now_met != cell_met.get(key, False):
            for flow in flows_of[asset]:
                met[flow] += 1 if now_met else -1
            cell_met[key] = now_met
        if new_state == mt.NOT_APPLICABLE:
            na[key] = na_until or ""
        else:
            na.pop(key, None)
    while day is not None:
        snapshot(day)
        day = next(points, None)
    return shares


def trend_svg(points: Sequence[float | None], dates: Sequence[str], flow: str) -> str:
    """A small inline SVG line of the shares (0-100 %), with a text equivalent."""
    known = [(i, p) for i, p in enumerate(points) if p is not None]
    if not known:
        return '<p class="trend-none">No go-live capability to meet in this flow.</p>'
    width, height, pad = 260, 64, 6
    step = (width - 2 * pad) / max(len(points) - 1, 1)

    def xy(i: int, p: float) -> str:
        return f"{pad + i * step:.1f},{pad + (1 - p) * (height - 2 * pad):.1f}"

    first, last = known[0][1], known[-1][1]
    label = (f"{flow}: go-live capabilities met {first:.0%} on {dates[known[0][0]]}, "
             f"{last:.0%} on {dates[known[-1][0]]}")
    line = " ".join(xy(i, p) for i, p in known)
    dots = "".join(f'<circle cx="{xy(i, p).split(",")[0]}" cy="{xy(i, p).split(",")[1]}" '
                   f'r="2.2"><title>{_e(dates[i])}: {p:.0%}</title></circle>' for i, p in known)
    return (
        f'<figure class="trend"><svg xmlns="http://www.w3.org/2000/svg" role="img" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'aria-label="{_e(label)}"><title>{_e(label)}</title>'
        f'<rect x="0.5" y="0.5" width="{width - 1}" height="{height - 1}" class="frame"/>'
        f'<line x1="{pad}" y1="{height / 2:.1f}" x2="{width - pad}" y2="{height / 2:.1f}" '
        f'class="mid"/><polyline points="{line}" class="line"/>{dots}</svg>'
        f'<figcaption>Go-live capabilities met: <strong>{last:.0%}</strong> now, '
        f'{first:.0%} {len(points) - 1 - known[0][0]} weeks ago '
        f'({_e(dates[0])} to {_e(dates[-1])}, weekly)</figcaption></figure>'
    )


# ---------------------------------------------------------------------------- the HTML page
CSS = """
:root{--red:#ffd6cf;--red-ink:#5c0d02;--amber:#ffe59e;--amber-ink:#4a3300;--green:#c9ecd0;
--green-ink:#0b3d14;--na-ink:#3d3d3d;--grid:#9a9a9a;--ink:#1a1a1a;--muted:#4d4d4d}
*{box-sizing:border-box}
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;color:var(--ink);
background:#fff;margin:0 auto;padding:16px 24px;max-width:1400px}
h1{font-size:1.6em;margin:0 0 4px}h2{font-size:1.3em;margin:0 0 8px}
h3{font-size:1.05em;margin:12px 0 6px}
.meta,.note,figcaption{color:var(--muted)}
nav.index a{color:#003f8a}
.legend{display:flex;flex-wrap:wrap;gap:6px 16px;align-items:center;margin:8px 0 16px;padding:8px;
border:1px solid #ccc;border-radius:4px}
.legend span.cell{display:inline-block;min-width:2.6em;text-align:center;padding:1px 4px;
border:1px solid var(--grid);margin-right:4px}
section.flow{border-top:3px solid #333;padding-top:10px;margin-top:18px}
body:has(section.flow:target) section.flow:not(:target){display:none}
.summary{display:flex;flex-wrap:wrap;gap:12px 28px;align-items:flex-start}
.counts{margin:0;display:grid;grid-template-columns:auto auto;gap:2px 12px}
.counts dt{color:var(--muted)}.counts dd{margin:0;font-weight:600}
figure.trend{margin:0}figure.trend svg{display:block}
svg .frame{fill:#fafafa;stroke:#bbb}svg .mid{stroke:#ddd;stroke-dasharray:3 3}
svg .line{fill:none;stroke:#1f4e9c;stroke-width:2}svg circle{fill:#1f4e9c}
.scroll{overflow:auto;max-height:80vh;border:1px solid #ccc;margin:10px 0;width:fit-content;
max-width:100%;
scrollbar-width:auto;scrollbar-color:#777 #e6e6e6}
.scroll::-webkit-scrollbar{width:12px;height:12px;background:#e6e6e6}
.scroll::-webkit-scrollbar-thumb{background:#777;border-radius:6px}
@media (max-width:1000px){
body{padding:8px;font-size:13px}
table.heat th,table.heat td{padding:2px 3px}
table.heat td.l{min-width:2.4em}
table.heat tbody th{min-width:6em;max-width:11em}
}
table{border-collapse:collapse}
table.heat{font-variant-numeric:tabular-nums}
table.heat th,table.heat td{border:1px solid var(--grid);padding:3px 6px;white-space:nowrap}
table.heat thead th{position:sticky;top:0;background:#eee;z-index:2}
table.heat tbody th{position:sticky;left:0;background:#fff;text-align:left;z-index:1;
white-space:normal;overflow-wrap:anywhere;min-width:8em;max-width:22em}
table.heat td.l{text-align:center;min-width:3.2em;font-weight:600}
td.red,span.red{background:var(--red);color:var(--red-ink)}
td.amber,span.amber{background:var(--amber);color:var(--amber-ink)}
td.green,span.green{background:var(--green);color:var(--green-ink)}
td.not-assessed,span.not-assessed{color:var(--na-ink);font-weight:400;
background:repeating-linear-gradient(135deg,#fff 0 4px,#e3e3e3 4px 8px)}
td.unknown,span.unknown{color:var(--na-ink);
background:repeating-linear-gradient(135deg,#fff 0 4px,#ececec 4px 8px)}
table.gates th,table.gates td{border:1px solid #bbb;padding:3px 8px;text-align:left}
table.gates td.n{text-align:right;font-variant-numeric:tabular-nums}
td.blocked,p.blocked strong{color:var(--red-ink)}td.blocked{background:var(--red);font-weight:600}
td.ready,p.ready strong{color:var(--green-ink)}td.ready{background:var(--green);font-weight:600}
td.not-applicable,span.not-applicable{color:var(--na-ink);font-weight:400;font-style:italic;
background:#fff;border-style:dashed}
td.l small{font-size:.72em;font-weight:400;margin-left:2px}
tr.weakest th,tr.weakest td{border-top:2px solid #333;border-bottom:2px solid #333}
tr.weakest th{background:#f0f0f0}
table.items th,table.items td{border:1px solid #bbb;padding:3px 6px;text-align:left;
vertical-align:top}
table.items td.why{max-width:48em}
details summary{cursor:pointer;font-weight:600;margin:6px 0}
footer{margin-top:24px;color:var(--muted);font-size:.9em}
@media print{
body{padding:0;max-width:none;font-size:10px}
*{-webkit-print-color-adjust:exact;print-color-adjust:exact}
section.flow{break-before:page;border-top:none}
body:has(section.flow:target) section.flow:not(:target){display:block}
.scroll{overflow:visible;max-height:none;border:none}
table.heat thead th,table.heat tbody th{position:static}
table.heat thead{display:table-header-group}
tr{break-inside:avoid}
}
"""


def _cell_td(mark: Mark, abbr: str) -> str:
    start, end = _cell_frame(mark.kind, mark.rag, mark.text, abbr)
    return start + (f' title="{_e(mark.detail)}"' if mark.detail else "") + end


@lru_cache(maxsize=4096)  # a few kinds, RAGs and levels per category
def _cell_frame(kind: str, rag: str | None, text: str, abbr: str) -> tuple[str, str]:
    """A heatmap cell's markup before and after its title attribute."""
    classes = ["l", kind]
    if rag:
        classes.append(rag.lower())
    small = f"<small>{rag[0]}</small>" if rag else ""
    label = f'{abbr}: {text or "none"}{" " + rag if rag else ""}'
    return (f'<td class="{" ".join(classes)}"',
            f' aria-label="{_e(label)}">{_e(text)}{small}</td>')


def _legend(categories: Sequence[str], abbr: Mapping[str, str], marks: Iterable[str] = ()
            ) -> str:
    swatches = [
        ('<span class="cell green">3<small>G</small></span>Green: at target, no open item'),
        ('<span class="cell amber">2<small>A</small></span>Amber: below target'),
        ('<span class="cell red">1<small>R</small></span>Red: a go-live level is missing'),
        ('<span class="cell red">0<small>R</small></span>level 0: assessed, level 1 not met'),
        (f'<span class="cell not-assessed">{NOT_ASSESSED_TEXT}</span>Not Assessed '
         "(no items yet; not a 0)"),
        (f'<span class="cell not-applicable">{NOT_APPLICABLE_TEXT}</span>Not Applicable'),
        ('<span class="cell amber">2*<small>A</small></span>* some capabilities of the '
         "category still to assess"),
        ('<span class="cell unknown">3*</span>a flow whose assessed assets are on target '
         "while some are not assessed: not Green"),
    ]
    used = set(marks)
    swatches += [f'<span class="cell">2{_e(m)}</span>{_e(text)}'
                 for m, text in ev.MARKS.items() if m in used]
    cats = ", ".join(f"<abbr title=\"{_e(c)}\">{_e(abbr[c])}</abbr> {_e(c)}"
                     for c in categories)
    return ('<section class="legend" aria-label="Legend">'
            + "".join(f"<span>{s}</span>" for s in swatches)
            + "<span>A cell shows the asset's weakest level in the category (hover for "
              "each capability).</span>"
            + f'<span class="cats">Columns: {cats}</span></section>')


@dataclass
class OpenItems:
    """The open items (open, or done awaiting re-assessment) as the page uses them: the go-live
    ones, which it lists, in their order, and how many others each asset has per owner, which
    it only counts (:func:`open_items` makes it from item dicts; ``report`` fills it as it
    streams the items)."""

    red: list[Mapping] = field(default_factory=list)
    others: defaultdict[str, Counter[str]] = field(
        default_factory=lambda: defaultdict(Counter))

    def red_by_asset(self) -> dict[str, list[Mapping]]:
        by_asset: dict[str, list[Mapping]] = defaultdict(list)
        for it in self.red:
            by_asset[it["asset"]].append(it)
        return by_asset


def open_items(items: Iterable[Mapping] | OpenItems) -> OpenItems:
    """:class:`OpenItems` of the item dicts ``items`` (the closed ones left out)."""
    from operator import itemgetter

    if isinstance(items, OpenItems):
        return items
    items = items if isinstance(items, list) else list(items)
    # One pass in C over what may be 10^5 items, then one step per distinct tally.
    tally = Counter(map(itemgetter("asset", "state", "go_live", "owner"), items))
    found = OpenItems()
    open_states = set()
    for (asset, state, go_live, owner), n in tally.items():
        if mt.is_open(str(state)):
            open_states.add(state)
            if not go_live:
                found.others[asset][str(owner)] += n
    found.red = [it for it in items if it["go_live"] and it["state"] in open_states]
    return found


def _counts(cells: Sequence[mt.MatrixRow], red: int, owners: Counter[str], assets: int) -> str:
    """A flow's counts: ``red`` open go-live items, and all its open items by owner."""
    states = Counter(e.state for e in cells)
    total = sum(owners.values())
    owner_text = ", ".join(f"{_e(k)} {v}" for k, v in sorted(owners.items())) or "none"
    rows = [
        ("Assets", str(assets)),
        ("Assessed", str(states.get(mt.ASSESSED, 0))),
        ("To assess", str(states.get(mt.NOT_ASSESSED, 0))),
        ("Not applicable", str(states.get(mt.NOT_APPLICABLE, 0))),
        ("Open items", f"{total} ({red} Red, {total - red} Amber)"),
        ("By owner", owner_text),
    ]
    return '<dl class="counts">' + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows) + "</dl>"


def _overview(flow_names: Sequence[str], gates: Mapping[str, mt.Gate],
              assets: Mapping[str, int], marks: Mapping[str, Sequence[str]],
              categories: Sequence[str], abbr: Mapping[str, str],
              files: Sequence[str] | None = None) -> str:
    """Every flow at a glance: go-live ready or blocked (as ``gate --flow`` decides), the
    counts, and the flows x categories heatmap of weakest links; each flow links its section
    (CSS ``:target``: no script)."""
    blocked = sum(1 for f in flow_names if gates[f].closed)
    links = [f"#flow-{n}" for n in range(1, len(flow_names) + 1)] if files is None else files
    rows = []
    for n, flow in enumerate(flow_names, 1):
        gate = gates[flow]
        verdict = ('<td class="blocked">blocked</td>' if gate.closed
                   else '<td class="ready">ready</td>')
        rows.append(f'<tr><th scope="row"><a href="{_e(links[n - 1])}">{_e(flow)}</a></th>'
                    f"{verdict}"
                    f'<td class="n">{len(gate.blocking)}</td>'
                    f'<td class="n">{len(gate.unassessed)}</td>'
                    f'<td class="n">{assets.get(flow, 0)}</td></tr>')
    heat_head = ('<thead><tr><th scope="col">Flow</th>'
                 + "".join(f'<th scope="col" title="{_e(c)}"><abbr title="{_e(c)}">'
                           f"{_e(abbr[c])}</abbr></th>" for c in categories) + "</tr></thead>")
    heat_rows = "".join(
        f'<tr><th scope="row"><a href="{_e(links[n - 1])}">{_e(flow)}</a></th>'
        + "".join(marks[flow]) + "</tr>" for n, flow in enumerate(flow_names, 1))
    pick = ("Pick a flow to show only that flow, or "
            '<a href="#all">show all flows</a>.' if files is None else
            "Each flow has its own page, one file beside this one (the whole matrix in one "
            "file would be too large to open): pick a flow to open it.")
    return (
        '<nav class="overview index" aria-label="Flows" id="overview">'
        f"<h2>Flows at a glance</h2><p>{len(flow_names) - blocked} of {len(flow_names)} "
        "flows ready to go live, as <code>gate --flow</code> decides: a flow is blocked while "
        "a go-live item is open or a go-live capability of one of its assets is not assessed. "
        f"{pick}</p>"
        '<div class="scroll"><table class="gates"><thead><tr><th scope="col">Flow</th>'
        '<th scope="col">Go-live</th><th scope="col">Open go-live items</th>'
        '<th scope="col">Go-live capabilities not assessed</th><th scope="col">Assets</th>'
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
        "<h3>Weakest links: flows × categories</h3>"
        '<div class="scroll"><table class="heat flows" aria-label="Flows by category: '
        f'weakest links">{heat_head}<tbody>{heat_rows}</tbody></table></div></nav>\n')


def _go_live_line(gate: mt.Gate) -> str:
    """The verdict under a flow's title, in the words of ``gate --flow``."""
    if not gate.closed:
        return ('<p class="verdict ready"><strong>Ready to go live</strong> (gate open): no '
                "open go-live item, every go-live capability assessed.</p>")
    return (f'<p class="verdict blocked"><strong>Go-live blocked</strong> (gate closed): '
            f"{reports.gate_reasons(gate)}.</p>")


def _go_live(gate: mt.Gate, items: Sequence[Mapping]) -> str:
    """A flow's go-live gate in detail: the open go-live items (the reason for each) and the
    go-live capabilities not assessed; nothing when the gate is open."""
    parts = []
    red = sorted((it for it in items if it["go_live"]), key=reports.sort_key)
    if red:
        rows = "".join(
            f"<tr><td>{_e(it['priority'])}</td><td>{_e(it['asset'])}</td>"
            + _level_cells(it["capability"], it["level"], it["owner"], it["milestone"] or "")
            + _status_td(it["work_status"], it["state"])
            + f"<td>{_e(it.get('rally_id') or '')}</td>"
            f"<td class=\"why\">{_e(it['why'] or it['criteria'])}</td></tr>"
            for it in red)
        # A long list starts folded, so the next flow stays within reach.
        state = " open" if len(red) <= FOLD_ITEMS else ""
        parts.append(
            f"<details{state}><summary>Open go-live items ({len(red)})</summary>"
            '<table class="items"><thead><tr><th>Priority</th><th>Asset</th><th>Task</th>'
            "<th>Owner</th><th>Milestone</th><th>Status</th><th>Rally</th><th>Why</th></tr>"
            f"</thead><tbody>{rows}</tbody></table></details>")
    if gate.unassessed:
        by_asset: dict[str, list[str]] = {}
        for asset, capability, level in gate.unassessed:
            by_asset.setdefault(asset, []).append(f"{capability} (L{level})")
        rows = "".join(f"<tr><td>{_e(asset)}</td><td>{_e(', '.join(caps))}</td></tr>"
                       for asset, caps in by_asset.items())
        state = " open" if len(by_asset) <= FOLD_ITEMS // 5 else ""
        parts.append(
            f"<details{state}><summary>Go-live capabilities not assessed "
            f"({len(gate.unassessed)})</summary>"
            '<table class="items unassessed"><thead><tr><th>Asset</th>'
            "<th>Capabilities (go-live level)</th></tr></thead>"
            f"<tbody>{rows}</tbody></table><p class=\"note\">Assess them, or mark them Not "
            "Applicable.</p></details>")
    return "".join(parts)


@lru_cache(maxsize=4096)  # the same level recurs on every asset that misses it
def _level_cells(capability: str, level: int, owner: str, milestone: str) -> str:
    return (f"<td>{_e(mt.task_name(capability, level))}</td><td>{_e(owner)}</td>"
            f"<td>{_e(milestone)}</td>")


@lru_cache(maxsize=256)
def _status_td(work_status: str, state: str) -> str:
    return f"<td>{_e(mt.display_status(work_status, state))}</td>"


def render(matrix: Sequence[mt.MatrixRow], flows: Sequence[Mapping], items: Iterable[Mapping],
           *,
           trend: Mapping[str, Sequence[float | None]], dates: Sequence[str], generated: str,
           commit: str | None, evidence: Mapping[tuple[str, str], Any] | None = None
           ) -> Iterator[str]:
    """``sre_matrix.html`` in pieces (write them in order): one section per flow.

    :param matrix: the matrix rows (:func:`maturity.matrix_rows`), model order
    :param flows: flow x capability roll-ups
    :param items: item dicts with ``flows`` (the joined label); only open ones are shown
    :param trend: per flow, the go-live share at each of ``dates`` (see :func:`go_live_trend`)
    :param generated: when the page was generated (shown as given)
    :param commit: the data folder's commit the page shows, or None outside git
    :param evidence: :class:`views.Shown` of the cells checks answer (marks, SPEC §12)
    """
    for _where, piece in render_files(matrix, flows, items, trend=trend, dates=dates,
                                      generated=generated, commit=commit, split=False,
                                      evidence=evidence):
        yield piece


# One file of the matrix stays under the bound of a page of the to-do list (SPEC §11: no file
# for a person over 5 MiB; a browser opens a few MiB of tables in well under a second).
MATRIX_BYTES = 4 * 1024 * 1024
# What a file grows by, measured on generated data of 60 capabilities in 12 categories: an
# asset's row of the heatmap with its hover texts, and a row of the go-live list.
ASSET_ROW_BYTES = 3000
GO_LIVE_ROW_BYTES = 400


def needs_split(matrix: Sequence[mt.MatrixRow], items: Iterable[Mapping] | OpenItems) -> bool:
    """Whether ``sre_matrix.html`` would pass :data:`MATRIX_BYTES` in one file (estimated
    from its asset rows and open go-live items, before anything is drawn)."""
    rows = len({(flow, e.asset) for e in matrix for flow in e.flows})
    go_live = len(open_items(items).red)
    return rows * ASSET_ROW_BYTES + go_live * GO_LIVE_ROW_BYTES > MATRIX_BYTES


def flow_files(flow_names: Sequence[str]) -> list[str]:
    """The file of each flow when the matrix is split: ``sre_matrix.03-checkout.html``."""
    from sre_maturity.render.todo_parts import slug
    return [f"sre_matrix.{n:02d}-{slug(flow)}.html" for n, flow in enumerate(flow_names, 1)]


def is_flow_file(name: str) -> bool:
    """Whether ``name`` is a flow's file of a split matrix (which ``report`` may remove)."""
    return name.startswith("sre_matrix.") and name.endswith(".html") and name != HTML_FILE \
        and name[len("sre_matrix."):len("sre_matrix.") + 2].isdigit()


def render_files(matrix: Sequence[mt.MatrixRow], flows: Sequence[Mapping],
                 items: Iterable[Mapping] | OpenItems, *,
                 trend: Mapping[str, Sequence[float | None]], dates: Sequence[str],
                 generated: str, commit: str | None, split: bool,
                 evidence: Mapping[tuple[str, str], Any] | None = None
                 ) -> Iterator[tuple[int, str]]:
    """The matrix pages in pieces, each tagged with its file: 0 for ``sre_matrix.html``,
    ``n`` for the ``n``-th flow's file (:func:`flow_files`; only with ``split``, when the
    whole would be too large for one file: then ``sre_matrix.html`` holds the overview and
    links each flow's self-contained file). Arguments as :func:`render`.
    """
    evidence = evidence or {}
    categories = list(dict.fromkeys(e.category for e in matrix))
    abbr = reports.abbreviations(categories)
    flow_names = list(dict.fromkeys(f["flow"] for f in flows))
    # One pass over the matrix and the items, grouped by flow and asset.
    by_flow_asset: dict[str, dict[str, list[mt.MatrixRow]]] = defaultdict(dict)
    for e in matrix:
        for flow in e.flows:
            by_flow_asset[flow].setdefault(e.asset, []).append(e)
    # The page lists the open go-live items and only counts the others (by owner).
    opened = open_items(items)
    red_by_asset, others = opened.red_by_asset(), opened.others
    # Ready or blocked: the decision `gate --flow` makes, from the same rows and items (only
    # the open go-live ones can block).
    gates = mt.flow_gates(matrix, opened.red)
    assets = len({e.asset for e in matrix})
    capabilities = len({e.capability for e in matrix})
    source = f"commit {_e(commit)}" if commit else "a folder without git history"

    meta = (f'<p class="meta">Generated {_e(generated)} from {source} · {assets} assets × '
            f"{capabilities} capabilities in {len(flow_names)} flows</p>")
    files = flow_files(flow_names) if split else None
    yield 0, _head("SRE maturity matrix")
    yield 0, f"<header><h1>SRE maturity matrix</h1>{meta}</header>\n"
    per_flow_cat: dict[str, dict[str, list[Mapping]]] = {
        flow: defaultdict(list) for flow in flow_names}
    for f in flows:
        per_flow_cat[f["flow"]][f["category"]].append(f)
    weakest_cells = {flow: [_cell_td(rollup_mark(per_flow_cat[flow].get(c, [])), abbr[c])
                            for c in categories] for flow in flow_names}
    if flow_names:
        yield 0, _overview(flow_names, gates,
                           {flow: len(by_flow_asset.get(flow, {})) for flow in flow_names},
                           weakest_cells, categories, abbr, files)
    legend = _legend(categories, abbr, {seen.mark for seen in evidence.values()}) + "\n"
    yield 0, legend
    if not flow_names:
        yield 0, '<p class="note">No flow is defined yet: run setup.</p>\n'
    head = ("<thead><tr><th scope=\"col\">Asset</th><th scope=\"col\">Team</th>"
            "<th scope=\"col\">Target</th>"
            + "".join(f'<th scope="col" title="{_e(c)}"><abbr title="{_e(c)}">{_e(abbr[c])}'
                      "</abbr></th>" for c in categories) + "</tr></thead>")
    for n, flow in enumerate(flow_names, 1):
        where = n if split else 0
        if split:
            yield where, _head(f"SRE maturity matrix: {flow}")
            yield where, (f"<header><h1>SRE maturity matrix: {_e(flow)}</h1>{meta}"
                          f'<p><a href="{HTML_FILE}">All flows ({HTML_FILE})</a></p>'
                          f"</header>\n{legend}")
        flow_assets = by_flow_asset.get(flow, {})
        cells = [e for entries in flow_assets.values() for e in entries]
        flow_items = [it for a in flow_assets for it in red_by_asset.get(a, ())]
        owners = Counter(str(it["owner"]) for it in flow_items)
        for a in flow_assets:
            owners.update(others.get(a, {}))
        yield where, (f'<section class="flow" id="flow-{n}" aria-labelledby="flow-{n}-h">'
               f'<h2 id="flow-{n}-h">{_e(flow)}</h2>'
               + _go_live_line(gates[flow]) + '<div class="summary">'
               + _counts(cells, len(flow_items), owners, len(flow_assets))
               + trend_svg(trend.get(flow, []), dates, flow) + "</div>\n")
        weakest = "".join(weakest_cells[flow])
        yield where, (f'<div class="scroll"><table class="heat" aria-label="{_e(flow)}: assets by '
               f'category">{head}<tbody><tr class="weakest"><th scope="row">Weakest link</th>'
               f"<td></td><td></td>{weakest}</tr>\n")
        for asset, entries in flow_assets.items():
            groups: dict[str, list[mt.MatrixRow]] = defaultdict(list)
            for e in entries:
                groups[e.category].append(e)
            first = entries[0]
            yield where, (f'<tr><th scope="row">{_e(asset)}</th>'
                   f"<td>{_e(first.team or '')}</td>"
                   f"<td>{_e(first.target_level)}</td>"
                   + "".join(_cell_td(with_evidence(category_mark(groups.get(c, [])),
                                                    groups.get(c, []), evidence), abbr[c])
                             for c in categories) + "</tr>\n")
        yield where, ("</tbody></table></div>\n" + _go_live(gates[flow], flow_items)
                      + "</section>\n")
        if split:
            yield where, FOOTER
    yield 0, FOOTER


FOOTER = ("<footer>Generated by sre-tracker. A level (0–5) is the highest level whose "
          "questions were all answered yes; a flow is as mature as its weakest asset. "
          "This file has no scripts and loads nothing from elsewhere.</footer>\n"
          "</body>\n</html>\n")


def _head(title: str) -> str:
    return ('<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            '<meta name="color-scheme" content="light">\n'
            f"<title>{_e(title)}</title>\n"
            f"<style>{CSS}</style>\n</head>\n<body>\n")




# ---------------------------------------------------------------------------- Confluence
def _attrs(flavour: str, rag: str | None) -> str:
    return "".join(f' {k}="{storage_format.xml_attr(v)}"'
                   for k, v in HIGHLIGHTS[flavour][rag].items())


def confluence_table(matrix: Sequence[mt.MatrixRow], flows: Sequence[Mapping],
                     flavour: str, evidence: Mapping[tuple[str, str], Any] | None = None
                     ) -> str:
    """The matrix for a Confluence page in storage format: a row per flow and asset (the
    flow's weakest-link row first), a column per category, cells highlighted by RAG the way
    the ``flavour``'s editor stores it (:data:`HIGHLIGHTS`). Level printed in every cell, with
    its evidence mark (``evidence`` as :func:`render` takes it) and a legend row for the marks
    when any shows."""
    evidence = evidence or {}
    categories = list(dict.fromkeys(e.category for e in matrix))
    x = storage_format.xml_text
    header = "<tr>" + "".join(f"<th><p>{x(c)}</p></th>"
                              for c in [*CONFLUENCE_COLUMNS, *categories]) + "</tr>"
    by_flow_asset: dict[str, dict[str, list[mt.MatrixRow]]] = defaultdict(dict)
    for e in matrix:
        for flow in e.flows:
            by_flow_asset[flow].setdefault(e.asset, []).append(e)
    rollups: dict[str, dict[str, list[Mapping]]] = defaultdict(lambda: defaultdict(list))
    for f in flows:
        rollups[f["flow"]][f["category"]].append(f)

    def cell(mark: Mark) -> str:
        text = f"{mark.text} {mark.rag}" if mark.rag else mark.text
        return f"<td{_attrs(flavour, mark.rag)}><p>{x(text)}</p></td>"

    parts = [f"<table><tbody>{header}"]
    for flow in dict.fromkeys(f["flow"] for f in flows):
        parts.append(f"<tr><td><p><strong>{x(flow)}</strong></p></td>"
                     f"<td><p><strong>{WEAKEST_LINK}</strong></p></td><td><p /></td><td><p /></td>"
                     + "".join(cell(rollup_mark(rollups[flow].get(c, []))) for c in categories)
                     + "</tr>")
        for asset, entries in by_flow_asset.get(flow, {}).items():
            groups: dict[str, list[mt.MatrixRow]] = defaultdict(list)
            for e in entries:
                groups[e.category].append(e)
            first = entries[0]
            parts.append(f"<tr><td><p>{x(flow)}</p></td><td><p>{x(asset)}</p></td>"
                         f"<td><p>{x(first.team or '')}</p></td>"
                         f"<td><p>{x(first.target_level)}</p></td>"
                         + "".join(cell(with_evidence(category_mark(groups.get(c, [])),
                                                      groups.get(c, []), evidence))
                                   for c in categories)
                         + "</tr>")
    legends = [LEGEND]
    if any(seen.mark for seen in evidence.values()):
        legends.append(MARKS_LEGEND)
    for text in legends:
        legend = "<br />".join(x(line) for line in text.split("\n"))
        parts.append(f"<tr><td><p><strong>{LEGEND_LABEL}</strong></p></td><td><p>{legend}</p>"
                     "</td>" + "<td><p /></td>" * (len(CONFLUENCE_COLUMNS) - 2 + len(categories))
                     + "</tr>")
    parts.append("</tbody></table>")
    return "".join(parts)
