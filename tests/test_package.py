"""The wheel is the product: a user installs it, not this tree. Built here the way pip builds it,
it must carry every module and every file the package reads at run time (the explorer's page and
scripts, the report templates, py.typed), and say its version, which CHANGELOG.md describes."""

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import netloupe

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "netloupe"


def test_the_wheel_carries_every_file_the_package_reads(tmp_path):
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
                           "--quiet", "-w", str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    (wheel,) = tmp_path.glob("netloupe-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        metadata = next(z.read(n).decode() for n in names if n.endswith(".dist-info/METADATA"))
    wanted = {str(p.relative_to(PACKAGE.parent)) for p in PACKAGE.rglob("*")
              if p.is_file() and "__pycache__" not in p.parts}
    assert wanted <= names, f"missing from the wheel: {sorted(wanted - names)}"
    for needed in ("netloupe/explorer/static/index.html", "netloupe/explorer/static/main.js",
                   "netloupe/stats/templates/report.html", "netloupe/compare/templates/report.html",
                   "netloupe/explorer/templates/unit.html", "netloupe/py.typed"):
        assert needed in names
    version = re.search(r"^Version: (.+)$", metadata, re.M).group(1)
    assert version == netloupe.__version__
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert re.search(rf"^## {re.escape(version)}\b", changelog, re.M), f"CHANGELOG.md has no section for {version}"
