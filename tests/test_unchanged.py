"""Every public function that takes a model leaves it exactly as found, over the whole zoo.

Add each new public function to PUBLIC_CALLS: a callable (model, inputs) that uses it.
"""

import copy

import pytest
import torch

import netloupe as nl
import zoo
from model_state import leaves_unchanged, scramble


def _predict(model, inputs):
    if len(inputs) > 1:  # a two-input model is no single-image classifier: a clear error, nothing changed
        with pytest.raises(nl.NetloupeError):
            nl.load_model(model).predict(inputs[0])
        return
    preds = nl.load_model(model).predict(inputs[0], top_k=3)
    assert len(preds) == len(inputs[0]) and len(preds[0]) == 3


def _layers(model, inputs):
    table = nl.layers(model, inputs)
    assert any(r.shape is not None for r in table)


def _probe_backward(model, inputs):
    inputs = tuple(t.clone().requires_grad_(True) for t in inputs)
    with nl.probe(model, [""], rule="guided", stochastic=True):
        model(*inputs).sum().backward()
    assert inputs[0].grad is not None


def _attribution(method, **kw):
    def call(model, inputs):
        if not nl.attribution.METHODS[method].applies(model):  # e.g. attention rollout on a CNN: a clear error
            with pytest.raises(nl.NetloupeError):
                nl.attribute(model, inputs if len(inputs) > 1 else inputs[0], method, target=0, **kw)
            return
        r = nl.attribute(model, inputs if len(inputs) > 1 else inputs[0], method, target=0, **kw)
        values = r.values if isinstance(r.values, tuple) else (r.values,)
        assert all(v is None or (v.shape[0] == len(inputs[0]) and torch.isfinite(v).all()) for v in values)
        if len(inputs) > 1:  # the same model with its second input passed through as a forward argument
            r = nl.attribute(model, inputs[0], method, target=0, forward_args=inputs[1:], **kw)
            assert torch.isfinite(r.values).all()
    return call


def _contact_sheet(model, inputs):
    if len(inputs) > 1:  # a sheet explains one image through a one-input model
        with pytest.raises(nl.NetloupeError):
            nl.attribution.contact_sheet(model, inputs[0][:1], ["saliency"])
        return
    sheet = nl.attribution.contact_sheet(model, inputs[0][:1], ["saliency", "grad_cam"])
    assert sheet.to_pil().size[0] > 300


def _compare(model, inputs):
    if len(inputs) > 1:  # renders and data of one image per sample: a clear error for the siamese model
        with pytest.raises(nl.NetloupeError):
            nl.compare([model, copy.deepcopy(model)], ["branch.3"], list(inputs[0]), steps=1, progress=False)
        return
    loaded = nl.load_model(model, preprocess=nl.Preprocess(size=tuple(inputs[0].shape[-2:])))
    layer = next(n for n, m in model.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))
    r = nl.compare([loaded, copy.deepcopy(loaded)], [layer], list(inputs[0]), channels=2, steps=1, size=16,
                   progress=False)
    assert len(r.rows()) == 2 and all(0 <= row["score"] <= 1 for row in r.rows() if row["score"] == row["score"])


def _metrics(model, inputs):
    if len(inputs) > 1:
        return
    from netloupe.attribution import metrics

    a = nl.saliency(model, inputs[0], target=0)
    assert metrics.deletion(model, inputs[0], a, steps=2).scores.shape == (len(inputs[0]), 3)
    assert metrics.insertion(model, inputs[0], a, steps=2).auc.shape == (len(inputs[0]),)
    blocks = metrics.blocks_top_down(model)[:2]
    r = metrics.randomization_check(model, inputs[0][:1], "saliency", target=0, blocks=blocks, progress=False)
    assert r.correlations["saliency"].shape == (3, 1)


def _photo(recipe):
    """A photo recipe at the model's first conv or linear layer, with tiny settings, on the inputs
    as photos; the siamese model's two inputs make no one photo: a clear error, nothing changed."""
    def call(model, inputs):
        loaded = nl.load_model(model, preprocess=nl.Preprocess(size=tuple(inputs[0].shape[-2:])))
        layer = next(n for n, m in model.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))
        photos = inputs[0].sigmoid()
        if len(inputs) > 1:
            with pytest.raises(nl.NetloupeError):
                recipe(loaded, photos, layer)
            return
        assert torch.isfinite(recipe(loaded, photos, layer).images).all()
    return call


def _twice(x):
    """Photos twice the size of the inputs, so that a smaller octave still suits the model (VGG's five
    poolings need 32 px)."""
    return torch.nn.functional.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False).clamp(0, 1)


def _centre(x):
    mask = torch.zeros(x.shape[-2:])
    mask[x.shape[-2] // 4:-(x.shape[-2] // 4), x.shape[-1] // 4:-(x.shape[-1] // 4)] = 1
    return mask


PUBLIC_CALLS = {
    # every registered attribution method, with its quick settings, then the options worth their own path
    **{name: _attribution(name, **m.quick) for name, m in nl.attribution.METHODS.items()},
    "grad_cam_layer_input": _attribution("grad_cam", layer_input=True),
    "guided_grad_cam_nearest": _attribution("guided_grad_cam", interpolate="nearest"),
    "integrated_gradients_unmultiplied": _attribution("integrated_gradients", steps=3, multiply_by_inputs=False),
    "layer_conductance_layer_input": _attribution("layer_conductance", steps=2, layer_input=True, reduce=None),
    "metrics": _metrics,
    "contact_sheet": _contact_sheet,
    "compare": _compare,
    "load_model": lambda model, inputs: nl.load_model(model),
    "predict": _predict,
    "layers": _layers,
    "min_size": lambda model, inputs: len(inputs) > 1 or nl.optvis.min_size(
        nl.load_model(model, preprocess=nl.Preprocess(size=tuple(inputs[0].shape[-2:])))) >= 1,
    "probe": _probe_backward,
    "dream": _photo(lambda m, x, layer: nl.dream(m, _twice(x), layer, octaves=2, steps_per_octave=1,
                                                 mask=_centre(_twice(x)), progress=False)),
    "invert": _photo(lambda m, x, layer: nl.invert(m, x[:1], [layer, ""], steps=1, progress=False)),
    "caricature": _photo(lambda m, x, layer: nl.caricature(m, x[:1], layer, adversarial=True, attack_steps=1, steps=1,
                                                           progress=False)),
    "adversarial": _photo(lambda m, x, layer: nl.adversarial(m, x, steps=1, progress=False)),
    "style_transfer": _photo(lambda m, x, layer: nl.style_transfer(
        m, x[:1], [x[1:], x[:1]], style_weights=[0.7, 0.3], content_layers=[layer], style_layers=[layer], steps=2,
        progress=False)),
    "visualize_yosinski": _photo(lambda m, x, layer: nl.visualize(  # every regularizer on
        m, [f"{layer}:0", f"{layer}:1"], algorithm="yosinski", preset=nl.optvis.classic.preset(
            4, steps=2, decay=0.1, norm_pct=50), size=tuple(x.shape[-2:]), progress=False)),
}


@pytest.mark.parametrize("call", sorted(PUBLIC_CALLS))
@pytest.mark.parametrize("name", zoo.ZOO)
def test_public_function_leaves_model_unchanged(name, call):
    model, inputs = zoo.build(name)
    scramble(model)
    with leaves_unchanged(model):
        PUBLIC_CALLS[call](model, inputs)
