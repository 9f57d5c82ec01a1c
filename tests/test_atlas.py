"""netloupe atlas: the static site of every channel of some layers (renders, top patches,
histograms, correlated channels), its links, its renders against visualize_channels, bad
inputs, leaving the model as found, and a two-process torchrun run equal to one process."""

import os
import re
import subprocess
import sys
import textwrap
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import netloupe as nl
from netloupe import runtime
from netloupe.cli import main
from netloupe.explorer.atlas import atlas, layer_file

SRC = str(Path(__file__).resolve().parents[1] / "src")

# a tiny conv net whose weights come from a fixed seed, so every process that loads it gets the same;
# layer "2" has an 8 x 8 grid at 16 px, layer "6" is the logits (a vector of units)
MODELS = '''
import torch
import torch.nn as nn
import netloupe as nl


def tiny():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 5, 3, stride=2, padding=1), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 4))
    return nl.LoadedModel(net.eval(), nl.Preprocess(size=16, resize=16), ["a", "b", "c", "d"], "tiny")
'''

FAST = dict(steps=3, size=16, batch_size=2, progress=False)


@pytest.fixture
def spec(tmp_path, monkeypatch):
    (tmp_path / "atlasmodels.py").write_text(MODELS)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "atlasmodels:tiny"


@pytest.fixture
def model(spec):
    return nl.load_model(spec)


@pytest.fixture
def images(tmp_path):
    """A folder of 7 small photos of different sizes and colours."""
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(7):
        side = 18 + 3 * i
        pixels = (rng.random((side, side + i, 3)) * (60 + 25 * i)).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"photo{i}.png")
    return folder


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links = []

    def handle_starttag(self, tag, attrs):
        self.links += [value for name, value in attrs if name in ("href", "src") and value is not None]


def links(page: Path):
    parser = _Links()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser.links


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def test_site_with_data_every_link_resolves(model, images, tmp_path):
    out = tmp_path / "site"
    index = atlas(model, "2,6", data=images, out=out, top_k=4, **FAST)
    assert index == out / "index.html" and index.is_file()
    pages = sorted(out.rglob("*.html"))
    expected = {out / "index.html"} | {out / "layers" / name / "index.html" for name in ("2", "6")} \
        | {out / "layers" / "2" / f"{c}.html" for c in range(5)} | {out / "layers" / "6" / f"{c}.html" for c in range(4)}
    assert set(pages) == expected
    for page in pages:
        found = links(page)
        assert found, page
        for link in found:
            assert not re.match(r"^[a-z]+:|^/", link), f"{page}: {link} is not a relative link"
            assert (page.parent / link.split("#")[0]).is_file(), f"{page} links to the missing {link}"
    for name, channels in (("2", 5), ("6", 4)):
        for c in range(channels):
            assert Image.open(out / "renders" / name / f"{c}.png").size == (16, 16)
            assert (out / "patches" / name / f"{c}.png").is_file()
            page = (out / "layers" / name / f"{c}.html").read_text()
            assert "Top 4 patches" in page and "<svg" in page and "Most correlated channels" in page
            assert f'src="../../patches/{name}/{c}.png"' in page and "No data was given" not in page
        grid = links(out / "layers" / name / "index.html")
        assert [f"../../renders/{name}/{c}.png" for c in range(channels)] == [x for x in grid if "renders" in x]
    others = {x for x in links(out / "layers" / "2" / "0.html") if re.fullmatch(r"\.\./\.\./renders/2/[1-4]\.png", x)}
    assert len(others) == 4  # the most correlated channels, each shown by its render
    logit = (out / "layers" / "6" / "0.html").read_text()
    assert "whole images" in logit and "6:0 &middot; a" in logit  # the logits: no grid to crop, units are classes
    assert "&middot; a" not in (out / "layers" / "2" / "0.html").read_text()
    home = (out / "index.html").read_text()
    assert "layers/2/index.html" in home and "layers/6/index.html" in home and "7 images" in home


def test_renders_equal_visualize_channels_with_the_same_seeds(model, tmp_path):
    out = atlas(model, ["2", "6"], out=tmp_path / "site", channels=3, seed=5, **FAST).parent
    for layer in ("2", "6"):
        ref = nl.visualize_channels(model, layer, range(3), seed=5, size=16, steps=3, batch_size=2, progress=False)
        for c, picture in enumerate(ref.pils()):
            assert np.array_equal(pixels(out / "renders" / layer / f"{c}.png"), np.asarray(picture, dtype=np.int16))
    assert not (out / "renders" / "2" / "3.png").exists()  # channels=3: the first three only


def test_without_data_renders_only_with_a_note(model, tmp_path):
    out = atlas(model, "2", out=tmp_path / "site", channels=[4, 1], **FAST).parent
    assert sorted(p.name for p in (out / "renders" / "2").iterdir()) == ["1.png", "4.png"]
    assert not (out / "patches").exists()
    for page in [out / "index.html", out / "layers" / "2" / "index.html", out / "layers" / "2" / "4.html"]:
        text = page.read_text()
        assert "No data was given" in text and "<svg" not in text and "patches/" not in text
    # the grid links channels in the order given; the last channel's page has no next
    assert [x for x in links(out / "layers" / "2" / "index.html") if x.endswith(".html")][-2:] == ["4.html", "1.html"]
    assert [x for x in links(out / "layers" / "2" / "1.html") if x.endswith(".html")] == \
        ["../../index.html", "index.html", "4.html", "index.html"]


def test_progress_is_reported_as_atlas(model, tmp_path):
    seen = []
    with runtime.reporting(lambda desc, done, total: seen.append((desc, done, total))):
        atlas(model, "2", out=tmp_path / "site", channels=3, steps=2, size=16, batch_size=2)
    assert ("atlas", 2, 2) in seen  # two render batches of this process


def test_render_folder_is_where_the_explorer_reads_it():
    from netloupe.explorer.service import _file

    for name in ("blocks.4", "features.3.conv:x", "enc/dec block", "a-b_c.d"):
        assert layer_file(name) == _file(name)
    assert layer_file("features.3.conv:x") == "features.3.conv_x"


def test_bad_inputs_say_what_to_do(model, tmp_path):
    out = tmp_path / "site"
    with pytest.raises(nl.UnitError, match="blocks"):  # an unknown layer: the error names the layer asked for
        atlas(model, "blocks.4", out=out, **FAST)
    with pytest.raises(nl.UnitError, match="layer names, not the unit"):
        atlas(model, "2:3", out=out, **FAST)
    with pytest.raises(nl.UnitError, match="at least one layer"):
        atlas(model, " , ", out=out, **FAST)
    (tmp_path / "empty").mkdir()
    with pytest.raises(nl.NetloupeError, match="holds no images"):
        atlas(model, "2", data=tmp_path / "empty", out=out, **FAST)
    assert not out.exists()  # refused before any render
    taken = tmp_path / "file.txt"
    taken.write_text("not a folder")
    with pytest.raises(nl.NetloupeError, match="is a file"):
        atlas(model, "2", out=taken, **FAST)
    with pytest.raises(nl.NetloupeError, match="lies under the file"):
        atlas(model, "2", out=taken / "site", **FAST)
    with pytest.raises(nl.NetloupeError, match="channels"):
        atlas(model, "2", out=out, channels=0, **FAST)
    with pytest.raises(nl.UnitError, match="channel 9"):
        atlas(model, "2", out=out, channels=[9], **FAST)
    with pytest.raises(nl.NetloupeError, match="steps"):
        atlas(model, "2", out=out, steps=0, size=16, progress=False)
    assert not out.exists()


def test_leaves_the_model_as_found(model, images, tmp_path):
    from model_state import leaves_unchanged, scramble

    scramble(model.module)
    with leaves_unchanged(model.module):
        atlas(model, "2,6", data=images, out=tmp_path / "site", channels=2, top_k=2, **FAST)
    page = (tmp_path / "site" / "layers" / "2" / "0.html").read_text()  # 2 of 5 channels: the others named, unlinked
    assert "In the whole layer (5 channels)" in page and '<a href="1.html">1</a>' in page
    with leaves_unchanged(model.module), pytest.raises(nl.NetloupeError):
        atlas(model, "2", data=tmp_path / "missing", out=tmp_path / "site", **FAST)


def test_cli_verb_writes_the_site(spec, images, tmp_path, capsys):
    code = main(["atlas", "--model", spec, "--layers", "2", "--channels", "2", "--steps", "2", "--size", "16",
                 "--data", str(images), "--out", str(tmp_path / "site"), "--device", "cpu"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert Path(out.strip()) == (tmp_path / "site" / "index.html").resolve()
    assert (tmp_path / "site" / "patches" / "2" / "1.png").is_file()


# -- torchrun --------------------------------------------------------------------------------

_SCRIPT = """
import os, sys
sys.path.insert(0, sys.argv[2])
import netloupe as nl
import netloupe.explorer.atlas as A

batches = []  # the render batches this process ran: (layer, channels)
real = A.visualize
def counted(model, units, **kw):
    batches.append(str(units[0]).split(":")[0] + ":" + ",".join(str(u.channel) for u in units))
    return real(model, units, **kw)
A.visualize = counted
model = nl.load_model("atlasmodels:tiny")
index = A.atlas(model, "2,6", data=sys.argv[3], out=sys.argv[1], steps=3, size=16, batch_size=2, top_k=3, seed=7,
                progress=False)
rank, world = os.environ.get("RANK", "0"), os.environ.get("WORLD_SIZE", "1")
with open(os.path.join(sys.argv[2], f"batches-{world}-{rank}.txt"), "w") as f:  # not stdout: ranks share it
    f.write(" ".join(batches) + ("" if index.is_file() else " no-index"))
"""


def test_two_process_torchrun_atlas_equals_one_process(tmp_path, images):
    (tmp_path / "atlasmodels.py").write_text(MODELS)
    script = tmp_path / "atlas_job.py"
    script.write_text(textwrap.dedent(_SCRIPT))
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    args = [str(tmp_path), str(images)]
    one = subprocess.run([sys.executable, str(script), str(tmp_path / "one"), *args], env=env, capture_output=True,
                         text=True, timeout=180)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          str(script), str(tmp_path / "two"), *args], env=env, capture_output=True, text=True,
                         timeout=240)
    assert two.returncode == 0, two.stderr[-3000:]
    ran = {f.stem: f.read_text() for f in tmp_path.glob("batches-*.txt")}
    # the same five batches, dealt round-robin: each rank rendered its share only (and all see the index)
    assert ran == {"batches-1-0": "2:0,1 2:2,3 2:4 6:0,1 6:2,3", "batches-2-0": "2:0,1 2:4 6:2,3",
                   "batches-2-1": "2:2,3 6:0,1"}
    a, b = tmp_path / "one", tmp_path / "two"
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert len([f for f in files if f.parts[0] == "renders"]) == 9  # 5 + 4 channels, in 3 + 2 batches over 2 ranks
    for f in files:
        if f.suffix == ".png":
            assert np.array_equal(pixels(a / f), pixels(b / f)), f
        else:
            assert (a / f).read_text() == (b / f).read_text(), f
