"""Check the import contracts of pyproject.toml ([tool.importlinter]) with import-linter.

import-linter (grimp) reads a package from one folder, but this repository maps ``ekyc.server``
to ``server/``, ``ekyc.v1`` to ``client/generated/ekyc/v1`` and so on (pyproject's
package-dir). So the package is first laid out as it is installed, from that mapping, in a
temporary folder, and lint-imports runs there. Exit status: lint-imports' (0: every contract kept).

    python scripts/lint_imports.py
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def lay_out(target: Path, root: Path = ROOT) -> list[str]:
    """Copy every package's .py and .pyi files to ``target`` as installed; returns the packages."""
    setuptools = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapping = setuptools.get("package-dir", {})
    packages = setuptools["packages"]
    for package in packages:
        base = max((name for name in mapping if package == name or package.startswith(name + ".")), key=len, default=None)
        if base is None:
            source = root / package.replace(".", "/")
        else:
            source = root / mapping[base] / package[len(base):].lstrip(".").replace(".", "/")
        destination = target / package.replace(".", "/")
        destination.mkdir(parents=True, exist_ok=True)
        for file in sorted(source.iterdir()):
            if file.is_file() and file.suffix in (".py", ".pyi"):
                shutil.copy2(file, destination / file.name)
    return packages


def main() -> int:
    lint_imports = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    if lint_imports is None:
        print("lint_imports: lint-imports not found: install requirements/test.txt (make setup-test)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="ekyc-layout-") as tmp:
        lay_out(Path(tmp))
        env = {**os.environ, "PYTHONPATH": tmp + os.pathsep + os.environ.get("PYTHONPATH", "")}
        # --no-cache: the temporary layout changes every run.
        done = subprocess.run([lint_imports, "--config", str(ROOT / "pyproject.toml"), "--no-cache"], cwd=tmp, env=env)
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
