"""Are the CSVs what the database was last built from?

``setup --from-csv`` builds the definitions from the data folder's CSVs; a hand edit, a merge or
a checkout can change a CSV afterwards. Every command that opens the database asks
:func:`stale_sources` and says in one line which file differs, so nothing works silently from a
stale model (SPEC §11 "Teammates never lose each other's rows").

Each file's fingerprint (its SHA-256) is kept in the ``meta`` table as ``source:<file>`` when
setup imports it: a file with the same bytes is in step without being read. A file whose bytes
differ is read and compared with the database row by row (a merge that gave both the same rows
is no difference).

To watch another file (say ``checks.csv``), add a :class:`Source` to :data:`SOURCES`: its name
and a function turning the file into ``{definitions table: {key: values}}`` as
:func:`~sre_maturity.store.imports.differences` compares them; setup records its fingerprint
through :func:`fingerprints`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from database import Database
from sre_maturity.store import checkfiles, csvfiles, imports
from sre_maturity.support.errors import InputError, program_name

META_PREFIX = "source:"
# The files setup commits beside the database: the CSVs it reads (add a new one here) and the
# repository's own files. After a --no-commit setup, the next commit takes those never
# committed (Context.commit).
SETUP_FILES = (csvfiles.FLOWS_FILE, csvfiles.MODEL_FILE, csvfiles.ASSESSMENTS_FILE,
               checkfiles.CHECKS_FILE, checkfiles.ASSETS_FILE, ".gitattributes", ".gitignore")


@dataclass(frozen=True)
class Source:
    """A CSV the definitions are built from."""

    file: str
    # The file's rows as definitions: {table: {key: values}} (raises InputError when unreadable).
    definitions: Callable[[Path], dict[str, dict[tuple, tuple]]]
    # A missing optional file holds no rows of its ``tables``: a difference only while the
    # database still holds some (a removed checks.csv), found without reading any file.
    required: bool = True
    tables: tuple[str, ...] = ()


class _Unchecked(Exception):
    """A file this one is validated against cannot be read: that file's own line says so."""


def _assets_definitions(path: Path) -> dict[str, dict[tuple, tuple]]:
    """assets.csv as definitions, validated against the folder's flows."""
    try:
        flows = csvfiles.read_flows(path.parent / csvfiles.FLOWS_FILE)
    except InputError:
        raise _Unchecked from None
    return imports.param_definitions(checkfiles.read_assets(path, flows))


def _checks_definitions(path: Path) -> dict[str, dict[tuple, tuple]]:
    """checks.csv as definitions, validated as setup does: against the folder's flows, model
    and the columns of assets.csv."""
    folder = path.parent
    try:
        flows = csvfiles.read_flows(folder / csvfiles.FLOWS_FILE)
        model = csvfiles.read_model(folder / csvfiles.MODEL_FILE)
        assets_path = folder / checkfiles.ASSETS_FILE
        assets = checkfiles.read_assets(assets_path, flows) if assets_path.is_file() else []
    except InputError:
        raise _Unchecked from None
    return imports.check_definitions(
        checkfiles.read_checks(path, model, flows, checkfiles.param_columns(assets)))


SOURCES: list[Source] = [
    Source(csvfiles.FLOWS_FILE, lambda p: imports.flow_definitions(csvfiles.read_flows(p))),
    Source(csvfiles.MODEL_FILE, lambda p: imports.model_definitions(csvfiles.read_model(p))),
    # Optional, but a file removed while the database holds its rows is a difference too.
    Source(checkfiles.CHECKS_FILE, _checks_definitions, required=False, tables=("checks",)),
    Source(checkfiles.ASSETS_FILE, _assets_definitions, required=False,
           tables=("asset_params",)),
]


def fingerprint(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fingerprints(folder: Path) -> dict[str, str]:
    """The ``meta`` rows recording the sources as they are now (setup writes them)."""
    return {META_PREFIX + s.file: fingerprint(folder / s.file)
            for s in SOURCES if (folder / s.file).is_file()}


def stale_sources(db: Database, folder: Path) -> list[str]:
    """One line per source file that differs from the database (empty: all in step)."""
    recorded = db.meta(META_PREFIX)
    out = []
    for source in SOURCES:
        path = folder / source.file
        if not path.is_file() and source.required:
            out.append(f"{source.file} is missing from {folder}; restore it "
                       f"(git checkout -- {source.file})")
            continue
        try:
            if not path.is_file():
                found = imports.differences(db, dict.fromkeys(source.tables, {}))
            elif recorded.get(META_PREFIX + source.file) == fingerprint(path):
                continue
            else:
                found = imports.differences(db, source.definitions(path))
        except _Unchecked:
            continue
        except InputError as exc:
            out.append(f"{source.file} changed since the last setup and cannot be read: {exc}")
            continue
        except OSError as exc:
            out.append(f"{source.file} cannot be read ({exc.strerror})")
            continue
        if found:
            out.append(f"{source.file} differs from what the database was built from ("
                       + "; ".join(found) + f"); run '{program_name()} setup --from-csv' to "
                       f"apply it, or git checkout -- {source.file} to drop the edit")
    return out
