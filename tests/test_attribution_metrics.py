import numpy as np
import pytest
import torch
import torch.nn as nn

import netloupe as nl
from model_state import leaves_unchanged
from netloupe.attribution import metrics


def _linear_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2)).eval()


def test_deletion_curve_of_a_linear_model_is_exact():
    model = _linear_model()
    x = torch.rand(2, 3, 8, 8)
    a = nl.input_x_gradient(model, x, [0, 1])
    curve = metrics.deletion(model, x, a, steps=4, baseline=0)
    bias = model[1].bias
    for i in range(2):
        contrib = a.values[i].sum(0).flatten()  # each pixel's exact share of the logit (bias aside)
        order = a.map()[i].flatten().argsort(descending=True)
        full = float(contrib.sum() + bias[i])
        for k, frac in enumerate(curve.fractions.tolist()):
            removed = contrib[order[: round(frac * 64)]].sum()
            assert curve.scores[i, k] == pytest.approx(full - float(removed), abs=1e-5)
    assert curve.fractions.tolist() == [0, 0.25, 0.5, 0.75, 1.0]
    assert torch.allclose(curve.auc, torch.from_numpy(np.trapezoid(curve.scores.numpy(), curve.fractions.numpy())).float())


def test_insertion_rises_faster_for_a_good_attribution_than_a_reversed_one():
    model = _linear_model()
    x = torch.rand(1, 3, 8, 8)
    good = nl.input_x_gradient(model, x, 0).positive()
    bad = nl.Attribution(-good.values + good.values.max(), "reversed", good.target)
    ins_good = metrics.insertion(model, x, good, steps=8, baseline=0)
    ins_bad = metrics.insertion(model, x, bad, steps=8, baseline=0)
    assert float(ins_good.auc[0]) > float(ins_bad.auc[0])
    assert ins_good.scores[0, -1] == pytest.approx(float(ins_bad.scores[0, -1]), abs=1e-5)  # all inserted: same image
    assert ins_good.to_pil().size[0] > 100


def test_randomization_check_shows_adebayo_pattern_on_default_model():
    model = nl.load_model("default")
    blocks = metrics.blocks_top_down(model.module)
    assert blocks[:4] == ["classifier", "bn2", "conv_head", "blocks.6"] and blocks[-1] == "conv_stem"
    with leaves_unchanged(model.module):
        r = metrics.randomization_check(model, nl.samples.path("chelsea"), ["saliency", "grad_cam", "guided_backprop"],
                                        blocks=blocks[:4], progress=False)
    after = {m: r.mean(m)[-1] for m in r.correlations}
    assert all(r.mean(m)[0] == 1.0 for m in r.correlations)
    # gradients and Grad-CAM change once the top is random; guided backprop barely notices
    assert after["saliency"] < 0.6 and after["grad_cam"] < 0.6
    assert after["guided_backprop"] > 0.9
    assert r.to_pil().size[0] > 300


def test_randomization_check_errors():
    model = _linear_model()
    with pytest.raises(nl.InputError, match="unknown blocks"):
        metrics.randomization_check(model, torch.rand(1, 3, 8, 8), blocks=["nope"], target=0)
    with pytest.raises(nl.InputError, match="mode"):
        metrics.randomization_check(model, torch.rand(1, 3, 8, 8), mode="shuffle", target=0)


def test_deletion_of_a_several_input_attribution_says_what_to_do():
    """Deletion ranks the pixels of one image input: an attribution over several inputs is refused clearly."""
    model = _Pair(nn.Bilinear(4, 3, 2))
    xs = (torch.rand(2, 4), torch.rand(2, 3))
    a = nl.saliency(model, xs, 0)
    with pytest.raises(nl.InputError, match=r"explains 2 inputs; map one of them with result.part\(i\)"):
        metrics.deletion(model, xs[0], a, steps=2)


class _Pair(nn.Module):
    """Two inputs into one bilinear layer."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, a, b):
        return self.inner(a, b)
