import json
import subprocess
import sys

import pytest

from netloupe.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_predict_sample_photos(capsys):
    code, out, _ = run(capsys, "predict", "chelsea", "coffee", "--top", "3", "--device", "cpu")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "chelsea" and lines[1].split(None, 1)[1] in {"tiger cat", "Egyptian cat", "tabby"}
    assert lines[4] == "coffee" and lines[5].split(None, 1)[1] == "espresso"


def test_predict_file_path(capsys, tmp_path):
    import netloupe as nl

    path = tmp_path / "cup.jpg"
    nl.samples.image("coffee").save(path)
    code, out, _ = run(capsys, "predict", str(path), "--top", "1")
    assert code == 0 and "espresso" in out


@pytest.mark.parametrize("argv,match", [
    (["predict", "missing.jpg"], "not found"),
    (["layers", "--model", "torchvision:nosuchnet"], "no model"),
    (["layers", "--model", "torchvision:resnet18", "--weights", "/nonexistent.pth"], "weights file not found"),
    (["predict", "chelsea", "--device", "quantum"], "unknown device"),
])
def test_user_mistakes_exit_2_with_one_line(capsys, argv, match):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert err.startswith("netloupe: error:") and match in err and err.count("\n") == 1
    assert "Traceback" not in err


def test_layers_with_random_weights(capsys):
    code, out, _ = run(capsys, "layers", "--model", "torchvision:resnet18", "--weights", "random")
    assert code == 0 and "layer4.1.conv2" in out and "1x512x7x7" in out


def test_demo_writes_predictions_and_layer_table(capsys, tmp_path):
    code, out, _ = run(capsys, "demo", "--out", str(tmp_path / "demo"))
    assert code == 0 and str(tmp_path / "demo") in out
    preds = json.loads((tmp_path / "demo" / "predictions.json").read_text())
    assert preds["coffee"][0]["label"] == "espresso" and len(preds["coffee"]) == 5
    assert (tmp_path / "demo" / "predictions.png").stat().st_size > 10_000
    assert "blocks.6.0.conv_pwl" in (tmp_path / "demo" / "layers.txt").read_text()
    assert (tmp_path / "demo" / "attribution" / "chelsea_all.png").stat().st_size > 100_000
    assert "dead channels per layer" in out and (tmp_path / "demo" / "scan" / "index.html").exists()


def test_console_script_help():
    out = subprocess.run(["netloupe", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for verb in ("predict", "layers", "demo"):
        assert verb in out.stdout
    bad = subprocess.run([sys.executable, "-m", "netloupe.cli", "predict"], capture_output=True, text=True)
    assert bad.returncode == 2 and "IMAGE" in bad.stderr


TINY = '''
import torch.nn as nn
import netloupe as nl


def tiny():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))
    return nl.LoadedModel(net.eval(), nl.Preprocess(size=32, resize=36), ["a", "b", "c", "d", "e"], "tiny")
'''


def test_attribute_all_methods_writes_overlays_and_contact_sheet(capsys, tmp_path, monkeypatch):
    from PIL import Image

    (tmp_path / "tinymodels.py").write_text(TINY)
    monkeypatch.syspath_prepend(str(tmp_path))
    code, out, err = run(capsys, "attribute", "chelsea", "--model", "tinymodels:tiny", "--method", "all",
                         "--target", "2", "--out", str(tmp_path / "attr"))
    assert code == 0, err
    from netloupe.attribution import METHODS

    for method in METHODS:
        assert Image.open(tmp_path / "attr" / f"chelsea_{method}.png").size == (32, 32)
    sheet = Image.open(tmp_path / "attr" / "chelsea_all.png")
    assert sheet.size[0] > 6 * 150 and sheet.size[1] > 2 * 150  # 11 tiles, 6 per row
    code, out, err = run(capsys, "attribute", "chelsea", "--model", "tinymodels:tiny", "--method", "lime",
                         "--out", str(tmp_path / "attr"))
    assert code == 2 and "unknown method" in err
