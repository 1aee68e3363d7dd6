"""Offline checks of ``.github/workflows/``: the GitHub workflow schema (SchemaStore's, bundled with
``check-jsonschema``), the build matrix the project promises, and that every build step goes through
the same ``deploy/build.*`` scripts and tests that run locally. ``actionlint`` sharpens the check when it
is on PATH (its PyPI wrapper builds by downloading the binary from GitHub, so it is not a test extra)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.y*ml"))
ARTIFACTS = ROOT / ".github" / "workflows" / "artifacts.yml"
BUILD_SCRIPT = re.compile(r"deploy[/\\]build\.(sh|ps1)\b")
README_TEST_COMMAND = "python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[test]' && python -m pytest"


def load(path: Path) -> dict[str, Any]:
    # PyYAML reads the bare key `on` as True (YAML 1.1): put it back.
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    if True in doc:
        doc["on"] = doc.pop(True)
    return doc


def steps(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    return [(name, job, step) for name, job in doc["jobs"].items() for step in job["steps"]]


def runs_on(job: dict[str, Any]) -> set[str]:
    target = job["runs-on"]
    return set(job["strategy"]["matrix"]["os"]) if "matrix" in str(target) else {target}


def test_there_are_workflows_and_they_run_the_readme_command() -> None:
    assert ARTIFACTS in WORKFLOWS
    assert README_TEST_COMMAND in (ROOT / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_matches_the_github_schema(path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema",
                             "vendor.github-workflows", str(path)], capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_actionlint_accepts_the_workflow(path: Path) -> None:
    actionlint = shutil.which("actionlint")
    if not actionlint:
        pytest.skip("actionlint not on PATH")
    result = subprocess.run([actionlint, str(path)], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_matrix_builds_each_artifact_on_each_system() -> None:
    doc = load(ARTIFACTS)
    built: dict[str, set[str]] = {"wheel": set(), "binary": set(), "image": set(), "tests": set()}
    for _, job, step in steps(doc):
        run = step.get("run", "")
        systems = runs_on(job)
        if re.search(r"build\.(sh|ps1) all\b", run):
            built["wheel"] |= systems
        if re.search(r"build\.(sh|ps1) binary\b", run) or "tests/test_binary.py" in run:
            built["binary"] |= systems
        if "tests/test_image.py" in run:
            built["image"] |= systems
        if README_TEST_COMMAND in run:
            built["tests"] |= systems
    everywhere = {"ubuntu-latest", "macos-latest", "windows-latest"}
    assert built["wheel"] == everywhere and built["binary"] == everywhere
    assert built["image"] == {"ubuntu-latest"}
    assert built["tests"] == {"ubuntu-latest", "macos-latest"}


def test_every_build_goes_through_the_deploy_scripts_and_local_tests() -> None:
    doc = load(ARTIFACTS)
    for name, _, step in steps(doc):
        run = step.get("run", "")
        if re.search(r"\b(pyinstaller|PyInstaller|docker build|pip wheel)\b", run):
            pytest.fail(f"{name}: builds without deploy/build.*: {run}")
        for script in BUILD_SCRIPT.finditer(run):
            assert (ROOT / script[0].replace("\\", "/")).exists(), script[0]
        for test_file in re.findall(r"tests/[\w/]+\.py", run):
            assert (ROOT / test_file).exists(), test_file
    flags = {flag: step.get("env", {}).get(flag) for _, _, step in steps(doc)
             for flag in ("LLM_GATEWAY_TEST_BINARY", "LLM_GATEWAY_TEST_IMAGE") if flag in step.get("env", {})}
    assert flags == {"LLM_GATEWAY_TEST_BINARY": "1", "LLM_GATEWAY_TEST_IMAGE": "1"}
    for flag in flags:  # the flags the opt-in tests read
        assert any(flag in p.read_text(encoding="utf-8") for p in (ROOT / "tests").glob("test_*.py")), flag


def test_jobs_are_bounded_pinned_and_read_only() -> None:
    doc = load(ARTIFACTS)
    assert doc["permissions"] == {"contents": "read"}
    assert {"push", "pull_request"} <= set(doc["on"])
    for name, job in doc["jobs"].items():
        assert 0 < job["timeout-minutes"] <= 60, name
    for name, _, step in steps(doc):
        uses = step.get("uses")
        assert uses is None or re.fullmatch(r"actions/[\w-]+@v\d+", uses), f"{name}: {uses}"
