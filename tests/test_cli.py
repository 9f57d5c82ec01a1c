import argparse
import json
import os
import re
import subprocess
import sys

import pytest

import netloupe as nl
from netloupe.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def error_line(code, err):
    """The error of a run that failed as a user's mistake should: exit 2, one line, no traceback."""
    assert code == 2 and err.startswith("netloupe: error: ") and err.count("\n") == 1, err
    return err


# a model spec that fails if it is ever loaded: errors about it show that a check came first
UNLOADABLE = "nosuchpackage.mod:factory"


def test_predict_sample_photos(capsys):
    code, out, _ = run(capsys, "predict", "chelsea", "coffee", "--top-k", "3", "--device", "cpu")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "chelsea" and lines[1].split(None, 1)[1] in {"tiger cat", "Egyptian cat", "tabby"}
    assert lines[4] == "coffee" and lines[5].split(None, 1)[1] == "espresso"


def test_predict_file_path(capsys, tmp_path):
    import netloupe as nl

    path = tmp_path / "cup.jpg"
    nl.samples.image("coffee").save(path)
    code, out, _ = run(capsys, "predict", str(path), "--top-k", "1")
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
    # the scan's data is saved beside its report, so the explorer opens the demo's outputs as printed
    assert f"netloupe explore --scan {tmp_path / 'demo' / 'scan'} --data samples" in out
    explorer = nl.explorer.Explorer(nl.load_model(), data=nl.samples.dataset(), scan_dir=tmp_path / "demo" / "scan",
                                    cache_dir=tmp_path / "cache")
    assert explorer.unit_info("blocks.2", 1)["scanned"] and len(explorer.unit_patches("blocks.2", 1)["patches"]) == 4


def test_console_script_help():
    out = subprocess.run(["netloupe", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for verb in ("predict", "layers", "demo"):
        assert verb in out.stdout
    bad = subprocess.run([sys.executable, "-m", "netloupe.cli", "predict"], capture_output=True, text=True)
    assert bad.returncode == 2 and "IMAGE" in bad.stderr and bad.stderr.count("\n") == 1


TINY = '''
import torch.nn as nn
import netloupe as nl


def tiny():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))
    return nl.LoadedModel(net.eval(), nl.Preprocess(size=32, resize=36), ["a", "b", "c", "d", "e"], "tiny")
'''


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """The spec of TINY's model: 32 px in, 5 classes, fast enough to run any verb on."""
    (tmp_path / "tinymodels.py").write_text(TINY)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "tinymodels:tiny"


def test_attribute_all_methods_writes_overlays_and_contact_sheet(capsys, tmp_path, tiny):
    from PIL import Image

    code, out, err = run(capsys, "attribute", "chelsea", "--model", tiny, "--method", "all",
                         "--target", "2", "--out", str(tmp_path / "attr"))
    assert code == 0, err
    from netloupe.attribution import METHODS

    for name, method in METHODS.items():  # every method that applies to a CNN (not attention rollout)
        path = tmp_path / "attr" / f"chelsea_{name}.png"
        assert path.exists() == method.applies(nl.load_model(tiny).module)
        if path.exists():
            assert Image.open(path).size == (32, 32)
    sheet = Image.open(tmp_path / "attr" / "chelsea_all.png")
    assert sheet.size[0] > 6 * 150 and sheet.size[1] > 2 * 150  # 11 tiles, 6 per row
    code, out, err = run(capsys, "attribute", "chelsea", "--model", tiny, "--method", "lime",
                         "--out", str(tmp_path / "attr"))
    assert code == 2 and "unknown attribution method 'lime'; choose one of saliency" in err


OUT_VERBS = [["attribute", "chelsea"], ["dropout", "chelsea", "--layer", "classifier"], ["demo"],
             ["scan", "samples", "--layers", "blocks.2"], ["visualize", "blocks.2"], ["dream", "chelsea", "--layer", "blocks.2"],
             ["invert", "chelsea", "--layers", "blocks.2"], ["caricature", "chelsea", "--layers", "blocks.2"]]


@pytest.mark.parametrize("argv", OUT_VERBS, ids=lambda argv: argv[0])
def test_an_out_folder_that_cannot_be_written_is_refused_before_any_work(capsys, tmp_path, argv):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file, not a folder")
    for out in (blocker / "out", blocker / "a" / "b", blocker):
        err = error_line(*run(capsys, *argv, "--model", UNLOADABLE, "--out", str(out))[::2])
        assert f"cannot write --out {out}: {blocker} is a file, not a folder; choose another --out" in err
    if os.geteuid() != 0:  # root may write into a read-only folder, so only others can check this
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        err = error_line(*run(capsys, *argv, "--model", UNLOADABLE, "--out", str(locked / "out"))[::2])
        assert f"no permission to write in {locked}" in err
    assert {p.name for p in tmp_path.iterdir()} <= {"locked", "notes.txt"}  # nothing made


def test_a_failed_run_removes_the_out_folder_it_created_and_only_that(capsys, tmp_path, tiny):
    made = tmp_path / "new" / "attr"  # the first methods write their PNGs before grad_cam fails on the layer
    err = error_line(*run(capsys, "attribute", "chelsea", "--model", tiny, "--layer", "nosuch", "--out", str(made))[::2])
    assert "nosuch" in err and not (tmp_path / "new").exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "mine.txt").write_text("the user's")
    error_line(*run(capsys, "attribute", "chelsea", "--model", tiny, "--layer", "nosuch", "--out", str(kept))[::2])
    assert (kept / "mine.txt").read_text() == "the user's"
    error_line(*run(capsys, "attribute", "missing.jpg", "--model", tiny, "--out", str(made))[::2])
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("argv", [["predict"], ["attribute"], ["dropout", "--layer", "classifier"]], ids=lambda a: a[0])
def test_a_mistyped_sample_name_gets_the_nearest_and_the_list(capsys, tmp_path, monkeypatch, argv):
    import netloupe as nl

    monkeypatch.chdir(tmp_path)  # where the default --out folders would go
    err = error_line(*run(capsys, argv[0], "chelsee", *argv[1:], "--model", UNLOADABLE)[::2])
    assert "'chelsee' is neither an image file (not found) nor a sample name; did you mean chelsea?" in err
    assert all(name in err for name in nl.samples.names())
    err = error_line(*run(capsys, argv[0], "zzz", *argv[1:], "--model", UNLOADABLE)[::2])
    assert "did you mean" not in err and "coffee" in err
    assert list(tmp_path.iterdir()) == []


def test_predict_top_zero_and_visualize_below_the_models_stride_are_refused(capsys, tmp_path, tiny):
    import netloupe as nl
    from netloupe.optvis.recipes import min_size

    err = error_line(*run(capsys, "predict", "chelsea", "--top-k", "0", "--model", UNLOADABLE)[::2])
    assert "argument --top-k: must be 1 or more; got 0 (see `netloupe predict --help`)" in err
    err = error_line(*run(capsys, "visualize", "blocks.2", "--size", "3", "--out", str(tmp_path / "vis"))[::2])
    assert ("--size 3 is below this model's minimum of 32 px (one cell of its coarsest layer); use --size 32 or more"
            in err) and not (tmp_path / "vis").exists()
    assert min_size(nl.load_model(tiny)) == 2  # 32 px in, 16 x 16 at its strided conv
    # 224 px in, 7 x 7 last; the 1 x 1 outputs of its global pool and squeeze-excite gates are left out
    assert min_size(nl.load_model("timm:mobilenetv3_small_050", weights=None)) == 32


def test_max_pixels_sets_pillows_limit_for_the_run(capsys, tmp_path, monkeypatch, tiny):
    from PIL import Image

    small = tmp_path / "small.png"
    Image.new("RGB", (40, 40)).save(small)  # 1,600 pixels
    err = error_line(*run(capsys, "predict", str(small), "--model", tiny, "--max-pixels", "1000")[::2])
    assert "more pixels than Pillow's limit of 1,000" in err and "--max-pixels N" in err
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    code, out, err = run(capsys, "predict", str(small), "--model", tiny, "--max-pixels", "2000")
    assert code == 0 and out.startswith(str(small)), err
    assert Image.MAX_IMAGE_PIXELS == 1000  # restored after the run
    error_line(*run(capsys, "predict", str(small), "--model", tiny)[::2])  # the default: the limit in force
    err = error_line(*run(capsys, "predict", str(small), "--model", tiny, "--max-pixels", "0")[::2])
    assert "argument --max-pixels: must be 1 or more" in err
    err = error_line(*run(capsys, "scan", "samples", "--layers", "bn1", "--workers", "-1", "--model", UNLOADABLE)[::2])
    assert "argument --workers: must be 0 or more" in err
    assert "is not a whole number" in error_line(*run(capsys, "predict", "chelsea", "--top-k", "abc")[::2])


def test_files_that_are_not_pytorch_files(capsys, tmp_path):
    for name in ("junk.pth", "junk.pt"):
        (tmp_path / name).write_bytes(b"not a model " * 50)
    for argv in (["--model", "torchvision:squeezenet1_1", "--weights", str(tmp_path / "junk.pth")],
                 ["--model", str(tmp_path / "junk.pt")]):
        err = error_line(*run(capsys, "layers", *argv)[::2])
        assert "is not a PyTorch file (torch.save writes a zip archive" in err and "weights_only" not in err


def test_help_lists_verbs_in_readme_order_the_methods_and_every_default(capsys):
    from netloupe.attribution import METHODS
    from netloupe.cli import build_parser

    assert main(["--help"]) == 0
    listed = re.findall(r"^    (\w+)", capsys.readouterr().out, re.M)
    assert listed == ["predict", "layers", "attribute", "visualize", "dream", "invert", "caricature", "style",
                      "dropout", "scan", "compare", "explore", "atlas", "demo"]
    verbs = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    helps = {name: " ".join(p.format_help().split()) for name, p in verbs.items()}
    for name, p in verbs.items():
        options = [a for a in p._actions if a.option_strings and a.dest != "help"]
        assert helps[name].count("(default: ") + helps[name].count("(required)") == len(options), name
    assert ", ".join(METHODS) + ", or all (default: all)" in helps["attribute"]
    assert "--top-k K how many classes to list per image (default: 5)" in helps["predict"]
    assert "--quiet no progress bar (default: off)" in helps["visualize"]
    assert "--layer LAYER the layer (unit) whose dropout samples are matched, e.g. classifier (required)" in helps["dropout"]


def test_scan_out_must_be_a_folder(capsys, tmp_path):
    err = error_line(*run(capsys, "scan", "samples", "--layers", "bn1", "--out", str(tmp_path / "x.png"),
                          "--model", UNLOADABLE)[::2])
    assert "scan writes a folder" in err and not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("argv,match", [
    (["compare", "default", "default", "--layers", "blocks.6", "--size", "3"], "argument --size: must be 7 or more"),
    (["dream", "chelsea", "--layer", "blocks.6", "--out", "/proc/x"], "cannot write --out /proc/x"),
    (["atlas", "--layers", "blocks.6", "--out", "/proc/x"], "cannot write --out /proc/x"),
    (["attribute", "chelsea", "--method", "saliency", "--out", "/proc/x"], "cannot write --out /proc/x"),
    (["attribute", "chelsea", "--method", "saliency", "--out", "/sys/x"], "cannot write --out /sys/x"),
    (["explore", "--port", "99999"], "argument --port: a port is 1 to 65535; got 99999"),
    (["explore", "--host", "999.1.1.1"], "cannot serve on 999.1.1.1:8000"),
    (["explore", "--atlas", "MISSING"], "--atlas MISSING is not an atlas"),
    (["explore", "--atlas", __file__], "is not an atlas"),
    (["explore", "--scan", "MISSING"], "--scan MISSING is not a saved scan"),
    (["attribute", "chelsea", "--method", "gradcam"], "unknown attribution method 'gradcam'; did you mean grad_cam?"),
    (["visualize", "blocks.4:x"], "cannot parse unit 'blocks.4:x'"),
])
def test_mistakes_found_before_any_work_end_in_one_line(capsys, tmp_path, monkeypatch, argv, match):
    """Each is refused before the model loads (the model spec given cannot load), in one line, exit 2."""
    monkeypatch.chdir(tmp_path)
    err = error_line(*run(capsys, *argv, "--model", UNLOADABLE)[::2])
    assert match in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_render_sizes_and_units_are_checked_before_rendering(capsys, tmp_path, tiny, monkeypatch):
    from netloupe.optvis import recipes

    def never(*args, **kw):
        raise AssertionError("rendering started before the check")

    monkeypatch.setattr(recipes, "render", never)  # what visualize (and the atlas through it) renders with
    err = error_line(*run(capsys, "atlas", "--layers", "blocks.6", "--size", "3", "--out", str(tmp_path / "atlas"))[::2])
    assert "--size 3 is below this model's minimum of 32 px" in err and not (tmp_path / "atlas").exists()
    err = error_line(*run(capsys, "visualize", "2:999", "--model", tiny, "--out", str(tmp_path / "vis"))[::2])
    assert "channel 999 out of range; layer '2' has channels 0..7" in err
    err = error_line(*run(capsys, "visualize", "2:3@40,0", "--model", tiny, "--size", "32", "--out",
                          str(tmp_path / "vis"))[::2])
    assert "position (40, 0) out of range" in err and not (tmp_path / "vis").exists()


def test_a_torchvision_that_does_not_fit_torch_is_one_line(tmp_path):
    """A CPU torch beside a CUDA torchvision fails on `import torchvision` (as timm does it); the
    command says what is wrong and how to fix it, instead of a long traceback."""
    fake = tmp_path / "torchvision"
    fake.mkdir()
    (fake / "__init__.py").write_text('raise RuntimeError("operator torchvision::nms does not exist")\n')
    done = subprocess.run([sys.executable, "-m", "netloupe.cli", "demo", "--out", str(tmp_path / "demo")],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert "does not work with torch" in done.stderr and "operator torchvision::nms does not exist" in done.stderr
    assert "pip install --force-reinstall torch torchvision" in done.stderr
    assert not (tmp_path / "demo").exists()


def test_any_os_error_of_a_run_is_one_line(capsys, tmp_path, tiny, monkeypatch):
    from netloupe import images

    def full_disk(*args, **kw):
        raise OSError(28, "No space left on device", str(tmp_path / "attr" / "chelsea_saliency.png"))

    monkeypatch.setattr(images, "save", full_disk)
    err = error_line(*run(capsys, "attribute", "chelsea", "--method", "saliency", "--model", tiny,
                          "--out", str(tmp_path / "attr"))[::2])
    assert "No space left on device" in err and "chelsea_saliency.png" in err
    assert not (tmp_path / "attr").exists()  # the run's own folder is removed
