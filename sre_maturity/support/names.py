"""Names typed by a user (flows, assets, capabilities): matched case-insensitively, and an
unknown one is an error with the close matches, each named once."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from sre_maturity.support.errors import InputError


def close_matches(word: str, choices: Iterable[str], n: int = 3) -> list[str]:
    """Names close to ``word`` (case-insensitive), each once, best first."""
    folded: dict[str, str] = {}
    for choice in choices:
        folded.setdefault(choice.casefold(), choice)
    key = word.casefold()
    hits = difflib.get_close_matches(key, list(folded), n=n, cutoff=0.5)
    hits += [f for f in folded if key and key in f and f not in hits]
    return [folded[f] for f in hits[:n]]


def unknown_message(kind: str, given: str, choices: Iterable[str], where: str = "") -> str:
    """``unknown asset 'x'; did you mean a, b? (see flows.csv)`` (or the known names when none
    is close)."""
    known = sorted(set(choices), key=str.casefold)
    hint = close_matches(given, known)
    if hint:
        tail = f"; did you mean {', '.join(hint)}?"
    elif known:
        more = f" (+{len(known) - 8} more)" if len(known) > 8 else ""
        tail = f"; known: {', '.join(known[:8])}{more}"
    else:
        tail = ""
    return f"unknown {kind} {given!r}" + tail + (f" ({where})" if where else "")


def resolve(kind: str, given: str, choices: Iterable[str], where: str = "") -> str:
    """The canonical spelling of ``given`` among ``choices`` (any case), else InputError."""
    known = list(choices)
    if given in known:
        return given
    key = given.strip().casefold()
    matches = [c for c in known if c.casefold() == key]
    if not matches:
        raise InputError(unknown_message(kind, given, known, where))
    if len(matches) > 1:  # only a database from before one spelling per name (setup fixes it)
        raise InputError(f"{kind} {given!r} is ambiguous: {', '.join(matches)} differ only in "
                         f"case; spell it exactly, and run setup --from-csv to make them one")
    return matches[0]
