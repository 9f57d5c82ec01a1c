"""Every result shows itself in a notebook: a PNG for each drawable result type (each subclass
of images.Picture, found by walking the package, so a new one cannot be forgotten), HTML for
the layer table; IPython is never imported for it."""

import importlib
import io
import pkgutil
import subprocess
import sys

import pytest
import torch
import torch.nn as nn
from PIL import Image

import netloupe as nl
from netloupe import images
from netloupe.attribution import metrics
from netloupe.folders import Stored


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 8, 3, stride=2), nn.ReLU())
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(self.drop(self.features(x).mean((2, 3))))


@pytest.fixture(scope="module")
def results():
    torch.manual_seed(0)
    model = nl.LoadedModel(Net().eval(), nl.Preprocess(size=32, resize=32), ["a", "b", "c", "d"], "net")
    x = torch.rand(2, 3, 32, 32)
    data = [torch.rand(3, 32, 32) for _ in range(6)]
    photo = torch.rand(3, 48, 48)
    saliency = nl.saliency(model, x, 0)
    scanned = nl.scan(model, data, ["features.2"], top_k=2, progress=False)
    with pytest.warns(UserWarning, match="did not reach"):  # two steps: far from converged, and said so
        augmented = nl.augment(model, x[:1], "fc", n=2, steps=2, seed=0, progress=False)
    return {
        "Attribution": saliency,
        "ContactSheet": nl.attribution.contact_sheet(model, x[:1], ["saliency", "grad_cam"]),
        "Curve": metrics.deletion(model, x, saliency, steps=2),
        "Randomization": metrics.randomization_check(model, x[:1], "saliency", target=0,
                                                     blocks=metrics.blocks_top_down(model)[:1], progress=False),
        "Rendering": nl.visualize(model, "features.2:1", size=32, steps=2, progress=False),
        "DropoutAugmentation": augmented,
        "DropoutSweep": nl.dropout_sweep(model, x[:1], "fc", rates=(0.0, 0.5), n=2, seed=0, progress=False),
        "ScanResult": scanned,
        "Patches": nl.stats.top_patches(scanned, "features.2", 1),
        "Comparison": nl.compare([model, model], ["features.2"], data, channels=2, steps=2, size=32,
                                 progress=False),
        "PhotoRendering": nl.dream(model, photo, "features.2", octaves=2, steps_per_octave=1, progress=False),
        "Inversion": nl.invert(model, photo, ["features.0", "features.2"], steps=2, progress=False),
        "Adversarial": nl.adversarial(model, photo, steps=1, progress=False),
        "Caricature": nl.caricature(model, photo, ["features.2"], adversarial=True, attack_steps=1, steps=2,
                                    progress=False),
    }


def picture_classes():
    """Every concrete subclass of images.Picture in the package."""
    for info in pkgutil.walk_packages(nl.__path__, "netloupe."):
        importlib.import_module(info.name)
    found, todo = set(), [images.Picture]
    while todo:
        for sub in todo.pop().__subclasses__():
            todo.append(sub)
            if sub.__module__.startswith("netloupe.") and sub not in (images.Chart, Stored):
                found.add(sub.__name__)
    return found


def test_every_picture_result_is_covered(results):
    assert picture_classes() <= set(results), "add the new result type to this test's results"


@pytest.mark.parametrize("kind", ["Attribution", "ContactSheet", "Curve", "Randomization", "Rendering",
                                  "DropoutAugmentation", "DropoutSweep", "ScanResult", "Patches", "Comparison",
                                  "PhotoRendering", "Inversion", "Adversarial", "Caricature"])
def test_a_result_shows_as_a_png(results, kind):
    data = results[kind]._repr_png_()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    picture = Image.open(io.BytesIO(data))
    picture.load()
    assert 16 <= max(picture.size) <= images.Picture.notebook_size


def test_importing_netloupe_imports_no_ipython():
    code = "import sys, netloupe; print('IPython' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == \
        "False"


def test_the_layer_table_shows_as_html():
    table = nl.layers(nl.LoadedModel(Net().eval(), nl.Preprocess(size=16, resize=16), None, "net<&>"))
    page = table._repr_html_()
    assert page.startswith("<table>") and page.count("<tr>") == len(table) + 1
    assert "features.2" in page and "Conv2d" in page and "8x7x7" in page
