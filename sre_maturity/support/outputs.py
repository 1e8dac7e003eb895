"""Where a user-named output file may go: never over one of the tool's own files.

``export -o`` takes any path; a slip (``-o sre_data.db``) must not replace the database, the
CSVs the tool reads, what git keeps, or the program itself. Paths are compared by their real
location, so a symlink or ``../data/./sre_data.db`` is caught as well.
"""

from __future__ import annotations

from pathlib import Path

from sre_maturity import HOME
from sre_maturity.support.errors import InputError

# The data folder's files that the tool reads, writes or keeps (SPEC §2, report's outputs).
DATA_FILES = (
    "sre_data.db", "sre_matrix.csv", "flows.csv", "maturity_model.csv", "assessments.csv",
    ".env", ".env.example", ".gitattributes", ".gitignore", "rally_import.csv",
    "confluence_page.txt", "confluence_page.cloud.txt", "confluence_page.html",
    "confluence_rulebook.txt", "confluence_rulebook.cloud.txt", "confluence_rulebook.html",
    "sre_matrix.html",
)
PROGRAM_DIR = HOME
PACKAGE_DIR = HOME / "sre_maturity"


def check_output_file(option: str, value: str, data_dir: Path) -> Path:
    """The path to write ``option value`` to, or InputError (one line) when it is a folder,
    its folder is missing, or it is one of the tool's own files."""
    path = Path(value).expanduser()
    real = path.resolve()
    if real.is_dir():
        raise InputError(f"{option} {value} is a folder; give a file name in it, e.g. "
                         f"{path / 'matrix.csv'}")
    if not real.parent.is_dir():
        raise InputError(f"{option} {value}: folder {path.parent} does not exist; create it "
                         "first")
    owned = _own_file(real, data_dir.resolve())
    if owned:
        raise InputError(f"{option} {value} would overwrite {owned}; choose another file name")
    return path


def _own_file(real: Path, data_dir: Path) -> str | None:
    if real.parent == data_dir and (real.name in DATA_FILES or ".bak-v" in real.name):
        return f"the tool's own {real.name} in {data_dir}"
    for repo_dir in (data_dir / ".git", PROGRAM_DIR / ".git"):
        if real.is_relative_to(repo_dir):
            return f"a file of git's repository ({repo_dir})"
    if real.parent == PROGRAM_DIR and real.suffix in (".py", ".csv", ".toml", ".txt", ".md"):
        return f"the program's own {real.name}"
    if real.is_relative_to(PACKAGE_DIR):
        return f"the program's own {real.relative_to(HOME)}"
    return None
