"""Receptive fields measured, not computed by formula, and the top image patches they crop.

A unit's receptive field is the input region whose gradient with respect to the unit is
non-zero, measured on a copy of the model whose weights are positive constants (so no two
paths cancel), whose ReLU-family backward passes every gradient (the probe's "deconv" rule)
and whose max-pooling spreads its gradient over the whole window. That works for any
architecture (dilation, depthwise and strided convs, pooling, borders), without the stride - 1
over-estimate per strided layer of a formula that ignores where a window starts.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Sequence, Tuple, Union, cast

import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image, ImageDraw

from ..data import DataLike, as_source, sample_inputs
from ..errors import InputError, NetloupeError, UnitError
from ..images import Picture, grid, overlay, shown, to_pil
from ..layouts import infer
from ..models import LoadedModel, ModelLike, as_loaded, forward
from ..probe import probe
from ..runtime import generator
from ..units import Unit, UnitLike, as_unit, check_channel
from .result import ScanResult


@dataclass
class ReceptiveField:
    """Unit (y, x) of ``layer`` sees input rows [offset[0] + y * stride[0], ... + size[0]) and the
    same for columns (offsets are negative where the window starts in the padding).
    ``clipped``: the measured window of a central unit reached the input's edge, so ``size`` is a
    lower bound (the field covers the whole input at this size). ``input_index``: which of the
    model's inputs the layer sees."""

    layer: str
    size: Tuple[int, int]
    stride: Tuple[int, int]
    offset: Tuple[int, int]
    input_size: Tuple[int, int]
    clipped: bool
    input_index: int = 0

    def box(self, y: int, x: int) -> Tuple[int, int, int, int]:
        """(top, left, bottom, right), bottom/right exclusive, of unit (y, x)'s window in input
        coordinates; may reach outside the input. A clipped field gives the whole input."""
        if self.clipped:
            return 0, 0, self.input_size[0], self.input_size[1]
        top = self.offset[0] + y * self.stride[0]
        left = self.offset[1] + x * self.stride[1]
        return top, left, top + self.size[0], left + self.size[1]


class _SpreadMaxPool(nn.Module):
    """Max-pooling forward whose backward reaches every element of the window (as average
    pooling's does), so the measured field does not depend on which element won."""

    def __init__(self, pool: Union[nn.MaxPool2d, nn.AdaptiveMaxPool2d]) -> None:
        super().__init__()
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.pool(x)
        p = self.pool
        if isinstance(p, nn.AdaptiveMaxPool2d):
            spread = F.adaptive_avg_pool2d(x, p.output_size)
        else:
            spread = F.avg_pool2d(x, p.kernel_size, p.stride, p.padding, p.ceil_mode, count_include_pad=True)
        return spread + (out - spread).detach()


def _positive_copy(module: nn.Module) -> nn.Module:
    """A copy with every weight a positive constant (1 / fan-in, so values stay near the input's),
    biases 0, norm layers the identity (LayerNorm and GroupNorm removed: with every channel equal
    they would give zeros) and max-pools spreading their gradient. Parameters are
    allocated fresh rather than copied (the old values are never needed), in float64 for small
    models and at least float32 otherwise."""
    params = list(module.named_parameters())
    big = sum(p.numel() for _, p in params) > 20_000_000
    dtype = torch.float32 if big else torch.float64
    memo = {id(p): nn.Parameter(torch.empty(p.shape, dtype=dtype if p.is_floating_point() else p.dtype,
                                            device=p.device), requires_grad=p.requires_grad) for _, p in params}
    twin = copy.deepcopy(module, memo).to(dtype)
    with torch.no_grad():
        for name, p in twin.named_parameters():
            if not p.is_floating_point():
                continue
            if p.dim() >= 2:
                p.fill_(p.shape[0] / p.numel())
            else:
                p.fill_(0.0 if name.endswith("bias") else 1.0)
        for name, b in twin.named_buffers():
            if name.endswith("running_mean"):
                b.zero_()
            elif name.endswith("running_var"):
                b.fill_(1.0)
    for parent in list(twin.modules()):
        for child_name, child in parent.named_children():
            plain = isinstance(child, nn.MaxPool2d) and child.dilation in (1, (1, 1)) and not child.return_indices
            if plain or (isinstance(child, nn.AdaptiveMaxPool2d) and not child.return_indices):
                setattr(parent, child_name, _SpreadMaxPool(cast(Union[nn.MaxPool2d, nn.AdaptiveMaxPool2d], child)))
            elif isinstance(child, (nn.LayerNorm, nn.GroupNorm)):
                # they mix channels at each position only, and would zero equal channels and their gradient
                setattr(parent, child_name, nn.Identity())
    return twin


def _span(mask: torch.Tensor) -> Tuple[int, int]:
    idx = torch.nonzero(mask).flatten()
    return int(idx[0]), int(idx[-1])


def _input_shapes(loaded: LoadedModel, size: Union[int, Sequence[int], None],
                  inputs: Union[torch.Tensor, Sequence[torch.Tensor], None]) -> List[Tuple[int, ...]]:
    if inputs is not None:
        inputs = inputs if isinstance(inputs, (tuple, list)) else (inputs,)
        return [tuple(t.shape[-3:]) for t in inputs]
    if size is None:
        size = loaded.input_size
    hw = (size, size) if isinstance(size, int) else tuple(size)[-2:]
    # the first conv's (or other layer's) in_channels: an int where a module has one
    channels = cast(int, next((m.in_channels for m in loaded.module.modules() if hasattr(m, "in_channels")), 3))
    return [(channels, *hw)]


def receptive_field(model: ModelLike, layer: UnitLike, size: Union[int, Sequence[int], None] = None, *, call: int = 0,
                    inputs: Union[torch.Tensor, Sequence[torch.Tensor], None] = None, seed: Optional[int] = None
                    ) -> ReceptiveField:
    """Measure the receptive field of ``layer`` at ``size`` ((H, W) or an int; default the
    model's input size). ``inputs``: input tensors (a tuple for several inputs) whose shapes to
    use instead; ``call``: which call of a module run several times per forward (a shared branch)."""
    loaded = as_loaded(model)
    name = as_unit(loaded.module, layer).layer
    shapes = _input_shapes(loaded, size, inputs)
    twin = _positive_copy(loaded.module)
    device = loaded.device
    reps = 2  # random positive inputs per unit; the union of their masks is taken
    g = generator(seed, "cpu")
    dtype = next(twin.parameters()).dtype
    xs = tuple((torch.rand((2 * reps, *s), generator=g, dtype=dtype) + 0.5).to(device).requires_grad_(True)
               for s in shapes)
    with probe(twin, [name], rule="deconv") as p:
        twin(*xs)
        calls = p.calls.get(name, [])
        if len(calls) <= call:
            raise UnitError(f"layer {name!r} ran {len(calls)} time(s) per forward; call={call} does not exist")
        layout = infer(loaded.module, name, calls[call].shape, cast(Tuple[int, int], tuple(shapes[0][-2:])))
        act = layout.grid_view(calls[call])
        if act is None:
            raise UnitError(f"a receptive field needs a layer with a spatial grid; {name!r} gives "
                            f"{tuple(calls[call].shape)} (layout {layout})")
        h, w = act.shape[2:]
        cy, cx = h // 2, w // 2
        dy, dx = (1 if cy + 1 < h else -1 if cy > 0 else 0), (1 if cx + 1 < w else -1 if cx > 0 else 0)
        objective = act[:reps, :, cy, cx].sum() + act[reps:, :, cy + dy, cx + dx].sum()
        grads = torch.autograd.grad(objective, xs, allow_unused=True)
    index = next((i for i, gr in enumerate(grads) if gr is not None and gr.abs().sum() > 0), None)
    if index is None:
        raise NetloupeError(f"layer {name!r} does not depend on the input (zero gradient everywhere)")
    grad = grads[index].abs()
    first, second = grad[:reps].sum((0, 1)) > 0, grad[reps:].sum((0, 1)) > 0
    height, width = shapes[index][-2:]
    (r0, r1), (c0, c1) = _span(first.any(1)), _span(first.any(0))
    (s0, _), (t0, _) = _span(second.any(1)), _span(second.any(0))
    clipped = r0 == 0 or c0 == 0 or r1 == height - 1 or c1 == width - 1
    stride_y = (s0 - r0) // dy if dy else height
    stride_x = (t0 - c0) // dx if dx else width
    if clipped:  # windows that reach the edge do not move with the unit; use the layer's scale
        stride_y, stride_x = max(1, round(height / h)), max(1, round(width / w))
    return ReceptiveField(name, (r1 - r0 + 1, c1 - c0 + 1), (stride_y, stride_x),
                          (r0 - cy * stride_y, c0 - cx * stride_x), (height, width), clipped, index)


# -- top patches -----------------------------------------------------------------------------

def _checker(h: int, w: int, cell: int = 4) -> torch.Tensor:
    """A grey checkerboard [3, h, w] that marks padding beyond the image's border."""
    yy, xx = torch.meshgrid(torch.arange(h) // cell, torch.arange(w) // cell, indexing="ij")
    return (0.55 + 0.2 * ((yy + xx) % 2).float()).expand(3, h, w).clone()


def _crop(t: torch.Tensor, box: Sequence[int], fill: torch.Tensor) -> torch.Tensor:
    """The box of a [C, H, W] tensor; what lies outside the tensor comes from ``fill`` [C, h, w]."""
    top, left, bottom, right = box
    out = fill.clone()
    H, W = t.shape[-2:]
    y0, x0, y1, x1 = max(top, 0), max(left, 0), min(bottom, H), min(right, W)
    if y1 > y0 and x1 > x0:
        out[:, y0 - top:y1 - top, x0 - left:x1 - left] = t[:, y0:y1, x0:x1]
    return out


def _outline(tile: Image.Image, box: Sequence[int]) -> Image.Image:
    """``tile`` with a white box (black-edged, so it shows on any colour) around ``box``
    (top, left, bottom, right; bottom/right exclusive) in the tile's pixels."""
    top, left, bottom, right = box
    out = tile.copy()
    draw = ImageDraw.Draw(out)
    draw.rectangle((left - 1, top - 1, right, bottom), outline=(0, 0, 0), width=3)
    draw.rectangle((left, top, right - 1, bottom - 1), outline=(255, 255, 255), width=1)
    return out


@dataclass
class Patches(Picture):
    """The top (or bottom) k patches of one channel: for each, the image id, the unit value and
    position, the ``box`` in input coordinates, ``windows`` (the model-input crop, zero beyond the
    image), ``pictures`` ([0, 1] RGB, checkerboard beyond the image; drawn cropped at the image's
    border unless asked otherwise) and, if an ``attribute``
    callback was given, ``maps`` cropped the same way.

    A unit whose receptive field covers the whole input (``field.clipped``) gives the whole photo
    as its patch, which alone cannot say what the unit responded to; for those, ``fired`` holds
    the channel's activation map on each image, upsampled bilinearly to the input size [k, H, W],
    and ``cells`` the input-space box (top, left, bottom, right) of the grid cell of the maximum:
    the pictures show them as a heat overlay and an outline."""

    layer: str
    channel: int
    image_ids: List[str]
    images: torch.Tensor
    values: torch.Tensor
    positions: torch.Tensor
    boxes: torch.Tensor
    windows: torch.Tensor
    pictures: torch.Tensor
    field: ReceptiveField
    maps: Optional[torch.Tensor] = None
    fired: Optional[torch.Tensor] = None
    cells: Optional[torch.Tensor] = None

    BORDERS = ("crop", "checker")

    def inside(self, j: int) -> Tuple[int, int, int, int]:
        """(top, left, bottom, right) of the part of patch ``j``'s window that lies inside its image,
        in the patch's own pixels (the whole patch unless the window reaches past the border)."""
        top, left, bottom, right = self.boxes[j].tolist()
        h, w = self.field.input_size
        return max(top, 0) - top, max(left, 0) - left, min(bottom, h) - top, min(right, w) - left

    def tile(self, j: int, cell: int = 96, border: str = "crop") -> Image.Image:
        """Patch ``j`` drawn at ``cell`` pixels per window width: the attribution map as a heat overlay
        if given, else the fired map; the cell of the maximum outlined where known. border: "crop"
        shows only what lies inside the image (a window past the border gives a narrower tile, at
        the same scale), "checker" the whole window with a checkerboard where it passes the border."""
        if border not in self.BORDERS:
            raise InputError(f"border must be one of {', '.join(self.BORDERS)}; got {border!r}")
        heat = self.maps if self.maps is not None else self.fired
        pic = self.pictures[j]
        t, left, b, r = self.inside(j) if border == "crop" else (0, 0, pic.shape[1], pic.shape[2])
        tile = to_pil(pic[:, t:b, left:r]) if heat is None else overlay(to_pil(pic[:, t:b, left:r]),
                                                                         heat[j][t:b, left:r])
        scale = cell / pic.shape[2] if cell else 1.0
        tile = tile.resize((max(1, round(tile.width * scale)), max(1, round(tile.height * scale))),
                           Image.Resampling.BILINEAR)
        if self.cells is not None:  # outlined at the shown size, so the line stays sharp
            origin = (self.boxes[j, :2] + torch.tensor([t, left])).repeat(2)
            tile = _outline(tile, [round(v * scale) for v in (self.cells[j] - origin).tolist()])
        return tile

    def to_pil(self, index: Optional[int] = None, cell: int = 96, captions: bool = True, border: str = "crop",
               **kw: Any) -> Image.Image:
        """One tile per patch (patch ``index`` alone, or all in a row), ``cell`` pixels per window
        width (see :meth:`tile` for ``border``), captioned with the image and the unit's value."""
        picked = shown(index, len(self.pictures), "patches")
        tiles = [self.tile(j, cell, border) for j in picked]
        names = [f"{self.image_ids[j].rsplit('/', 1)[-1][:14]}\n{float(self.values[j]):.3g}" for j in picked]
        return grid(tiles, names if captions else None, **{"ncol": len(tiles), **kw})


def _fired(loaded: LoadedModel, layer: str, call: int, channel: int, samples: Sequence[Tuple[torch.Tensor, ...]],
           positions: torch.Tensor,
           input_index: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """(maps [k, H, W], cells [k, 4]): ``channel``'s output on each sample (one batched forward),
    upsampled bilinearly to the input size, and the input-space box of the grid cell at each
    (y, x) of ``positions``; a grid cell spans input size / grid size pixels."""
    module = loaded.module
    batch = [torch.stack(parts).to(device=loaded.device, dtype=loaded.dtype) for parts in zip(*samples)]
    with probe(module, [layer], detach=True) as p, torch.no_grad():
        forward(module, batch)
    out = p.calls[layer][call]
    layout = p.layout(layer, out.shape)
    grid_out = layout.grid_view(out)
    if grid_out is None:  # receptive_field refused the layer already
        raise UnitError(f"layer {layer!r} gives {tuple(out.shape)} (layout {layout}), which has no spatial grid")
    act = grid_out[:, channel:channel + 1].float()
    size = batch[input_index].shape[-2:]
    maps = F.interpolate(act, size=size, mode="bilinear", align_corners=False)[:, 0].cpu()
    (h, w), (H, W) = act.shape[-2:], size
    y, x = positions[:, 0].double(), positions[:, 1].double()
    cells = torch.stack([y * H / h, x * W / w, (y + 1) * H / h, (x + 1) * W / w], 1).round().long()
    return maps, cells


def _sample_inputs(result: ScanResult, data: Optional[DataLike], model: LoadedModel, index: int
                   ) -> Tuple[torch.Tensor, ...]:
    source = as_source(data) if data is not None else result.source
    if source is None:  # a loaded result: its ids are paths, or path pairs written "a|b"
        source = as_source([tuple(i.split("|")) if "|" in i else i for i in result.ids])
    try:
        sample = source.dataset[index]
    except (IndexError, KeyError):
        raise InputError(f"image {index} of the scan is not in the data given; "
                         "pass the data that was scanned") from None
    try:
        return sample_inputs(sample, model.preprocess, result.to_inputs)
    except InputError as e:
        raise InputError(f"cannot reload image {result.ids[index]!r} for its patch ({e}); pass data= with the "
                         "scanned images") from None


def top_patches(result: ScanResult, layer: str, channel: int, *, model: Optional[ModelLike] = None,
                data: Optional[DataLike] = None, bottom: bool = False,
                attribute: Optional[Callable[[LoadedModel, Tuple[torch.Tensor, ...], Unit], Any]] = None,
                field: Optional[ReceptiveField] = None) -> Patches:
    """Crop the receptive-field window of each top-k (or bottom-k) unit of ``channel`` from its image.

    model/data: needed only for a result loaded from disk (a loaded result can reload images
    whose ids are paths). attribute(model, inputs, unit) -> [H, W] map over the input (e.g. a
    guided-backprop map); it is called once per patch and cropped with it. field: the layer's
    receptive field at the images' size, if already measured (e.g. ``patches.field`` of another
    channel of the same layer); measured when missing or made for another layer or size.
    Where the field covers the whole input (deep layers), the patches also get the channel's
    activation maps (``fired``) and the cell of each maximum (``cells``), from one forward pass
    over the k images.
    """
    if not isinstance(result, ScanResult):
        raise InputError(f"top_patches takes the ScanResult of netloupe.scan(model, data, layers) first; got "
                         f"{type(result).__name__}")
    stats = result[layer]
    check_channel(layer, channel, stats.channels)
    loaded = as_loaded(model) if model is not None else result.model
    if loaded is None:
        raise NetloupeError("this result was loaded from disk; pass model= (the scanned model) to top_patches")
    which = (stats.bottom_images, stats.bottom_values, stats.bottom_positions) if bottom else \
        (stats.top_images, stats.top_values, stats.top_positions)
    images, values, positions = (t[channel] for t in which)
    if not len(images):
        raise NetloupeError("the scan kept no bottom-k images; scan with bottom_k > 0" if bottom else
                            "the scan kept no top-k images")
    windows: List[torch.Tensor] = []
    pictures: List[torch.Tensor] = []
    maps: List[torch.Tensor] = []
    boxes: List[Tuple[int, int, int, int]] = []
    samples: List[Tuple[torch.Tensor, ...]] = []
    for index, (y, x) in zip(images.tolist(), positions.tolist()):
        parts = _sample_inputs(result, data, loaded, index)
        samples.append(parts)
        if field is None or field.layer != stats.layer or \
                field.input_size != tuple(parts[field.input_index].shape[-2:]):  # stale
            field = receptive_field(loaded, stats.layer, call=stats.call, inputs=parts)
        box = field.box(y, x)
        boxes.append(box)
        h, w = box[2] - box[0], box[3] - box[1]
        image = parts[field.input_index]
        windows.append(_crop(image, box, torch.zeros(image.shape[0], h, w, dtype=image.dtype)))
        rgb = loaded.preprocess.inverse(image.unsqueeze(0).float())[0]
        pictures.append(_crop(rgb, box, _checker(h, w)))
        if attribute is not None:
            batch = tuple(t.unsqueeze(0).to(loaded.device) for t in parts)
            m = attribute(loaded, batch, Unit(stats.layer, channel, y, x))
            m = torch.as_tensor(m).detach().float().cpu().reshape(image.shape[-2:])
            maps.append(_crop(m.unsqueeze(0), box, torch.zeros(1, h, w))[0])
    field = cast(ReceptiveField, field)  # the loop ran (there are images) and measured it where missing
    fired, cells = _fired(loaded, stats.layer, stats.call, channel, samples, positions, field.input_index) \
        if field.clipped else (None, None)
    ids = [result.ids[i] for i in images.tolist()]
    return Patches(layer, channel, ids, images.clone(), values.clone(), positions.clone(),
                   torch.tensor(boxes, dtype=torch.long), torch.stack(windows), torch.stack(pictures), field,
                   torch.stack(maps) if maps else None, fired, cells)
