"""The wheel is complete: built from the checkout, installed outside it, ``vec labels import`` works.

The category rules (``configs/categories.toml``) and the documented defaults (``configs/default.toml``)
must travel as package data: a command that reads them from the checkout passes here only by accident.

Offline: the wheel is built with the project venv's setuptools (no build isolation, no download), and the
fresh venv reaches the dependencies it does not install (``--no-deps``) through the project venv's
``site-packages``, added as a plain path so that the checkout's editable install does not come along.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BAD_EXPID = "# expnum flag comment\n700001 2 thin clouds\n700002 1 saturated star\n700003 3 bad focus\n"


# Nothing may point the installed vec back at a checkout or at a user's store and config.
CLEAN_ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VEC_CONFIG", "VEC_STORE")}


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=cwd, env=CLEAN_ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{command}\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    return result


def copy_checkout(target: Path) -> Path:
    """The files git tracks (and new ones it does not ignore), so the build never writes in the checkout."""
    listed = run(["git", "ls-files", "-co", "--exclude-standard"], ROOT).stdout.splitlines()
    for name in listed:
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    source = copy_checkout(work / "src")
    out = work / "dist"
    command = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-q",
        "-w",
        str(out),
    ]
    run([*command, str(source)], work)
    return next(out.glob("vec-*.whl"))


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """A fresh venv from the project venv's python, with the wheel installed and nothing else."""
    path = tmp_path_factory.mktemp("venv") / "venv"
    run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(path)], path.parent)
    python = path / "bin" / "python"
    purelib = run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], path)
    # The project venv's packages as a plain path: its .pth files (the editable install) are not read.
    Path(purelib.stdout.strip(), "project-dependencies.pth").write_text(
        sysconfig.get_paths()["purelib"] + "\n"
    )
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q"]
    run([*pip, str(wheel)], path.parent)
    return path


def test_the_wheel_holds_every_package_and_the_configs(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"vecstore/configs/default.toml", "vecstore/configs/categories.toml"} <= names
    packages = {str(p.parent.relative_to(ROOT)) for p in ROOT.glob("*/**/__init__.py")}
    packages = {p for p in packages if p.split("/")[0] in ("vecstore", "ingest", "query")}
    assert {f"{package}/__init__.py" for package in packages} <= names


def test_labels_import_works_from_the_installed_wheel(venv, tmp_path):
    elsewhere = tmp_path / "elsewhere"  # a cwd outside the checkout: nothing can be found by accident
    elsewhere.mkdir()
    python, vec = str(venv / "bin" / "python"), str(venv / "bin" / "vec")
    where = run(
        [python, "-c", "import vecstore, ingest; print(vecstore.__file__, ingest.__file__)"], elsewhere
    )
    assert str(ROOT) not in where.stdout and str(venv) in where.stdout  # the wheel's copy, not the checkout's
    listing = elsewhere / "decam-bad_expid.txt"
    listing.write_text(BAD_EXPID)
    store = str(elsewhere / "store")
    run([vec, "--store", store, "init"], elsewhere)
    result = run([vec, "--store", store, "labels", "import", str(listing)], elsewhere)
    assert "3 labels (decals-badexp), 3 new" in result.stdout, result.stdout + result.stderr
    summary = run([vec, "--store", store, "sql", "SELECT category FROM labels ORDER BY expnum"], elsewhere)
    assert "Clouds_Transparency" in summary.stdout and "Saturated" in summary.stdout
