"""The built wheel, installed into a fresh virtual environment, works from any folder: it ships
the default maturity_model.csv and the example data (SPEC §10 "Installing")."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(*cmd: str | Path, cwd: Path, env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, f"{cmd}: {proc.stdout}\n{proc.stderr}"
    return proc


def _clean_env(home: Path) -> dict[str, str]:
    """No path back to the source tree, no coverage hooks (the installed copy is not the
    code under measurement), and a git identity for the commits."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("COVERAGE", "PYTHON", "VIRTUAL_ENV"))}
    env.update(HOME=str(home), GIT_AUTHOR_NAME="Test Er", GIT_AUTHOR_EMAIL="t@example.com",
               GIT_COMMITTER_NAME="Test Er", GIT_COMMITTER_EMAIL="t@example.com")
    return env


@pytest.mark.slow
def test_the_installed_wheel_sets_up_and_reports_from_another_folder(tmp_path):
    # Build from a copy of the tracked sources, so the work tree gets no build/ or egg-info.
    src = tmp_path / "src"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                             check=True).stdout.decode().split("\0")
    for name in filter(None, tracked):
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    wheels = tmp_path / "wheels"
    _run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", wheels, src, cwd=tmp_path)
    wheel = next(wheels.glob("sre_tracker-*.whl"))
    # The wheel's top level: the package and the design card's four modules, nothing else.
    with zipfile.ZipFile(wheel) as archive:
        top = {name.split("/")[0] for name in archive.namelist()}
    assert {name for name in top if not name.endswith((".dist-info", ".data"))} == {
        "sre_maturity", "sre_tracker.py", "database.py", "config.py", "interactive_setup.py"}

    # A fresh environment: the wheel alone, its dependencies seen through a .pth pointing at
    # this environment's site-packages (no network needed, and no copy of the sources).
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    _run(sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install",
         "--quiet", "--no-deps", wheel, cwd=tmp_path)
    new_site = Path(subprocess.run(
        [venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True, text=True, check=True).stdout.strip())
    # The environment also holds other projects' modules with the names the tool's modules had
    # before they moved into the package (errors, views, ...): each keeps its own.
    others = tmp_path / "others"
    others.mkdir()
    for name in ("errors", "views", "names", "context", "reports", "status"):
        (others / f"{name}.py").write_text(f"OWNER = 'another project: {name}'\n")
    (new_site / "deps.pth").write_text(sysconfig.get_path("purelib") + "\n" + str(others) + "\n")

    shipped = venv / "share" / "sre-tracker"
    assert (shipped / "maturity_model.csv").read_bytes() == \
        (ROOT / "maturity_model.csv").read_bytes()
    data = tmp_path / "elsewhere" / "data"
    data.mkdir(parents=True)
    for name in ("flows.csv", "assessments.csv", "checks.csv", "assets.csv"):
        shutil.copy(shipped / "examples" / name, data / name)

    tool = venv / "bin" / "sre-tracker"
    env = _clean_env(tmp_path)
    cwd = data.parent
    setup = _run(tool, "--data-dir", data, "setup", "--from-csv", cwd=cwd, env=env)
    assert "wrote the default maturity_model.csv" in setup.stdout
    assert "added (checks.csv, assets.csv): check down-alert" in setup.stdout
    assert (data / "maturity_model.csv").read_bytes() == (ROOT / "maturity_model.csv").read_bytes()
    report = _run(tool, "--data-dir", data, "report", cwd=cwd, env=env)
    assert "rally_import.csv:" in report.stdout and (data / "confluence_page.txt").exists()
    where = _run(venv / "bin" / "python", "-c", "import sre_tracker; print(sre_tracker.__file__)",
                 cwd=cwd, env=env).stdout
    assert where.startswith(str(new_site))  # the installed copy ran, not the sources
    log = _run("git", "log", "--format=%s", cwd=data, env=env).stdout
    assert log.startswith("setup: ")
    owners = _run(venv / "bin" / "python", "-c",
                  "import errors, views, names, context, reports, status; print(errors.OWNER, "
                  "views.OWNER, status.OWNER)", cwd=cwd, env=env).stdout
    assert owners.count("another project") == 3
    # The git merge driver the data folder registered runs the installed entry.
    drivers = _run("git", "config", "--get", "merge.sre-tracker.driver", cwd=data, env=env).stdout
    assert str(new_site / "sre_tracker.py") in drivers
    # Installed, the tool calls itself sre-tracker, and a folder without flows.csv is told
    # where the shipped examples are.
    assert _run(tool, "--version", cwd=cwd, env=env).stdout.startswith("sre-tracker ")
    empty = tmp_path / "empty"
    empty.mkdir()
    refused = subprocess.run([str(tool), "setup", "--from-csv"], cwd=empty, env=env,
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1
    assert "run 'sre-tracker setup' (interactive)" in refused.stderr
    assert f"(examples: {shipped / 'examples'})" in refused.stderr


def test_the_wheel_and_coverage_list_every_top_level_module():
    """A module missing from py-modules is missing from the installed tool (ImportError at
    run time); one missing from source_pkgs goes unmeasured. The package is found whole."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    modules = {p.stem for p in ROOT.glob("*.py")}
    assert set(config["tool"]["setuptools"]["py-modules"]) == modules
    assert set(config["tool"]["coverage"]["run"]["source_pkgs"]) == modules | {"sre_maturity"}
    assert config["tool"]["setuptools"]["packages"]["find"]["include"] == [
        "sre_maturity", "sre_maturity.*"]
    # Every folder of the package is a package, so find_packages takes it into the wheel.
    for folder in (ROOT / "sre_maturity").rglob("*"):
        if folder.is_dir() and folder.name != "__pycache__":
            assert (folder / "__init__.py").is_file(), folder
