"""The SQLite store (``sre_data.db``): the connection, transactions and every query.

One connection per command, explicit transactions, parameterised SQL only. The schema, its
migrations and whole-table rows live in ``schema.py``; the CSV import in ``imports.py``. The
rollback journal (not WAL) keeps the committed file complete once the connection is closed,
which git needs.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Protocol

from sre_maturity.rules import maturity as mt
from sre_maturity.rules.checkspec import DEFINITIVE, CheckRow, EvidenceRecord, Override
from sre_maturity.store import schema
from sre_maturity.store.schema import APPLICATION_ID, SCHEMA_VERSION, now_iso
from sre_maturity.support import interrupts
from sre_maturity.support.errors import DatabaseError, program_name

__all__ = ["APPLICATION_ID", "SCHEMA_VERSION", "DB_FILE", "MATRIX_FILE", "Database", "now_iso"]

DB_FILE = "sre_data.db"
MATRIX_FILE = "sre_matrix.csv"
# Above this many changed history rows an import is "big": VACUUM afterwards.
BIG_IMPORT = 1000

# An item as stored, in the order :meth:`Database.item_rows` returns the fields.
ITEM_FIELDS = ("asset", "capability", "level", "state", "work_status", "rally_state", "rally_oid",
               "rally_id", "rally_url", "why", "opened_at", "done_at", "closed_at", "updated_at")
# The item fields that make an item unlike every other of its level and cell (item_words).
_ITEM_TIMES = frozenset({"opened_at", "done_at", "closed_at", "updated_at"})
_STORY_FIELDS = frozenset({"rally_state", "rally_oid", "rally_id", "rally_url"})


class VerdictLike(Protocol):
    """What :meth:`Database.record_evidence` reads of a verdict."""

    @property
    def asset(self) -> str: ...
    @property
    def check(self) -> str: ...
    @property
    def verdict(self) -> str: ...
    @property
    def detail(self) -> str: ...
    @property
    def link(self) -> str | None: ...
    @property
    def checked_at(self) -> str: ...
    @property
    def valid_until(self) -> str | None: ...
    @property
    def fingerprint(self) -> str: ...


class FileReplaced(DatabaseError):
    """``sre_data.db`` was replaced by another program (git pull, checkout, merge) while this
    run had it open: what the run wrote went into the old file, and nothing was saved."""

    def __init__(self, path: Path, *, committed: bool) -> None:
        if committed:
            text = (f"{path} was replaced after this command saved its change in it (a git "
                    "pull, checkout or merge meanwhile?): the change went with the old file and "
                    "is neither in the folder nor in git; run the command again")
        else:
            text = (f"{path} was replaced while this command ran (a git pull, checkout or "
                    "merge meanwhile?), so this change did not reach it: nothing was saved; run "
                    "the command again")
        super().__init__(text)
        self.committed = committed


class Rollback(Exception):
    """Raised inside :meth:`Database.transaction` to undo it without an error."""


class Database:
    """One connection to ``sre_data.db``; use as a context manager.

    :param path: the database file.
    :param create: create the file when missing (``setup`` only).
    :raises DatabaseError: the file is missing, corrupt, foreign or from a newer version.
    """

    # Called just before each transaction commits (the command context notes that the data
    # files must follow).
    on_commit: Callable[[], None] | None = None
    # Called after each commit (and VACUUM) with the file's signature (schema.signature): what
    # the folder's file must still be when git commits it.
    on_saved: Callable[[tuple[int, int, int, int] | None], None] | None = None

    def __init__(self, path: Path, *, create: bool = False) -> None:
        self.path = Path(path)
        self.migrated_from: int | None = None
        self.backup: Path | None = None
        self._sound = False
        self.identity: tuple[int, int] | None = None
        self._before: dict[tuple[str, str], mt.Cell] = {}
        self._specs: dict[tuple[str, int], mt.LevelSpec] | None = None
        schema.check_regular(self.path)
        if not self.path.exists() and not create:
            raise DatabaseError(
                f"no {self.path.name} in {self.path.parent}; run '{program_name()} setup' "
                "(or setup --from-csv) there first, or pass --data-dir"
            )
        self.stale_journal: Path | None = None
        if self.path.exists():
            schema.check_header(self.path)
            self.stale_journal = self._set_aside_foreign_journal()
        try:
            self.conn = sqlite3.connect(self.path, isolation_level=None)
            self.conn.row_factory = sqlite3.Row
            self.conn.execute("PRAGMA journal_mode=DELETE")
            self.conn.execute("PRAGMA foreign_keys=ON")
            self.migrated_from, self.backup = schema.prepare(self.conn, self.path)
            self.identity = schema.inode_of(self.path)
        except sqlite3.DatabaseError as exc:
            self.close()
            if schema.in_use(exc):
                raise DatabaseError(schema.in_use_text(self.path) + "; nothing was written"
                                    ) from None
            raise DatabaseError(
                f"{self.path} is damaged ({exc}); restore it from git "
                f"(git checkout -- {self.path.name}) or move it away"
            ) from None
        except BaseException:
            self.close()
            raise
        self._sound = True

    def _set_aside_foreign_journal(self) -> Path | None:
        """Move a rollback journal that belongs to an earlier copy of the file out of
        SQLite's way (into the repository's folder when there is one, never deleted), so it
        is not replayed onto the file git put there; where it went, or None."""
        journal = schema.foreign_journal(self.path)
        if journal is None:
            return None
        git_dir = self.path.parent / ".git"
        place = git_dir if git_dir.is_dir() else self.path.parent
        stamp = schema.now_iso()[:19].replace("-", "").replace(":", "")
        target = place / f"{journal.name}.stale-{stamp}"
        try:
            journal.rename(target)
        except OSError as exc:
            raise DatabaseError(
                f"{journal} belongs to an earlier copy of {self.path.name} (left by a run "
                f"killed before git replaced the file) and cannot be moved ({exc.strerror}); "
                "move it away by hand and run again") from None
        return target

    def close(self) -> None:
        conn = getattr(self, "conn", None)
        if conn is not None:
            conn.close()
            self.conn = None  # type: ignore[assignment]
            if self._sound:
                # Checked on open (or known good), then written only by this connection.
                schema.remember(self.path)

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """All statements inside commit together, or none does (Ctrl-C included).

        Raise :class:`Rollback` inside to undo everything quietly (a dry run, or a refresh
        that changed nothing and must leave the file byte-identical).
        """
        if self.identity is not None:
            # Replaced while this connection sat open (a pull while a prompt waited): SQLite
            # would call it a read-only database.
            self.check_same_file(committed=False)
        self.conn.execute("BEGIN IMMEDIATE")
        changes_before = self.conn.total_changes
        if self.identity is None:  # a file SQLite created on this first write
            self.identity = schema.inode_of(self.path)
        try:
            yield self.conn
            interrupts.pause("before-db-commit")
            self.check_same_file(committed=False)
        except Rollback:
            self._rollback()
            return
        except sqlite3.Error:
            self._rollback()
            # SQLite refuses to write to a file that was unlinked under it ("readonly
            # database"): say what happened, not what it looks like.
            self.check_same_file(committed=False)
            raise
        except BaseException:
            self._rollback()
            raise
        # From COMMIT on the change is kept: a Ctrl-C now waits until the caller has written
        # and committed the data files (interrupts.py).
        with interrupts.deferred():
            # A transaction that changed no row leaves nothing for the files and git to follow.
            if self.on_commit is not None and self.conn.total_changes != changes_before:
                self.on_commit()
            self.conn.execute("COMMIT")
            self._before.clear()
            interrupts.pause("after-db-commit")
            self.check_same_file(committed=True)
            self._saved()

    def _saved(self) -> None:
        if self.on_saved is not None:
            self.on_saved(schema.signature(self.path))

    def _rollback(self) -> None:
        """Undo the open transaction; SQLite has already undone it after some errors (a full
        disk), and a second ROLLBACK would hide the real cause behind "no transaction"."""
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")
        self._before.clear()

    def check_same_file(self, *, committed: bool) -> None:
        """Raise FileReplaced when the folder's ``sre_data.db`` is no longer the file this
        connection writes to (a git pull or checkout replaced it meanwhile: the folder lock
        cannot stop git). The change is then in the unlinked old file, not in the folder."""
        if schema.inode_of(self.path) != self.identity:
            raise FileReplaced(self.path, committed=committed)

    def check(self) -> None:
        """A full ``quick_check`` now, whatever the remembered stamp says."""
        schema.integrity(self.conn, self.path)

    def compact(self, *, always: bool = False) -> bool:
        """VACUUM after a big change (``always``: whatever the free pages), so the committed
        file is no larger than its data; True when it ran."""
        ran = schema.compact(self.conn, 0 if always else schema.VACUUM_FREE_PAGES)
        if ran:
            self._saved()
        return ran


    # ------------------------------------------------------------------ reading
    def schema_version(self) -> int:
        return self.conn.execute("PRAGMA user_version").fetchone()[0]

    def is_empty(self) -> bool:
        return not self.conn.execute("SELECT 1 FROM capabilities LIMIT 1").fetchone()

    def load_model(self) -> dict[str, mt.Capability]:
        """Active capabilities in model order, each with its levels."""
        caps = self.conn.execute(
            "SELECT capability, category FROM capabilities WHERE archived_at IS NULL "
            "ORDER BY position, capability"
        ).fetchall()
        rows: dict[str, dict[int, list[dict]]] = defaultdict(lambda: defaultdict(list))
        for r in self.conn.execute(
            "SELECT * FROM questions WHERE archived_at IS NULL ORDER BY capability, level, seq"
        ):
            rows[r["capability"]][r["level"]].append(dict(r))
        model = {}
        for c in caps:
            levels = {lv: mt.merge_level_rows(qs) for lv, qs in rows[c["capability"]].items()}
            model[c["capability"]] = mt.Capability(c["capability"], c["category"], levels)
        return model

    def load_assets(self) -> dict[str, AssetInfo]:
        """Active assets with their flows, team and target (highest Target Level of its flows)."""
        assets: dict[str, AssetInfo] = {}
        for r in self.conn.execute(
            "SELECT flow, asset, team, target_level FROM flows WHERE archived_at IS NULL "
            "ORDER BY position, flow, asset"
        ):
            info = assets.setdefault(r["asset"], AssetInfo(r["asset"]))
            info.flows.append(r["flow"])
            info.targets.append(r["target_level"])
            if r["team"] and not info.team:
                info.team = r["team"]
        return assets

    def categories_ever(self) -> set[str]:
        """Every category the model holds or held (archived capabilities' too)."""
        return {r["category"] for r in self.conn.execute("SELECT category FROM capabilities")}

    def flow_assets_ever(self) -> set[tuple[str, str]]:
        """Every (flow, asset) pair flows.csv ever listed, archived ones too."""
        return {(r["flow"], r["asset"]) for r in self.conn.execute("SELECT flow, asset FROM flows")}

    def _rows_in_scope(self, sql: str, scope: set[tuple[str, str]] | None
                       ) -> Iterable[sqlite3.Row]:
        """Rows of ``sql`` (a table keyed by asset, capability): a few cells are looked up by
        key, more read in one pass (the caller still filters on ``scope``)."""
        if scope is not None and len(scope) <= 64:
            return [r for a, c in scope for r in self.conn.execute(
                sql + " WHERE asset = ? AND capability = ?", (a, c))]
        return self.conn.execute(sql)

    def load_cells(self, scope: Iterable[tuple[str, str]] | None = None) -> dict:
        """Recorded cells keyed by (asset, capability)."""
        cells = {}
        wanted = set(scope) if scope is not None else None
        for r in self._rows_in_scope("SELECT * FROM cells", wanted):
            key = (r["asset"], r["capability"])
            if wanted is not None and key not in wanted:
                continue
            cells[key] = mt.Cell(
                asset=r["asset"], capability=r["capability"], state=r["state"], level=r["level"],
                na_reason=r["na_reason"], na_until=r["na_until"], assessed_by=r["assessed_by"],
                assessed_at=r["assessed_at"], failed_question=r["failed_question"],
            )
        return cells

    def load_items(self, states: Iterable[str] | None = None,
                   assets: Iterable[str] | None = None) -> list[dict]:
        """Items as dicts (the key, the level's words from the model, the lifecycle),
        optionally only those in ``states`` and of ``assets``; in key order."""
        return list(self.iter_items(states, assets))

    def iter_items(self, states: Iterable[str] | None = None,
                   assets: Iterable[str] | None = None) -> Iterator[dict]:
        """As :meth:`load_items`, one dict at a time (for callers that write as they read)."""
        words = self.item_words()
        for r in self.item_rows(states, assets):
            yield words(r)

    def item_rows(self, states: Iterable[str] | None = None,
                  assets: Iterable[str] | None = None, *,
                  fields: Sequence[str] | None = None, ordered: bool = True
                  ) -> list[tuple]:
        """The item rows (no model words) as plain tuples, optionally filtered, in key order
        (``ordered`` false: in no order, for a caller that sorts them itself): the ``fields``
        (of :data:`ITEM_FIELDS`, the key's three first; None: all), then their cell's state,
        level and the question answered no (None when the cell has no assessment)."""
        fields = tuple(fields or ITEM_FIELDS)
        if fields[:3] != ITEM_FIELDS[:3] or not set(fields) <= set(ITEM_FIELDS):
            raise ValueError(f"item fields {fields!r}: the key's three first, then any of "
                             f"{ITEM_FIELDS!r}")
        columns = ", ".join(f"i.{f}" for f in fields)  # checked names only
        sql, params = (f"SELECT {columns}, c.state, c.level, c.failed_question FROM items AS i "
                       "LEFT JOIN cells AS c USING (asset, capability) WHERE 1=1", [])
        wanted = None if states is None else list(states)
        if wanted is not None:
            sql += f" AND i.state IN ({','.join('?' * len(wanted))})"
            params += wanted
        sql, params = _asset_filter(sql, params, assets, "i.")
        cur = self.conn.cursor()
        cur.row_factory = None  # a tuple is the cheapest row, and a report reads 10^5 of them
        rows = cur.execute(sql + (" ORDER BY 1, 2, 3" if ordered else ""), params).fetchall()
        if wanted is None or mt.OPEN in wanted:
            rows.extend(self._derived_rows(fields, assets))
            if ordered:  # two runs in key order: the sort merges them
                rows.sort(key=itemgetter(0, 1, 2))
        return rows

    def _derived_rows(self, fields: Sequence[str], assets: Iterable[str] | None
                      ) -> Iterator[tuple]:
        """The items kept in their cells (schema 5) as :meth:`item_rows` rows, in key order.

        Made here, not by SQL over all_items: a derived item differs from the others of its
        cell only by its level, so each row is its key and one shared middle part."""
        sql, params = _asset_filter(
            "SELECT asset, capability, open_levels, open_since, state, level, failed_question "
            "FROM cells WHERE open_levels != ''", [], assets)
        cur = self.conn.cursor()
        cur.row_factory = None
        rest = fields[3:]
        middles: dict[str, tuple] = {}  # by open_since: one, or a few, per file
        levels = {str(n): n for n in range(1, mt.MAX_LEVEL + 1)}
        for asset, capability, digits, since, state, level, failed in cur.execute(sql, params):
            middle = middles.get(since)
            if middle is None:
                middle = middles[since] = tuple(
                    since if f in ("opened_at", "updated_at") else _DERIVED_VALUES[f]
                    for f in rest)
            cell = (state, level, failed)
            for digit in digits:
                yield (asset, capability, levels[digit], *middle, *cell)

    def story_item_rows(self, fields: Sequence[str]) -> list[sqlite3.Row]:
        """The stored items that carry a Rally story (its ObjectID or FormattedID), with
        ``fields`` (of :data:`ITEM_FIELDS`): what ``sync`` matches Rally's stories by, without
        reading the 10^5 items that have none (a derived item never has one)."""
        if not fields or not set(fields) <= set(ITEM_FIELDS):
            raise ValueError(f"item fields {fields!r}: any of {ITEM_FIELDS!r}")
        columns = ", ".join(fields)  # checked names only
        return self.conn.execute(
            f"SELECT {columns} FROM items WHERE rally_oid != '' OR rally_id != ''").fetchall()

    def item_words(self, fields: Sequence[str] | None = None):
        """A function turning a row of :meth:`item_rows` (read with the same ``fields``) into
        the full item dict: the stored fields, the key, the level's words from the model
        (archived rows too, for closed items of a removed capability), ``current_level`` (its
        cell's) and, for an open item, why it is open (derived from its cell now)."""
        fields = fields or ITEM_FIELDS
        specs = self.level_specs()
        categories = {r["capability"]: r["category"] for r in self.conn.execute(
            "SELECT capability, category FROM capabilities")}
        model = self.load_model()
        reasons: dict[tuple, str] = {}  # the same gap recurs on many assets
        # The level's words are the same for every item of that level: made once per level,
        # in a dict of every key in its place that each of its items starts as a copy of.
        fixed: dict[tuple[str, int], dict] = {}
        blank = dict.fromkeys(fields)
        gaps = (mt.OPEN, mt.DONE)  # mt.is_open

        def level_words(capability: str, level: int) -> dict:
            spec = specs.get((capability, level))
            made = fixed[(capability, level)] = {
                **blank,
                "category": categories.get(capability, ""),
                "criteria": spec.criteria if spec else "",
                "owner": spec.owner if spec else "Asset",
                "priority": spec.priority if spec else "P3",
                "go_live": int(spec.go_live) if spec else 0,
                "milestone": spec.milestone if spec else "",
                "key": None,
                "current_level": None,
            }
            return made

        stored = len(fields)

        def made(r: sqlite3.Row) -> dict:
            asset, capability, level = r[0], r[1], r[2]
            item = (fixed.get((capability, level)) or level_words(capability, level)).copy()
            # The stored fields only: zip stops before the cell's columns, which follow them.
            item.update(zip(fields, r, strict=False))
            cell_state, current, failed = r[stored:]
            item["key"] = mt.item_key(asset, capability, level)
            item["current_level"] = current
            if item["state"] in gaps and capability in model:
                memo = (capability, level, cell_state, current, failed)
                why = reasons.get(memo)
                if why is None:
                    why = reasons[memo] = mt.gap_reason(model[capability], mt.Cell(
                        asset, capability, cell_state or mt.NOT_ASSESSED, current,
                        failed_question=failed or ""), level)
                item["why"] = why
            return item

        # Without a story or a time of its own, an item is its asset and key plus what it
        # shares with the items of the same level, state and cell on other assets (an
        # untouched gap recurs on thousands): made once per such shape, then copied.
        if set(fields) & _ITEM_TIMES:
            return made
        stories = [n for n, f in enumerate(fields) if f in _STORY_FIELDS]
        shapes: dict[tuple, dict] = {}

        def words(r: sqlite3.Row) -> dict:
            shape = r[1:]  # all but the asset
            item = shapes.get(shape)
            if item is None:
                item = made(r)
                if any(r[n] for n in stories):
                    return item
                shapes[shape] = item
            item = item.copy()
            item["asset"] = asset = r[0]
            item["key"] = mt.item_key(asset, r[1], r[2])
            return item

        return words

    def level_specs(self) -> dict[tuple[str, int], mt.LevelSpec]:
        """Every (capability, level) the model ever defined, folded from its question rows:
        the active rows, else the archived ones."""
        rows: dict[tuple[str, int], tuple[list, list]] = defaultdict(lambda: ([], []))
        for r in self.conn.execute(
            "SELECT capability, level, criteria, question, owner, priority, go_live, milestone, "
            "archived_at FROM questions ORDER BY capability, level, seq"
        ):
            rows[(r["capability"], r["level"])][r["archived_at"] is not None].append(dict(r))
        return {k: mt.merge_level_rows(active or archived)
                for k, (active, archived) in rows.items()}

    def matrix_cells(self, assets: Iterable[str] | None = None) -> Iterator[tuple]:
        """The recorded cells (of ``assets``) as plain tuples of :class:`maturity.Cell`'s
        fields in order: the matrix reads every cell, and a tuple is the cheapest row."""
        sql, params = _asset_filter(
            "SELECT asset, capability, state, level, na_reason, na_until, assessed_by, "
            "assessed_at, failed_question FROM cells WHERE 1=1", [], assets)
        cur = self.conn.cursor()
        cur.row_factory = None
        return cur.execute(sql, params)

    def cell_levels(self, assets: Iterable[str] | None = None, *, by: bool = False
                    ) -> Iterator[tuple]:
        """``(asset, capability, state, level, na_until)`` of the recorded cells (of
        ``assets``): all the terminal matrix needs of a cell (``by``: and who assessed it)."""
        sql, params = _asset_filter(
            "SELECT asset, capability, state, level, na_until" + (", assessed_by" if by else "")
            + " FROM cells WHERE 1=1", [], assets)
        cur = self.conn.cursor()
        cur.row_factory = None
        return cur.execute(sql, params)

    def open_levels_by_cell(self, assets: Iterable[str] | None = None
                            ) -> Iterator[tuple[str, str, str, str | None]]:
        """(asset, capability, levels, done levels) of every cell (of ``assets``) with items
        still counted as gaps: the levels of its open and done items as one string of digits,
        and of the done ones (None when none is). The matrix's and the summary's counts
        without a row per item."""
        stored, params = _asset_filter(
            "SELECT asset, capability, level AS levels, CASE WHEN state = ? THEN level END AS "
            "done FROM items WHERE state IN (?, ?)", [mt.DONE, mt.OPEN, mt.DONE], assets)
        derived, params = _asset_filter("SELECT asset, capability, open_levels, NULL FROM "
                                        "cells WHERE open_levels != ''", params, assets)
        cur = self.conn.cursor()
        cur.row_factory = None
        return cur.execute("SELECT asset, capability, group_concat(levels, ''), "
                           f"group_concat(done, '') FROM ({stored} UNION ALL {derived}) "
                           "GROUP BY asset, capability", params)

    def expired_cells(self, today: str) -> list[tuple[str, str]]:
        """Cells whose Not Applicable mark has expired (they count as Not Assessed now)."""
        return [(r[0], r[1]) for r in self.conn.execute(
            "SELECT asset, capability FROM cells WHERE state = ? AND na_until != '' "
            "AND na_until < ?", (mt.NOT_APPLICABLE, today))]

    def history(
        self, asset: str | None = None, capability: str | None = None, since: str | None = None
    ) -> list[dict]:
        """Assessment history, newest first."""
        sql = "SELECT * FROM assessments WHERE 1=1"
        params: list[str] = []
        if asset:
            sql += " AND asset = ?"
            params.append(asset)
        if capability:
            sql += " AND capability = ?"
            params.append(capability)
        if since:
            sql += " AND assessed_at >= ?"
            params.append(since)
        # One order everywhere (the merge driver picks a cell's assessment by it too): time,
        # then the order of recording in the clone, then the id (two clones, the same second).
        sql += " ORDER BY assessed_at DESC, seq DESC, id DESC"
        return [dict(r, answers=json.loads(r["answers"])) for r in self.conn.execute(sql, params)]

    def known_assets(self) -> set[str]:
        """Every asset the database has held: active, archived, or only in the history."""
        return {r[0] for r in self.conn.execute(
            "SELECT asset FROM assets UNION SELECT asset FROM assessments")}

    def history_names(self, column: str) -> set[str]:
        """Every asset (``column="asset"``) or capability ever assessed, archived ones too."""
        if column not in ("asset", "capability"):
            raise ValueError(column)
        return {r[0] for r in self.conn.execute(f"SELECT DISTINCT {column} FROM assessments")}

    def level_history(self) -> sqlite3.Cursor:
        """Every recorded level change, oldest first, as plain tuples (``asset``,
        ``capability``, ``new_state``, ``new_level``, ``na_until``, ``assessed_at``); a cursor:
        read it once, row by row."""
        cur = self.conn.cursor()
        cur.row_factory = None  # a tuple is the cheapest row, and the trend reads them all
        return cur.execute(
            "SELECT asset, capability, new_state, new_level, na_until, assessed_at "
            "FROM assessments ORDER BY assessed_at, seq, id"
        )

    # ------------------------------------------------------------------ assessments
    def record_assessment(
        self,
        asset: str,
        capability: str,
        state: str,
        level: int | None,
        *,
        answers: list[dict],
        failed_question: str,
        notes: str,
        na_reason: str,
        na_until: str,
        assessed_by: str,
        assessed_at: str,
        source: str = "assess",
        refresh: bool = True,
    ) -> list[mt.ItemChange]:
        """Append to the history, set the cell, and (with refresh) update its items.

        Runs inside the caller's transaction.
        """
        old = self.conn.execute(
            "SELECT state, level FROM cells WHERE asset = ? AND capability = ?",
            (asset, capability),
        ).fetchone()
        self.append_history([history_entry(
            asset, capability, old["state"] if old else mt.NOT_ASSESSED,
            old["level"] if old else None, state, level, answers, failed_question, notes,
            na_reason, na_until, assessed_by, assessed_at, source,
        )])
        if not refresh:
            return []
        return self.refresh_items({(asset, capability)}, reassessed={(asset, capability)})

    def append_history(self, entries: list[tuple]) -> None:
        """Append history entries and set their cells (set-based, inside a transaction).

        The cells as they were are kept until the transaction ends: an item closed by this
        change keeps the reason it was open for.
        """
        keys = {(e[1], e[2]) for e in entries}
        before = self.load_cells(keys)
        for key in keys:
            self._before.setdefault(key, before.get(key) or mt.Cell(*key))
        seq = self.conn.execute("SELECT coalesce(max(seq), 0) FROM assessments").fetchone()[0]
        self.conn.executemany(
            "INSERT INTO assessments (id, seq, asset, capability, old_state, old_level, "
            "new_state, new_level, answers, failed_question, notes, na_reason, na_until, "
            "assessed_by, assessed_at, source) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [(e[0], seq + n, *e[1:]) for n, e in enumerate(entries, start=1)],
        )
        self.conn.executemany(
            "INSERT INTO cells (asset, capability, state, level, na_reason, na_until, "
            "failed_question, notes, assessed_by, assessed_at, assessment_id) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(asset, capability) DO UPDATE SET "
            "state = excluded.state, level = excluded.level, na_reason = excluded.na_reason, "
            "na_until = excluded.na_until, failed_question = excluded.failed_question, "
            "notes = excluded.notes, assessed_by = excluded.assessed_by, "
            "assessed_at = excluded.assessed_at, assessment_id = excluded.assessment_id",
            [(e[1], e[2], e[5], e[6], e[10], e[11], e[8], e[9], e[12], e[13], e[0])
             for e in entries],
        )

    # ------------------------------------------------------------------ items
    def desired_items(
        self, today: str, scope: set[tuple[str, str]] | None = None
    ) -> tuple[dict[str, mt.ItemSpec], dict[tuple[str, str], int | None]]:
        """What the rules ask for now: items by key, and assessed levels by cell."""
        model = self.load_model()
        assets = self.load_assets()
        cells = self.load_cells(scope)
        desired: dict[str, mt.ItemSpec] = {}
        levels: dict[tuple[str, str], int | None] = {}
        for key, raw in cells.items():
            cell = mt.effective_cell(raw, today)
            levels[key] = cell.level if cell.state == mt.ASSESSED else None
            cap, info = model.get(key[1]), assets.get(key[0])
            if cap is None or info is None:
                continue
            for spec in mt.items_for_cell(cap, cell, mt.asset_target(info.targets)):
                desired[spec.key] = spec
        return desired, levels

    def refresh_items(
        self,
        scope: set[tuple[str, str]] | None = None,
        reassessed: set[tuple[str, str]] | frozenset = frozenset(),
        now: str | None = None,
    ) -> list[mt.ItemChange]:
        """Bring the items table in line with the rules (inside the caller's transaction)."""
        now = now or now_iso()
        desired, levels = self.desired_items(now[:10], scope)
        existing: dict[str, mt.ItemRecord] = {}
        sql = "SELECT asset, capability, level, state, work_status, rally_state, rally_oid " \
              "FROM all_items"
        for r in self._rows_in_scope(sql, scope):
            if scope is not None and (r["asset"], r["capability"]) not in scope:
                continue
            key = mt.item_key(r["asset"], r["capability"], r["level"])
            existing[key] = mt.ItemRecord(
                key, r["state"], r["work_status"], r["rally_state"], r["rally_oid"]
            )
        changes = mt.reconcile(existing, desired, levels, frozenset(reassessed), scope)
        c = self.conn
        schema.materialise_items(c, [mt.split_key(ch.key) for ch in changes
                                     if ch.old_state is not None])
        reasons = self._closing_reasons([ch.key for ch in changes if not mt.is_open(
            ch.new_state) and ch.old_state is not None], now[:10])
        for ch in changes:
            if ch.old_state is None:
                continue
            asset, capability, level = mt.split_key(ch.key)
            if ch.new_state == mt.OPEN:
                c.execute(
                    "UPDATE items SET state=?, work_status=?, why='', closed_at='', done_at='', "
                    "opened_at=?, updated_at=? WHERE asset=? AND capability=? AND level=?",
                    (ch.new_state, ch.work_status, now, now, asset, capability, level),
                )
            else:
                c.execute(
                    "UPDATE items SET state=?, why=?, closed_at=?, updated_at=? "
                    "WHERE asset=? AND capability=? AND level=?",
                    (ch.new_state, reasons.get(ch.key, ""), now, now, asset, capability, level),
                )
        # New items, and reopened ones without a story, are untouched: kept in their cells
        # where they can be (schema 5), else as rows.
        schema.fold_items(c, {mt.split_key(ch.key)[:2] for ch in changes
                              if ch.old_state is not None},
                          opened=[mt.split_key(ch.key) for ch in changes
                                  if ch.old_state is None], now=now)
        return changes

    def _closing_reasons(self, keys: list[str], today: str) -> dict[str, str]:
        """Why each closing item was open: from its cell as it was before this transaction
        changed it, and the level's words (stored with the item once it closes)."""
        if not keys:
            return {}
        specs = self.level_specs()
        categories = {r["capability"]: r["category"] for r in self.conn.execute(
            "SELECT capability, category FROM capabilities")}
        caps: dict[str, mt.Capability] = {}
        for (name, lv), spec in specs.items():
            cap = caps.setdefault(name, mt.Capability(name, categories.get(name, ""), {}))
            cap.levels[lv] = spec  # type: ignore[index]
        wanted = {mt.split_key(k)[:2] for k in keys} - set(self._before)
        now_cells = self.load_cells(wanted) if wanted else {}
        out = {}
        for key in keys:
            asset, capability, level = mt.split_key(key)
            cell = self._before.get((asset, capability)) or now_cells.get(
                (asset, capability)) or mt.Cell(asset, capability)
            known = caps.get(capability)
            out[key] = mt.gap_reason(known, cell, level) if known else ""
        return out

    def meta(self, prefix: str = "") -> dict[str, str]:
        """The ``meta`` values whose keys start with ``prefix``."""
        return {r[0]: r[1] for r in self.conn.execute(
            "SELECT key, value FROM meta WHERE substr(key, 1, ?) = ?", (len(prefix), prefix))}

    def set_meta(self, key: str, value: str) -> None:
        """Set one ``meta`` value (inside the caller's transaction)."""
        self.conn.execute("INSERT INTO meta (key, value) VALUES (?, ?) "
                          "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))

    def set_item_story(
        self, key: str, oid: str, formatted_id: str, url: str, rally_state: str, now: str
    ) -> None:
        """Record the Rally story of an item (called as soon as Rally returns it)."""
        schema.materialise_items(self.conn, [mt.split_key(key)])
        self.conn.execute(
            "UPDATE items SET rally_oid=?, rally_id=?, rally_url=?, updated_at=? "
            "WHERE asset=? AND capability=? AND level=?",
            (oid, formatted_id, url, now, *mt.split_key(key)),
        )
        self.apply_story_states({key: rally_state}, now)

    def apply_story_states(self, states: dict[str, str | None], now: str) -> list[tuple]:
        """Apply Rally schedule states (None: story gone) to items; returns what changed.

        Each change is (key, old work status, new work status, old state, new state).
        """
        if not states:
            return []
        rows: dict[str, sqlite3.Row] = {}
        keys = [mt.split_key(k) for k in states]
        # A derived item (schema 5) gets its row first: the rows are then found by key, which
        # the derived half of all_items cannot do.
        schema.materialise_items(self.conn, keys)
        for i in range(0, len(keys), 300):  # stay under SQLite's bound-variable limit
            chunk = keys[i:i + 300]
            marks = ",".join("(?,?,?)" for _ in chunk)
            rows.update((mt.item_key(r["asset"], r["capability"], r["level"]), r)
                        for r in self.conn.execute(
                "SELECT asset, capability, level, state, work_status, rally_state, rally_oid, "
                f"done_at FROM items WHERE (asset, capability, level) IN (VALUES {marks})",
                [v for k in chunk for v in k]))
        changed, params = [], []
        for key, rally_state in states.items():
            r = rows.get(key)
            if r is None:
                continue
            rec = mt.ItemRecord(key, r["state"], r["work_status"], r["rally_state"], r["rally_oid"])
            new = mt.apply_story_state(rec, rally_state)
            if new == rec:
                continue
            done_at = r["done_at"]
            if new.state == mt.DONE and rec.state != mt.DONE:
                done_at = now
            changed.append((key, rec.work_status, new.work_status, rec.state, new.state))
            params.append((new.state, new.work_status, new.rally_state, done_at, now,
                           r["asset"], r["capability"], r["level"]))
        self.conn.executemany(
            "UPDATE items SET state=?, work_status=?, rally_state=?, done_at=?, updated_at=? "
            "WHERE asset=? AND capability=? AND level=?",
            params,
        )
        schema.fold_items(self.conn, {k[:2] for k in keys})  # those it did not change
        return changed


    # ------------------------------------------------------------------ evidence (SPEC §12)
    def load_checks(self, *, archived: bool = False) -> list[CheckRow]:
        """The checks imported from checks.csv, in file order (``archived``: the archived ones
        too); ``line`` is the row's line in the file when it was imported."""
        sql = "SELECT * FROM checks" + ("" if archived else " WHERE archived_at IS NULL")
        return [CheckRow(r["name"], r["capability"], r["level"], r["question"], r["kind"],
                         r["target"], r["expect"], r["valid_days"],
                         tuple(json.loads(r["applies_to"])), r["mode"], r["position"])
                for r in self.conn.execute(sql + " ORDER BY position, name")]

    def load_asset_params(self) -> dict[str, dict[str, str]]:
        """Each asset's parameters from assets.csv (active rows): asset -> {name: value}."""
        params: dict[str, dict[str, str]] = {}
        for r in self.conn.execute("SELECT asset, name, value FROM asset_params "
                                   "WHERE archived_at IS NULL ORDER BY asset, name"):
            params.setdefault(r["asset"], {})[r["name"]] = r["value"]
        return params

    def record_evidence(self, results: Iterable[VerdictLike]) -> int:
        """Store the verdicts of a run (inside the caller's transaction): anything with the
        fields ``asset, check, verdict, detail, link, checked_at, valid_until, fingerprint``
        (the runner's ``Verdict``; ``link`` may be None). A pass or fail
        replaces the definitive evidence and clears the latest non-definitive run; any other
        verdict is kept as the latest run only, so it never erases valid evidence. Returns the
        rows written."""
        definitive, other = [], []
        for v in results:
            if v.verdict in DEFINITIVE:
                definitive.append((v.asset, v.check, v.verdict, v.detail, v.link or "",
                                   v.checked_at, v.valid_until or "", v.fingerprint))
            else:
                other.append((v.asset, v.check, v.verdict, v.detail, v.checked_at))
        self.conn.executemany(
            "INSERT INTO evidence (asset, check_name, verdict, detail, link, checked_at, "
            "valid_until, fingerprint) VALUES (?,?,?,?,?,?,?,?) "
            "ON CONFLICT(asset, check_name) DO UPDATE SET verdict = excluded.verdict, "
            "detail = excluded.detail, link = excluded.link, checked_at = excluded.checked_at, "
            "valid_until = excluded.valid_until, fingerprint = excluded.fingerprint, "
            "last_verdict = '', last_detail = '', last_checked_at = ''", definitive)
        self.conn.executemany(
            "INSERT INTO evidence (asset, check_name, last_verdict, last_detail, "
            "last_checked_at) VALUES (?,?,?,?,?) ON CONFLICT(asset, check_name) DO UPDATE SET "
            "last_verdict = excluded.last_verdict, last_detail = excluded.last_detail, "
            "last_checked_at = excluded.last_checked_at "
            # The same could-not-tell again is no news: a nightly run whose sources stay
            # unconfigured or down changes nothing, so it makes no commit.
            "WHERE last_verdict IS NOT excluded.last_verdict "
            "OR last_detail IS NOT excluded.last_detail", other)
        return len(definitive) + len(other)

    def load_evidence(self, assets: Iterable[str] | None = None
                      ) -> dict[tuple[str, str], EvidenceRecord]:
        """The stored evidence (of ``assets``) keyed by (asset, check)."""
        sql, params = _asset_filter(
            "SELECT asset, check_name, verdict, detail, link, checked_at, valid_until, "
            "fingerprint, last_verdict, last_detail, last_checked_at FROM evidence WHERE 1=1",
            [], assets)
        cur = self.conn.cursor()
        cur.row_factory = None
        return {(r[0], r[1]): EvidenceRecord(*r) for r in cur.execute(sql, params)}

    def person_levels(self, keys: Iterable[tuple[str, str]], *, checks_source: str
                      ) -> dict[tuple[str, str], tuple[str, int | None]]:
        """The latest assessment a person made of each cell of ``keys`` (asset, capability)
        that has one: (state, level), history entries whose source is ``checks_source`` (the
        checks' own) left out. One indexed look-up per cell."""
        cur = self.conn.cursor()
        cur.row_factory = None
        out = {}
        for asset, capability in keys:
            row = cur.execute(
                "SELECT new_state, new_level FROM assessments WHERE asset = ? AND "
                "capability = ? AND source != ? ORDER BY assessed_at DESC, seq DESC LIMIT 1",
                (asset, capability, checks_source)).fetchone()
            if row is not None:
                out[(asset, capability)] = (row[0], row[1])
        return out

    def set_override(self, override: Override) -> None:
        """Record (or replace) the override of one check for one asset (inside the caller's
        transaction)."""
        o = override
        self.conn.execute(
            "INSERT INTO overrides (asset, check_name, answer, reason, set_by, set_at, until, "
            "cleared_at) VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(asset, check_name) DO UPDATE SET "
            "answer = excluded.answer, reason = excluded.reason, set_by = excluded.set_by, "
            "set_at = excluded.set_at, until = excluded.until, cleared_at = excluded.cleared_at",
            (o.asset, o.check, o.answer, o.reason, o.by, o.at, o.until, o.cleared_at))

    def clear_override(self, asset: str, check: str, at: str) -> bool:
        """Lift the standing override of ``check`` for ``asset``; False when there is none."""
        cur = self.conn.execute(
            "UPDATE overrides SET cleared_at = ? WHERE asset = ? AND check_name = ? "
            "AND cleared_at = ''", (at, asset, check))
        return cur.rowcount > 0

    def load_overrides(self, *, cleared: bool = False) -> list[Override]:
        """The overrides not cleared (``cleared``: all), by asset and check. Expiry is the
        rules' business (an expired one is still listed)."""
        sql = "SELECT asset, check_name, answer, reason, set_by, set_at, until, cleared_at " \
              "FROM overrides" + ("" if cleared else " WHERE cleared_at = ''")
        cur = self.conn.cursor()
        cur.row_factory = None
        return [Override(*r) for r in cur.execute(sql + " ORDER BY asset, check_name")]


def history_entry(asset: str, capability: str, old_state: str, old_level: int | None,
                  state: str, level: int | None, answers: list[dict], failed_question: str,
                  notes: str, na_reason: str, na_until: str, assessed_by: str,
                  assessed_at: str, source: str) -> tuple:
    """One history row, in the column order of the assessments table."""
    return (uuid.uuid4().hex, asset, capability, old_state, old_level, state, level,
            json.dumps(answers), failed_question, notes, na_reason, na_until, assessed_by,
            assessed_at, source)


@dataclass
class AssetInfo:
    """An active asset: its flows, Target Levels per flow, and team."""

    asset: str
    flows: list[str] = field(default_factory=list)
    targets: list[int] = field(default_factory=list)
    team: str = ""

    @property
    def target(self) -> int:
        return mt.asset_target(self.targets)

    @property
    def flow_label(self) -> str:
        return ", ".join(sorted(set(self.flows)))


def _asset_filter(sql: str, params: list, assets: Iterable[str] | None, alias: str = ""
                  ) -> tuple[str, list]:
    """``sql`` (ending in a WHERE clause) limited to ``assets`` (None: all), one parameter."""
    if assets is None:
        return sql, params
    return (sql + f" AND {alias}asset IN (SELECT value FROM json_each(?))",
            [*params, json.dumps(sorted(set(assets)))])


# An item derived from its cell (schema 5), beyond its key: open, no story, nothing in its past,
# opened (and last changed) when the cell's items opened (open_since).
_DERIVED_VALUES = {"state": mt.OPEN, "work_status": mt.NOT_STARTED,
                   **dict.fromkeys(("rally_state", "rally_oid", "rally_id", "rally_url", "why",
                                    "done_at", "closed_at"), "")}

