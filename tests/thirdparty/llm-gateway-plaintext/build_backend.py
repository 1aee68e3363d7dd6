"""A dependency-free PEP 517 backend that builds this pure-Python wheel (see pyproject.toml)."""

from __future__ import annotations

import base64
import hashlib
import tomllib
import zipfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parent
PACKAGE = "plaintext_dialect"


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _dist_info(project: dict[str, Any]) -> dict[str, str]:
    metadata = ["Metadata-Version: 2.1", f"Name: {project['name']}", f"Version: {project['version']}",
                f"Summary: {project.get('description', '')}", f"Requires-Python: {project['requires-python']}"]
    metadata += [f"Requires-Dist: {dep}" for dep in project.get("dependencies", [])]
    entry_points = "".join(
        f"[{group}]\n" + "".join(f"{name} = {target}\n" for name, target in entries.items()) + "\n"
        for group, entries in project.get("entry-points", {}).items()
    )
    wheel = "Wheel-Version: 1.0\nGenerator: plaintext build_backend\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    return {"METADATA": "\n".join(metadata) + "\n", "WHEEL": wheel, "entry_points.txt": entry_points}


def build_wheel(wheel_directory: str, config_settings: Any = None, metadata_directory: Any = None) -> str:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    dist = f"{project['name'].replace('-', '_')}-{project['version']}"
    files = {p.relative_to(ROOT).as_posix(): p.read_bytes() for p in sorted((ROOT / PACKAGE).rglob("*.py"))}
    files.update({f"{dist}.dist-info/{name}": text.encode() for name, text in _dist_info(project).items()})
    record = "".join(f"{path},{_record_hash(data)},{len(data)}\n" for path, data in files.items())
    files[f"{dist}.dist-info/RECORD"] = (record + f"{dist}.dist-info/RECORD,,\n").encode()
    name = f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(Path(wheel_directory) / name, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, data in files.items():
            zf.writestr(path, data)
    return name
