"""Every public function that takes a model leaves it exactly as found, over the whole zoo.

Add each new public function to PUBLIC_CALLS: a callable (model, inputs) that uses it.
"""

import pytest
import torch

import netloupe as nl
from model_state import leaves_unchanged, scramble
import zoo


def _predict(model, inputs):
    if len(inputs) > 1:  # a two-input model is no single-image classifier: a clear error, nothing changed
        with pytest.raises(nl.NetloupeError):
            nl.load_model(model).predict(inputs[0])
        return
    preds = nl.load_model(model).predict(inputs[0], k=3)
    assert len(preds) == len(inputs[0]) and len(preds[0]) == 3


def _layers(model, inputs):
    table = nl.layers(model, inputs)
    assert any(r.shape is not None for r in table)


def _probe_backward(model, inputs):
    inputs = tuple(t.clone().requires_grad_(True) for t in inputs)
    with nl.probe(model, [""], rule="guided", stochastic=True):
        model(*inputs).sum().backward()
    assert inputs[0].grad is not None


PUBLIC_CALLS = {
    "load_model": lambda model, inputs: nl.load_model(model),
    "predict": _predict,
    "layers": _layers,
    "probe": _probe_backward,
}


@pytest.mark.parametrize("call", sorted(PUBLIC_CALLS))
@pytest.mark.parametrize("name", zoo.ZOO)
def test_public_function_leaves_model_unchanged(name, call):
    model, inputs = zoo.build(name)
    scramble(model)
    with leaves_unchanged(model):
        PUBLIC_CALLS[call](model, inputs)
