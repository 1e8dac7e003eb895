"""A small port of how Atlassian's wiki renderer reads a table (``reference/confluence.md`` §7),
to test ``confluence_page.txt`` the way Confluence will read it — not an inverse of our own
escaping.

Steps, in the renderer's order:

1. links ``[...]`` and macros ``{...}`` are cut out of the line as tokens first, so a ``|``
   inside them does not split a cell;
2. ``TableRow.createRow`` walks the line: ``|`` ends a cell, except a ``|`` right after a
   backslash (stays in the cell) and a ``|`` right after another ``|`` (marks the cell being
   started as a header cell); a raw newline ends the row;
3. in each cell, ``BackslashEscapeRendererComponent``: a backslash before one of
   ``- # * _ + ? ^ ~ | % { } [ ] ( ) ! @`` makes that character literal, unless the backslash
   is itself after a backslash; any other backslash is shown;
4. then ``\\\\`` becomes a line break, but only where ``ForceNewLineRendererComponent``'s
   pattern ``(?<!\\\\)\\\\{2}(?!\\S*\\\\)`` matches: no backslash right before it and none
   further on in the same run of non-space characters (``\\\\server\\share`` stays text);
5. character references (numeric, or XHTML 1.0 named ones) show as their character; an
   HTML5-only name (``&bsol;``) is an error (the paste is converted to XHTML);
6. what is left must not format: headings/quotes/lists at a line start, ``*bold*``, ``_x_``,
   ``-strike-``, ``+u+``, ``^sup^``, ``~sub~``, ``??cite??``, ``{{mono}}``, dashes, images,
   emoticons (``:)``, ``(y)``, ``(!)`` ...).

:func:`read_table` returns the rows as lists of :class:`Cell` (shown text, header flag,
tokens).
"""

from __future__ import annotations

import html.entities
import re
from dataclasses import dataclass, field

ESCAPABLE = frozenset("-#*_+?^~|%{}[]()!@")
# XHTML 1.0's named entities are HTML 4's (html.entities.name2codepoint) plus &apos;.
XHTML_NAMES = {**html.entities.name2codepoint, "apos": ord("'")}

_LINK = re.compile(r"\[([^\[\]\n]*)\]")
_MACRO = re.compile(r"\{([A-Za-z][\w-]*)(?::([^{}\n]*))?\}")
_TOKENS = re.compile(f"{_MACRO.pattern}|{_LINK.pattern}")  # in the order they appear
_ENTITY = re.compile(r"&(?:#(\d+)|#[xX]([0-9a-fA-F]+)|([A-Za-z][A-Za-z0-9]*));")
# ForceNewLineRendererComponent: "\\\\" is a break unless a backslash is right before it or
# further on in the same run of non-space characters.
_FORCE_NEWLINE = re.compile(r"(?<!\\)\\{2}(?!\S*\\)")
_TOKEN = "\ue000"  # stands for a link or macro while the row is split

LITERAL = "\x00"  # a character that can no longer format (escaped, or from a reference)

# Formatting the renderer applies to unescaped text ("x" stands for any content).
FORMATS = {
    "heading": re.compile(r"(?m)^\s*h[1-6]\.\s"),
    "quote": re.compile(r"(?m)^\s*bq\.\s"),
    "list": re.compile(r"(?m)^\s*[*#-]+\s"),
    "rule": re.compile(r"(?m)^\s*-{4,}\s*$"),
    "bold": re.compile(r"\*[^\s*](?:[^*\n]*[^\s*])?\*"),
    "emphasis": re.compile(r"(?<![\w])_[^\s_](?:[^_\n]*[^\s_])?_(?![\w])"),
    "strike": re.compile(r"(?<![\w-])-[^\s-](?:[^-\n]*[^\s-])?-(?![\w-])"),
    "underline": re.compile(r"(?<![\w+])\+[^\s+](?:[^+\n]*[^\s+])?\+(?![\w+])"),
    "superscript": re.compile(r"\^[^\s^](?:[^^\n]*[^\s^])?\^"),
    "subscript": re.compile(r"~[^\s~](?:[^~\n]*[^\s~])?~"),
    "citation": re.compile(r"\?\?[^?\n]+\?\?"),
    "monospace": re.compile(r"\{\{[^\n]+?\}\}"),
    "dash": re.compile(r"(?<!-)--(?!-)|(?<!-)---(?!-)"),
    "image": re.compile(r"![^\s!][^!\n]*!"),
    "emoticon": re.compile(r"[:;]-?[)(PpDd]|\((?:y|n|i|/|x|!|\+|-|\?|on|off|\*|\*[rgby]|flag|"
                           r"flagoff)\)"),
    "link": re.compile(r"\[[^\]\n]*\]"),
    "macro": re.compile(r"\{[A-Za-z][^}\n]*\}"),
    "mention": re.compile(r"\[~[^\]]*\]"),
}


class RenderError(AssertionError):
    """The markup would not convert (e.g. an HTML5-only entity)."""


@dataclass
class Cell:
    header: bool
    raw: str  # the cell's markup, tokens restored
    text: str = ""  # what the reader sees (line breaks as "\n")
    tokens: list[str] = field(default_factory=list)  # links / macros in the cell
    formats: list[str] = field(default_factory=list)  # formatting that would apply


def _tokenise(line: str) -> tuple[str, list[str]]:
    tokens: list[str] = []

    def cut(m: re.Match) -> str:
        tokens.append(m.group(0))
        return _TOKEN

    return _TOKENS.sub(cut, line), tokens


def create_row(line: str) -> list[tuple[str, bool]]:
    """``TableRow.createRow``: the cells of one row line as (markup, is header)."""
    cells: list[tuple[str, bool]] = []
    buffer: list[str] = []
    header = False
    started = False
    prev = ""
    for ch in line:
        if ch == "|" and prev != "\\":
            if prev == "|":
                header = True  # "||": the cell now starting is a header cell
            else:
                if started:
                    cells.append(("".join(buffer), header))
                buffer, header, started = [], False, True
        else:
            buffer.append(ch)
        prev = ch
    if started and "".join(buffer).strip():
        cells.append(("".join(buffer), header))
    return cells


def unescape(markup: str) -> str:
    """Steps 3-5 on one cell: the text with every literal character prefixed by LITERAL."""
    out: list[str] = []
    i = 0
    while i < len(markup):
        ch = markup[i]
        nxt = markup[i + 1] if i + 1 < len(markup) else ""
        if ch == "\\" and nxt in ESCAPABLE and nxt and (i == 0 or markup[i - 1] != "\\"):
            out.append(LITERAL + nxt)
            i += 2
            continue
        out.append(ch)
        i += 1
    text = _FORCE_NEWLINE.sub("\n", "".join(out))

    def entity(m: re.Match) -> str:
        if m.group(1) or m.group(2):
            code = int(m.group(1)) if m.group(1) else int(m.group(2), 16)
            return LITERAL + chr(code)
        name = m.group(3)
        if name not in XHTML_NAMES:
            raise RenderError(f"&{name}; is not an XHTML entity")
        return LITERAL + chr(XHTML_NAMES[name])

    return _ENTITY.sub(entity, text)


def read_cell(markup: str, header: bool, tokens: list[str]) -> Cell:
    used = tokens[:markup.count(_TOKEN)]
    del tokens[:len(used)]
    raw = markup
    for token in used:
        raw = raw.replace(_TOKEN, token, 1)
    marked = unescape(markup)
    # Formatting is looked for in the text where literal characters cannot take part.
    plain = re.sub(LITERAL + ".", "\x01", marked, flags=re.S)
    formats = [name for name, rx in FORMATS.items() if rx.search(plain)]
    shown = marked.replace(LITERAL, "")
    for token in used:
        shown = shown.replace(_TOKEN, token_text(token), 1)
    return Cell(header, raw, shown, used, formats)


def token_text(token: str) -> str:
    """What a link (its alias) or a status macro (its title) shows."""
    if token.startswith("["):
        alias = token[1:-1].split("|", 1)[0]
        return unescape(alias).replace(LITERAL, "")
    m = _MACRO.fullmatch(token)
    params = dict(p.split("=", 1) for p in (m.group(2) or "").split("|") if "=" in p)
    return params.get("title", "")


def read_table(markup: str) -> list[list[Cell]]:
    """Every table row of ``markup`` (lines starting with ``|``) as its cells."""
    rows = []
    for line in markup.split("\n"):
        if not line.startswith("|"):
            continue
        tokenised, tokens = _tokenise(line)
        rows.append([read_cell(m, h, tokens) for m, h in create_row(tokenised)])
    return rows
