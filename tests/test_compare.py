"""Comparing models: planted changes found by every measure, identical models alike, CKA against
brute force and its invariances, the gray test, checkpoint sequences, clear errors, and models
left as found."""

import copy

import pytest
import torch
import torch.nn as nn

import netloupe as nl
from model_state import leaves_unchanged, scramble
from netloupe.compare import DISSIMILARITY, MEASURES, renders
from netloupe.compare.data import Moments


class Tiny(nn.Module):
    def __init__(self, width=8):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, width, 3, padding=1)
        self.fc = nn.Linear(width, 4)

    def forward(self, x):
        return self.fc(torch.relu(self.c2(torch.relu(self.c1(x)))).mean((2, 3)))


def tiny(name="base", width=8, seed=0):
    torch.manual_seed(seed)
    return nl.LoadedModel(Tiny(width).eval(), nl.Preprocess(size=24, resize=None), None, name)


def planted(base, channel=3, name="tuned"):
    """A copy of ``base`` whose layer c2 has channel ``channel`` re-initialized."""
    other = copy.deepcopy(base)
    other.name = name
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        other.module.c2.weight[channel] = torch.randn(other.module.c2.weight[channel].shape, generator=g)
        other.module.c2.bias[channel] = 0.5
    return other


def data(n=20, seed=2):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(3, 24, 24, generator=g) for _ in range(n)]


def test_a_re_initialized_channel_is_ranked_first_by_every_measure():
    base = tiny()
    result = nl.compare([base, planted(base)], ["c2"], data(), steps=24, size=24, progress=False)
    measures = result.measures[(1, "c2")]
    assert set(measures) == set(MEASURES)
    for name, values in measures.items():
        change = DISSIMILARITY[name](values)
        assert int(torch.nan_to_num(change, nan=-1).argmax()) == 3, name
    assert result.top(1)[0]["channel"] == 3 and result.top(1)[0]["score"] > 0.2
    others = [r for r in result.rows() if r["channel"] != 3]
    assert all(r["score"] < 1e-6 for r in others)  # nothing else changed


def test_identical_models_are_alike_in_every_measure_and_cka():
    base = tiny()
    twin = copy.deepcopy(base)
    result = nl.compare([base, twin], ["c1", "c2"], data(), steps=8, size=24, progress=False)
    for layer in ("c1", "c2"):
        m = result.measures[(1, layer)]
        assert torch.allclose(m["render_cosine"], torch.ones(8, dtype=m["render_cosine"].dtype), atol=1e-6)
        assert torch.allclose(m["ssim"].float(), torch.ones(8), atol=1e-6)
        assert torch.all(m["weight_drift"] == 0) and torch.all(m["jaccard"] == 1)
        assert torch.allclose(m["correlation"][~m["correlation"].isnan()], torch.ones(1, dtype=torch.float64))
        assert result.similarity(1, layer) == pytest.approx(1.0, abs=1e-6)
    assert torch.allclose(result.cka[1].diagonal(), torch.ones(2, dtype=torch.float64), atol=1e-9)


def _cka(x, y):
    """Linear CKA by its definition (Kornblith et al. 2019), on centred features."""
    x, y = x - x.mean(0), y - y.mean(0)
    return float((y.T @ x).norm() ** 2 / ((x.T @ x).norm() * (y.T @ y).norm()))


def test_streamed_cka_equals_brute_force_and_is_invariant():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(50, 6, generator=g, dtype=torch.float64), torch.randn(50, 9, generator=g, dtype=torch.float64)
    y[:, :6] += 2 * x

    def streamed(a, b):
        m = Moments(a.shape[1], b.shape[1], False, "cpu")
        for part in torch.split(torch.arange(50), 7):  # any batching gives the same sums
            m.add(a[part], b[part])
        return m.cka()
    assert streamed(x, y) == pytest.approx(_cka(x, y), rel=1e-10)
    q, _ = torch.linalg.qr(torch.randn(9, 9, generator=g, dtype=torch.float64))
    assert streamed(x, 3.5 * y @ q) == pytest.approx(streamed(x, y), rel=1e-9)  # orthogonal transform, isotropic scale
    assert streamed(x, x) == pytest.approx(1.0)


def test_cka_across_two_different_architectures_equals_brute_force():
    a, b = tiny("narrow", width=8), tiny("wide", width=12, seed=5)
    images = data(12)
    matrix = nl.layer_cka(a, ["c1", "c2"], b, ["c2"], images, progress=False)
    assert matrix.shape == (2, 1)
    x = torch.stack(images)
    with torch.no_grad():
        feats_a = a.module.c2(torch.relu(a.module.c1(x))).double().mean((2, 3))  # globally average-pooled
        feats_b = b.module.c2(torch.relu(b.module.c1(x))).double().mean((2, 3))
    assert float(matrix[1, 0]) == pytest.approx(_cka(feats_a, feats_b), rel=1e-8)


def test_the_gray_test_works_in_float():
    constant = torch.full((1, 3, 16, 16), 0.5)
    black = torch.zeros(1, 3, 16, 16)  # in uint8, black minus anything wraps around to bright
    stripes = torch.zeros(1, 3, 16, 16)
    stripes[..., ::2] = 1.0
    faint = constant + 0.005 * torch.randn(1, 3, 16, 16)
    assert renders.gray(torch.cat([constant, black, faint])).all()
    assert not renders.gray(stripes).any()


def test_a_checkpoint_sequence_drifts_and_files_take_the_base_architecture(tmp_path):
    base = tiny()
    paths = []
    for epoch in (1, 2):
        step = copy.deepcopy(base)
        with torch.no_grad():
            for p in step.module.parameters():
                p.add_(0.05 * epoch * torch.randn(p.shape, generator=torch.Generator().manual_seed(epoch)))
        paths.append(tmp_path / f"epoch{epoch}.pt")
        torch.save(step.module.state_dict(), paths[-1])
    result = nl.compare([base, *paths], ["c1", "c2"], data(10), renders=False, progress=False)
    assert result.names == ["base", "epoch1", "epoch2"]
    for layer in ("c1", "c2"):
        assert 1 > result.similarity(1, layer) > result.similarity(2, layer)  # farther at every epoch
        assert (result.measures[(2, layer)]["weight_drift"] > result.measures[(1, layer)]["weight_drift"]).all()
    assert result.to_pil(kind="trajectory").size[0] > 300
    torch.save({"nope": torch.zeros(1)}, tmp_path / "bad.pt")
    with pytest.raises(nl.ModelError, match="do not fit"):
        nl.compare([base, tmp_path / "bad.pt"], ["c2"], renders=False, progress=False)


def test_results_save_load_tables_and_report(tmp_path):
    base = tiny()
    images = data(8)
    result = nl.compare([base, planted(base)], ["c2"], images, steps=8, size=24, progress=False)
    rows = result.rows()
    assert len(rows) == 8 and {"score", "ssim", "correlation", "gray"} <= set(rows[0])
    again = nl.Comparison.load(result.save(tmp_path / "saved"))
    assert again.rows() == rows and torch.equal(again.renders[(1, "c2")], result.renders[(1, "c2")])
    assert result.save(tmp_path / "scores.png").is_file()
    index = nl.report(result, tmp_path / "report", progress=False)
    page = index.read_text()
    assert "c2:3" in page and "most_0.png" in page
    for name in ("scores.png", "cka.png", "most_0.png", "least_0.png"):
        assert (tmp_path / "report" / name).is_file()
    frame = result.to_frame()
    assert len(frame) == 8


def test_bad_input_is_a_clear_error_and_changes_no_model():
    base, wide = tiny(), tiny("wide", width=12)
    scramble(base.module)
    with leaves_unchanged(base.module):
        with pytest.raises(nl.InputError, match="two models or more"):
            nl.compare([base], ["c2"])
        with pytest.raises(nl.ModelError, match="'c2' has 8 channels in base but 12 in wide"):
            nl.compare([base, wide], ["c2"], renders=False)
        with pytest.raises(nl.InputError, match="at least one layer"):
            nl.compare([base, copy.deepcopy(base)], [])
        with pytest.raises(nl.UnitError, match="nearest"):
            nl.compare([base, copy.deepcopy(base)], ["c9"])
        with pytest.raises(nl.UnitError, match="channels 0..7"):
            nl.compare([base, copy.deepcopy(base)], ["c2"], channels=[3, 9])


def test_every_model_compared_is_left_as_found(tmp_path):
    base = tiny()
    other = planted(base)
    scramble(base.module)
    scramble(other.module, seed=3)
    with leaves_unchanged(base.module), leaves_unchanged(other.module):
        nl.compare([base, other], ["c1", "c2"], data(6), channels=4, steps=4, size=24, progress=False)


def test_the_compare_verb(tmp_path, capsys, monkeypatch):
    from netloupe.cli import main

    (tmp_path / "tinycompare.py").write_text("import test_compare\ndef factory():\n    return test_compare.tiny()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    tuned = planted(tiny())
    torch.save(tuned.module.state_dict(), tmp_path / "tuned.pt")
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("chelsea", "coffee", "rocket", "astronaut"):
        nl.samples.image(name).save(folder / f"{name}.png")
    code = main(["compare", "tinycompare:factory", str(tmp_path / "tuned.pt"), "--model", "tinycompare:factory",
                 "--layers", "c2", "--data", str(folder), "--channels", "6", "--steps", "4", "--size", "24",
                 "--out", str(tmp_path / "out")])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.splitlines()[0].startswith("c2:3") and (tmp_path / "out" / "index.html").is_file()
    assert nl.Comparison.load(tmp_path / "out").channels == {"c2": list(range(6))}
