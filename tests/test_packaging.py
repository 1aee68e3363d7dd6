"""An installed wheel (the container image, ``pip install .``) carries every file the code reads
at run time, not only the Python modules: schema migrations, page assets and the like."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def data_files() -> set[str]:
    found = set()
    for package in ("gateway", "plugins"):
        for path in (ROOT / package).rglob("*"):
            if path.is_file() and path.suffix not in (".py", ".pyc") and "__pycache__" not in path.parts:
                found.add(path.relative_to(ROOT).as_posix())
    return found


def test_the_wheel_holds_every_data_file_of_the_packages(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(ROOT)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = tmp_path.glob("llm_gateway-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = data_files()
    assert any(name.endswith(".sql") for name in expected)  # the check looks at real files
    assert expected <= names, sorted(expected - names)
