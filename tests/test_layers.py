"""The layers of docs/architecture.md hold: import-linter's contracts (pyproject.toml) on the
installed layout of the package (scripts/lint_imports.py), and a violation would be caught."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
try:
    from lint_imports import lay_out
finally:
    sys.path.pop(0)

LINT_IMPORTS = str(Path(sys.executable).parent / "lint-imports")


def _lint(layout: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(layout)}
    return subprocess.run([LINT_IMPORTS, "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
                          cwd=layout, env=env, capture_output=True, text=True, timeout=120)


def test_every_import_contract_is_kept():
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "lint_imports.py")],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_a_face_library_module_importing_the_server_breaks_the_build(tmp_path):
    lay_out(tmp_path)
    (tmp_path / "ekyc" / "quality" / "shortcut.py").write_text("from ekyc.server.config import load_config\n")
    done = _lint(tmp_path)
    assert done.returncode != 0
    assert "ekyc.quality.shortcut -> ekyc.server.config" in done.stdout


def test_the_client_pulling_in_numpy_breaks_the_build(tmp_path):
    lay_out(tmp_path)
    (tmp_path / "ekyc" / "imagefiles.py").write_text((ROOT / "ekyc" / "imagefiles.py").read_text() + "\nimport numpy\n")
    done = _lint(tmp_path)
    assert done.returncode != 0
    assert "ekyc.client" in done.stdout and "numpy" in done.stdout
