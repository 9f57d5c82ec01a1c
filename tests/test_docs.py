"""The tutorials (docs/tutorials/*.ipynb) run, in fast mode, and show their pictures; the site
(mkdocs.yml) builds in strict mode from them and the docstrings, and references every public name.

Each tutorial is executed once per session, by nbclient, and the executed copies are what the site
renders, so CI checks exactly what a reader sees."""

import base64
import importlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import types
import zlib
from pathlib import Path

import nbformat
import pytest
import yaml
from nbclient import NotebookClient
from PIL import Image

import netloupe

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = sorted((ROOT / "docs" / "tutorials").glob("*.ipynb"))
#: the kernel's environment: fewer steps; no tqdm warning about ipywidgets, which the docs environment lacks
KERNEL_ENV = {"NETLOUPE_TUTORIAL_FAST": "1", "PYTHONWARNINGS": "ignore:IProgress not found"}

_executed = {}


def executed(path: Path, work: Path) -> nbformat.NotebookNode:
    """The tutorial run top to bottom in a fresh kernel (once per session); a failing cell fails here."""
    if path not in _executed:
        nb = nbformat.read(path, as_version=4)
        client = NotebookClient(nb, timeout=600, kernel_name="python3", coalesce_streams=True,
                                resources={"metadata": {"path": str(work)}})
        client.execute(env={**os.environ, **KERNEL_ENV})
        _executed[path] = nb
    return _executed[path]


@pytest.fixture(scope="session")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("tutorials")


def _pngs(cell) -> list:
    return [Image.open(io.BytesIO(base64.b64decode(o["data"]["image/png"])))
            for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]


# -- the snippets of the README and the site's pages ----------------------------------------------

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
_FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)

#: Runs a page's Python snippets in order, in one namespace (as a reader pastes them into one
#: session), in a fresh interpreter, so nothing they register or change reaches the test process.
#: Renders and dropout's matching are cut to 2 optimizer steps (their loops are the same at any
#: length), which turns 20 minutes of optimization into seconds; every other call runs as written.
RUNNER = """
import functools, importlib, json, sys
import netloupe

def capped(fn, default):
    @functools.wraps(fn)
    def call(*args, steps=default, **kw):
        return fn(*args, steps=min(steps, 2), **kw)
    return call

for where, name, default in (("netloupe.optvis.render", "render", 512), ("netloupe.dropout", "augment", 2000)):
    original = getattr(importlib.import_module(where), name)
    short = capped(original, default)
    for module in list(sys.modules.values()):
        if getattr(module, "__name__", "").startswith("netloupe") and getattr(module, name, None) is original:
            setattr(module, name, short)
namespace = {"__name__": "__main__"}
for where, code in json.load(open(sys.argv[1])):
    print(f"== {where}", flush=True)
    exec(compile(code, where, "exec"), namespace)
"""


def snippets(page: Path) -> list:
    """(where, code) of every ```python block of a page, where its line in the page."""
    text = page.read_text()
    return [(f"{page.relative_to(ROOT)}:{text[:m.start()].count(chr(10)) + 2}", m.group(1))
            for m in _FENCE.finditer(text)]


def test_every_page_has_its_snippets_found():
    found = {page.name: len(snippets(page)) for page in PAGES}
    assert found["README.md"] >= 12 and found["index.md"] == 1


@pytest.mark.parametrize("page", [p for p in PAGES if snippets(p)], ids=lambda p: str(p.relative_to(ROOT)))
def test_the_snippets_of_a_page_run_as_written(page, tmp_path):
    """What a reader copies must run: each block after the ones before it, in a folder holding the one
    file the README names as the reader's own (a timm weights file)."""
    import timm
    from safetensors.torch import save_file

    save_file(timm.create_model("convnext_tiny", pretrained=False).state_dict(), tmp_path / "convnext_tiny.safetensors")
    (tmp_path / "snippets.json").write_text(json.dumps(snippets(page)))
    done = subprocess.run([sys.executable, "-c", RUNNER, str(tmp_path / "snippets.json")], input="\n",
                          capture_output=True, text=True, cwd=tmp_path, timeout=900,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})  # Enter: for a snippet waiting on input()
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]


def test_tutorials_are_stored_without_outputs():
    """Outputs are stripped in git: no outputs, no execution counts, no timing metadata."""
    assert TUTORIALS, "no tutorials under docs/tutorials"
    for path in TUTORIALS:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: outputs stored"
                assert "execution" not in cell.metadata, f"{path.name}: execution metadata stored"


def test_every_tutorial_is_in_the_site():
    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text().replace("!ENV", ""))["nav"]  # !ENV: mkdocs' own tag
    listed = {page for section in nav if "Tutorials" in section for item in section["Tutorials"]
              for page in item.values()}
    assert listed == {f"tutorials/{p.name}" for p in TUTORIALS}


@pytest.mark.parametrize("path", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_runs_and_shows_its_pictures(path, work):
    nb = executed(path, work)
    pictured = [c for c in nb.cells if "picture" in c.metadata.get("tags", [])]
    assert pictured, f"{path.name} has no cell tagged 'picture'"
    for cell in pictured:
        pngs = _pngs(cell)
        assert pngs, f"{path.name}: this cell shows no picture:\n{cell.source}"
        assert all(min(p.size) >= 32 for p in pngs), f"{path.name}: a picture is too small:\n{cell.source}"


def test_a_cell_ending_in_grad_cam_shows_the_overlay(work):
    """The issue's own example: the result that ends a cell draws itself, the photo under the heat map."""
    nb = executed(ROOT / "docs" / "tutorials" / "attribution.ipynb", work)
    cell = next(c for c in nb.cells if c.source == "nl.grad_cam(model, photo)")
    (png,) = _pngs(cell)
    expected = netloupe.samples.image("chelsea").convert("RGB").resize(png.size)
    picture = png.convert("RGB")
    diff = sum(abs(a - b) for a, b in zip(picture.tobytes(), expected.tobytes())) / len(picture.tobytes())
    assert 5 < diff < 100  # blended with the photo: neither the bare photo nor a bare heat map of other content


def _inventory(path: Path) -> set:
    """The object names in a Sphinx-format objects.inv (what mkdocstrings wrote for cross-references)."""
    data = path.read_bytes()
    for _ in range(4):  # four header lines, then the zlib-compressed body
        data = data[data.index(b"\n") + 1:]
    return {line.split(" ", 1)[0] for line in zlib.decompress(data).decode().splitlines() if line}


def _public():
    """(package, name, object) for every name in the __all__ of netloupe and its subpackages, modules left out."""
    for package in ("netloupe", "netloupe.attribution", "netloupe.optvis", "netloupe.stats", "netloupe.compare",
                    "netloupe.explorer"):  # imported by name: nl.compare is the function
        module = importlib.import_module(package)
        for name in module.__all__:
            obj = getattr(module, name)
            if not isinstance(obj, types.ModuleType):
                yield package, name, obj


def _documented(package: str, name: str, obj, names: set) -> bool:
    """Whether the reference documents the name where the package exports it or where it is defined."""
    where = {f"{package}.{name}"}
    if hasattr(obj, "__module__") and hasattr(obj, "__qualname__"):
        where.add(f"{obj.__module__}.{obj.__qualname__}")
    return bool(where & names)


def test_the_site_builds_strictly_with_every_public_name(work, tmp_path):
    site_src = tmp_path / "src"
    shutil.copytree(ROOT / "docs", site_src / "docs")
    shutil.copy(ROOT / "mkdocs.yml", site_src)
    for path in TUTORIALS:
        nbformat.write(executed(path, work), site_src / "docs" / "tutorials" / path.name)
    out = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(site_src / "mkdocs.yml"),
                           "-d", str(out)], capture_output=True, text=True, cwd=tmp_path,  # mkdocs-jupyter's .cache/ goes there
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, done.stdout + done.stderr

    names = _inventory(out / "objects.inv")
    missing = [f"{package}.{name}" for package, name, obj in _public() if not _documented(package, name, obj, names)]
    assert not missing, f"public names missing from the API reference: {missing}"

    page = (out / "tutorials" / "attribution" / "index.html").read_text()
    assert page.count("data:image/png;base64") >= 5  # the executed outputs are on the page
    assert (out / "reading" / "index.html").exists() and (out / "gallery" / "index.html").exists()
