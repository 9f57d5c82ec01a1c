"""compare(): which units changed between two or more models, by renders, by data and by weights."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Union, cast

import torch

from .. import runtime
from ..data import DataLike
from ..errors import InputError, ModelError, UnitError
from ..models import LoadedModel, ModelLike, as_loaded, forward, load_model, load_weights
from ..probe import probe
from ..units import UnitLike, as_unit
from .data import data_measures
from .renders import render_measures
from .result import Comparison
from .weights import drift

if TYPE_CHECKING:
    from typing_extensions import TypeGuard

_WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")

Channels = Union[None, int, str, Sequence[int]]  # None: all; N: the first N; "0-63" or a list: those


def _models(models: Union[ModelLike, Sequence[ModelLike]], spec: Optional[ModelLike]) -> List[LoadedModel]:
    """Loaded models from models, specs or weights files; a weights file takes the architecture
    of ``spec`` (a spec string or a model), else of the first model given."""
    # a list or tuple holds the models; anything else is one
    items = list(models) if isinstance(models, (list, tuple)) else [cast(ModelLike, models)]
    if len(items) < 2:
        raise InputError(f"compare needs two models or more (or a base and checkpoints); got {len(items)}")
    base = spec if spec is not None else next((m for m in items if not _is_weights(m)), None)
    loaded = []
    for item in items:
        if not _is_weights(item):
            loaded.append(as_loaded(item))
            continue
        if base is None:
            raise InputError("every model given is a weights file; say which architecture they are for with spec= "
                             "(e.g. spec='torchvision:resnet18', or the model itself)")
        if isinstance(base, (str, os.PathLike)) and not _is_weights(base):
            loaded.append(load_model(base, weights=item))
            continue
        model = copy.deepcopy(as_loaded(base))
        load_weights(model.module, item, model.name)
        model.name = Path(item).stem
        loaded.append(model)
    names = [m.name for m in loaded]
    if len(set(names)) < len(names):
        for k, m in enumerate(loaded):
            m.name = f"{names[k]}#{k}"
    return loaded


def _is_weights(item: object) -> TypeGuard[Union[str, os.PathLike]]:
    return isinstance(item, (str, os.PathLike)) and str(item).endswith(_WEIGHT_SUFFIXES) and Path(item).is_file()


def _channels(spec: Channels, count: int, layer: str) -> List[int]:
    """None: all; an int: the first N; "0-63" or a sequence: those channels (checked)."""
    if spec is None:
        return list(range(count))
    if isinstance(spec, int):
        return list(range(min(spec, count)))
    if isinstance(spec, str):
        try:
            lo, _, hi = spec.partition("-")
            chosen = list(range(int(lo), int(hi or lo) + 1))
        except ValueError:
            raise InputError(f"channels {spec!r}: write a range like '0-63' or a number") from None
    else:
        chosen = [int(c) for c in spec]
    bad = [c for c in chosen if not 0 <= c < count]
    if bad or not chosen:
        raise UnitError(f"channels {bad or spec} out of range; layer {layer!r} has channels 0..{count - 1}")
    return chosen


def _channel_counts(model: LoadedModel, layers: Sequence[str]) -> Dict[str, int]:
    """Each layer's channel count, from one forward pass at the model's input size."""
    with probe(model, layers, detach=True) as p, torch.no_grad():
        forward(model.module, (torch.zeros(1, 3, *model.input_size, device=model.device, dtype=model.dtype),))
    missing = [name for name in layers if name not in p.activations]
    if missing:
        raise UnitError(f"layer {missing[0]!r} of {model.name} did not run in its forward pass; choose layers it runs")
    return {name: p.layout(name).channels(p.activations[name].shape) for name in layers}


def compare(models: Sequence[Union[str, os.PathLike, LoadedModel, torch.nn.Module]],
            layers: Union[str, Sequence[UnitLike]], data: Optional[DataLike] = None, *, channels: Channels = None,
            renders: bool = True, spec: Optional[ModelLike] = None, reference: Optional[ModelLike] = None,
            gram_layer: Optional[str] = None, steps: int = 256, size: int = 64, seed: Optional[int] = None, top_k: int = 9,
            cka_layers: Union[Sequence[str], Dict[int, List[str]], None] = None, batch_size: Optional[int] = None,
            precision: str = "auto", progress: bool = True) -> Comparison:
    """What changed in each channel of ``layers`` between the first model and every later one.

    models: two or more models (specs, modules, LoadedModels) of one architecture, or a base and
    weights files (a checkpoint sequence: epoch 0, 1, 2, ...; files take ``spec``'s architecture,
    by default the first model's). channels: None (all), N (the first N), "0-63" or a list.
    Render-based (``renders=True``): every model renders the channels with the same seed (``seed``, or
    one drawn for the call),
    parameterization and transforms (one batched optimization per model); the renders are
    compared by the cosine of their embeddings in ``reference`` (default: the first model; its
    penultimate features), the distance of their Gram matrices at ``gram_layer`` of the reference
    (default: the compared layer when the reference has it) and SSIM, and flagged gray when they
    have no contrast. Data-based (with ``data``, anything ``scan`` takes): per channel the
    correlation over the images and the overlap of the top-k images; linear CKA between layers
    (``cka_layers``: the layers of the CKA matrix, default the compared ones; a dict {model index:
    layers} compares different architectures). Weights: the drift of each channel's producing
    filter. See Comparison for the combined score. precision: the data pass's forward passes
    (runtime.autocast: bfloat16 on a GPU that has it). No model is changed.
    """
    runtime.check_precision(precision)
    if renders and (isinstance(size, bool) or not isinstance(size, int) or size < 7):
        raise InputError(f"size (of the renders) must be an integer of at least 7 px, SSIM's window; got {size!r} "
                         "(or pass renders=False)")
    loaded = _models(models, spec)
    if isinstance(layers, str):
        layers = [s.strip() for s in layers.split(",") if s.strip()]
    names = [as_unit(loaded[0].module, layer).layer for layer in layers]
    if not names:
        raise InputError("give at least one layer to compare, e.g. layers=['blocks.4']")
    counts = [_channel_counts(m, names) for m in loaded]
    for i, c in enumerate(counts[1:], 1):
        for name in names:
            if c[name] != counts[0][name]:
                raise ModelError(f"layer {name!r} has {counts[0][name]} channels in {loaded[0].name} but {c[name]} in "
                                 f"{loaded[i].name}: compare models of one architecture (or layers that match)")
    chosen = {name: _channels(channels, counts[0][name], name) for name in names}
    result = Comparison([m.name for m in loaded], names, chosen, models=loaded)
    for i in range(1, len(loaded)):
        for name in names:
            result.measures[(i, name)] = {"weight_drift": drift(loaded[0].module, loaded[i].module, name,
                                                                counts[0][name])[chosen[name]]}
    if renders:
        seed = int(torch.randint(0, 2 ** 31 - 1, ())) if seed is None else seed  # one for every model
        ref = as_loaded(reference) if reference is not None else loaded[0]
        ref_layers = dict(ref.module.named_modules())
        for name in runtime.progress(names, desc="compare (renders)", enabled=progress):
            gram = gram_layer or (name if name in ref_layers else None)
            if gram is None:
                raise InputError(f"the reference has no layer {name!r}; give gram_layer=")
            measures, grays, pictures = render_measures(loaded, ref, name, chosen[name], gram, steps, size, seed,
                                                        batch_size, progress)
            for i, g in enumerate(grays):
                result.gray[(i, name)], result.renders[(i, name)] = g, pictures[i]
            for i, m in measures.items():
                result.measures[(i, name)].update(m)
    if data is not None:
        per_model = cka_layers if isinstance(cka_layers, dict) else \
            {i: list(cka_layers or names) for i in range(len(loaded))}
        correlation, jaccard, matrices, top_images, ids = data_measures(loaded, names, data, top_k, batch_size,
                                                                        progress, per_model, precision)
        for (i, name), r in correlation.items():
            result.measures[(i, name)].update(correlation=r[chosen[name]], jaccard=jaccard[(i, name)][chosen[name]])
        result.cka, result.cka_layers, result.ids = matrices, per_model, ids
        result.top_images = {key: v[chosen[key[1]]] for key, v in top_images.items()}
        result.source = data
    return result
