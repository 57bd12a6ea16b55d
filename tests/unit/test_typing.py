"""models/ is mypy-clean and the code ruff-clean: a slip fails the suite."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_models_are_mypy_clean(tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path), "models"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Success" in res.stdout


def test_code_is_lint_clean() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "streams", "models", "tests", "bench"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert res.returncode == 0, res.stdout + res.stderr
