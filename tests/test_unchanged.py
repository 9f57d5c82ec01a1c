"""Every public function that takes a model leaves it exactly as found, over the whole zoo.

Add each new public function to PUBLIC_CALLS: a callable (model, inputs) that uses it.
"""

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


PUBLIC_CALLS = {
    # every registered attribution method, with its quick settings, then the options worth their own path
    **{name: _attribution(name, **m.quick) for name, m in nl.attribution.METHODS.items()},
    "grad_cam_layer_input": _attribution("grad_cam", layer_input=True),
    "guided_grad_cam_nearest": _attribution("guided_grad_cam", interpolate="nearest"),
    "integrated_gradients_unmultiplied": _attribution("integrated_gradients", steps=3, multiply_by_inputs=False),
    "metrics": _metrics,
    "contact_sheet": _contact_sheet,
    "load_model": lambda model, inputs: nl.load_model(model),
    "predict": _predict,
    "layers": _layers,
    "min_size": lambda model, inputs: len(inputs) > 1 or nl.optvis.min_size(
        nl.load_model(model, preprocess=nl.Preprocess(size=tuple(inputs[0].shape[-2:])))) >= 1,
    "probe": _probe_backward,
}


@pytest.mark.parametrize("call", sorted(PUBLIC_CALLS))
@pytest.mark.parametrize("name", zoo.ZOO)
def test_public_function_leaves_model_unchanged(name, call):
    model, inputs = zoo.build(name)
    scramble(model)
    with leaves_unchanged(model):
        PUBLIC_CALLS[call](model, inputs)
