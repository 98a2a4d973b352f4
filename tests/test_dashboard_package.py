"""How the dashboard ships: its assets are package data (in the wheel and through an editable
install), and the dashboard layer imports only core, so the report writer loads no grpc or asyncio.

tests/test_layers.py holds the layer table of the older layers; this file keeps the dashboard's
rule beside it: `dashboard` imports only `core`, and `live` (the admin endpoint) and `cli` (`run
--html`) import `dashboard`.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from importlib import resources
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.test_layers import imports_of

ASSETS = ("dashboard.html", "dashboard.css", "dashboard.js")


def test_the_dashboard_imports_only_core() -> None:
    for path in sorted((ROOT / "meshsim" / "dashboard").rglob("*.py")):
        for name in imports_of(path):
            parts = name.split(".")
            if parts[0] == "meshsim":
                assert parts[1] in {"core", "dashboard"}, f"{path.relative_to(ROOT)} imports {name}"
            assert parts[0] not in {"grpc", "asyncio", "trio", "time", "datetime"}, f"{path.relative_to(ROOT)}: {name}"


def test_the_installed_package_serves_the_assets_from_this_tree() -> None:
    """The editable install (`pip install -e .`) reads the assets where they are edited."""
    folder = resources.files("meshsim.dashboard") / "assets"
    for name in ASSETS:
        shipped = folder / name
        assert shipped.is_file(), name
        assert shipped.read_bytes() == (ROOT / "meshsim" / "dashboard" / "assets" / name).read_bytes()


@pytest.mark.slow
def test_the_wheel_carries_the_assets(tmp_path: Path) -> None:
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("meshsim-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ASSETS:
        assert f"meshsim/dashboard/assets/{name}" in names


@pytest.mark.slow
def test_writing_a_report_page_loads_neither_grpc_nor_asyncio() -> None:
    code = (
        "import sys, pkgutil, importlib, meshsim.dashboard as d\n"
        "for info in pkgutil.walk_packages(d.__path__, 'meshsim.dashboard.'):\n"
        "    importlib.import_module(info.name)\n"
        "from meshsim.dashboard.page import report_page\n"
        "report_page({'scenario': 'x'}, None)\n"
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in ('grpc', 'asyncio', 'trio'))))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert result.stdout.strip() == ""
