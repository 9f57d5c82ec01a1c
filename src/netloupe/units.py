"""Units: a layer, a channel of it, or one neuron, written as a string anyone can type.

``"layer4.1.conv2"`` is a layer, ``"layer4.1.conv2:12"`` channel 12 of it and
``"layer4.1.conv2:12@3,4"`` the neuron at row 3, column 4 of that channel. Layer names
are those of ``model.named_modules()``; ``""`` is the model itself. On a token layer (a vision
transformer's block) a channel is the mean over the grid tokens (prefix tokens left out),
``@y,x`` the grid token at row y, column x, ``@cls`` the class token and ``@tK`` token K
counting the prefix tokens. Where channels and the grid are is the layer's layout
(netloupe.layouts).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Optional, Sequence, Union

import torch
import torch.nn as nn

from .errors import UnitError
from .layouts import Layout, guess

_UNIT = re.compile(r"^(?P<layer>[^:@\s]*)(?::(?P<channel>-?\d+)"
                   r"(?:@(?:(?P<y>-?\d+),(?P<x>-?\d+)|(?P<cls>cls)|t(?P<token>\d+)))?)?$")


@dataclass(frozen=True)
class Unit:
    layer: str
    channel: Optional[int] = None
    y: Optional[int] = None
    x: Optional[int] = None
    token: Optional[int] = None  # a token by its index, prefix tokens counted (0: the class token)

    def __post_init__(self) -> None:
        if (self.y is None) != (self.x is None):
            raise UnitError(f"unit {self!s}: give both y and x, as 'layer:channel@y,x'")
        if (self.y is not None or self.token is not None) and self.channel is None:
            raise UnitError(f"unit {self!s}: a position needs a channel, as 'layer:channel@y,x'")
        if self.y is not None and self.token is not None:
            raise UnitError(f"unit {self!s}: give a grid position or a token, not both")

    @classmethod
    def parse(cls, text: Union[str, "Unit"]) -> "Unit":
        """Parse ``layer``, ``layer:channel``, ``layer:channel@y,x``, ``layer:channel@cls`` or
        ``layer:channel@tK``."""
        if isinstance(text, Unit):
            return text
        if not isinstance(text, str):
            raise UnitError(f"a unit must be a string like 'layer4:12@3,4', got {type(text).__name__}")
        m = _UNIT.match(text.strip())
        if m is None:
            raise UnitError(
                f"cannot parse unit {text!r}: write 'layer', 'layer:channel' or 'layer:channel@y,x' "
                "(e.g. 'blocks.5.0.conv_pw:12@3,4'; on token layers also '@cls' or '@tK'), with layer a name "
                "from model.named_modules()"
            )
        as_int = lambda s: None if s is None else int(s)  # noqa: E731
        token = 0 if m["cls"] else as_int(m["token"])
        return cls(m["layer"], as_int(m["channel"]), as_int(m["y"]), as_int(m["x"]), token)

    def __str__(self) -> str:
        s = self.layer
        if self.channel is not None:
            s += f":{self.channel}"
        if self.y is not None:
            s += f"@{self.y},{self.x}"
        if self.token is not None:
            s += "@cls" if self.token == 0 else f"@t{self.token}"
        return s

    def module(self, model: nn.Module) -> nn.Module:
        """The module this unit's layer names in ``model``."""
        return find_module(model, self.layer)

    def check(self, shape: Sequence[int], layout: Optional[Layout] = None) -> None:
        """Raise a UnitError if channel, position or token lie outside an output of ``shape``
        (laid out as ``layout``, by default guessed from the shape alone)."""
        if self.channel is None:
            return
        if len(shape) < 2:
            raise UnitError(f"unit {self}: layer {self.layer!r} has output shape {tuple(shape)}, no channels")
        layout = layout or guess(shape)
        check_channel(self.layer, self.channel, layout.channels(shape))
        if self.token is not None:
            if layout.kind != "tokens":
                raise UnitError(f"unit {self}: layer {self.layer!r} has output shape {tuple(shape)} (layout {layout}), "
                                "no tokens; address a position as @y,x")
            if not 0 <= self.token < shape[1]:
                raise UnitError(f"unit {self}: token {self.token} out of range; layer {self.layer!r} has tokens "
                                f"0..{shape[1] - 1}" + (" (no prefix tokens, so no @cls)" if layout.prefix == 0 else ""))
            return
        if self.y is None or self.x is None:  # both or neither (__post_init__)
            return
        grid = layout.spatial(shape)
        if grid is None:
            raise UnitError(f"unit {self}: layer {self.layer!r} has output shape {tuple(shape)} (layout {layout}), "
                            "no (y, x) positions")
        check_position(self.layer, self.y, self.x, *grid)

    def part(self, a: torch.Tensor, layout: Optional[Layout] = None) -> torch.Tensor:
        """What this unit names of a layer's output ``a``: all of it, one channel over the grid, or
        one neuron [N]."""
        layout = layout or guess(a.shape)
        self.check(a.shape, layout)
        if self.channel is None:
            return a
        if self.token is not None:
            return layout.token(a, self.token, self.channel)
        c = layout.channel(a, self.channel)
        return c[:, self.y, self.x] if self.y is not None else c

    def value(self, a: torch.Tensor, layout: Optional[Layout] = None) -> torch.Tensor:
        """One number per sample: the neuron's value, or the mean of the channel (or layer)."""
        part = self.part(a, layout)
        return part.flatten(1).mean(1) if part.dim() > 1 else part


def check_channel(layer: Union[str, nn.Module], channel: int, channels: int) -> None:
    """Raise a UnitError unless ``channel`` is one of the ``channels`` of ``layer``."""
    if not isinstance(channel, int) or isinstance(channel, bool) or not 0 <= channel < channels:
        raise UnitError(f"channel {channel} out of range; layer {_label(layer)!r} has channels 0..{channels - 1}")


def check_position(layer: Union[str, nn.Module], y: int, x: int, h: int, w: int) -> None:
    """Raise a UnitError unless (y, x) lies on the h x w grid of ``layer``."""
    if not (0 <= y < h and 0 <= x < w):
        raise UnitError(f"position ({y}, {x}) out of range; layer {_label(layer)!r}: valid y is 0..{h - 1}, "
                        f"x is 0..{w - 1}")


def _label(layer: Union[str, nn.Module]) -> str:
    return layer if isinstance(layer, str) else type(layer).__name__


UnitLike = Union[str, Unit, nn.Module]


def find_module(model: nn.Module, name: str) -> nn.Module:
    """Look a layer up by name; an unknown name raises a UnitError listing the 5 nearest names."""
    modules = dict(model.named_modules())
    if name in modules:
        return modules[name]
    near = difflib.get_close_matches(name, [n for n in modules if n], n=5, cutoff=0.0)
    raise UnitError(
        f"no layer named {name!r} in {type(model).__name__}; nearest: {', '.join(near) or '(none)'}. "
        "List all with `netloupe layers` or netloupe.layers(model)."
    )


def module_name(model: nn.Module, module: nn.Module) -> str:
    for name, m in model.named_modules():
        if m is module:
            return name
    raise UnitError(f"the module {type(module).__name__} given as a layer is not part of {type(model).__name__}")


def as_unit(model: nn.Module, unit: UnitLike) -> Unit:
    """Accept a unit string, a Unit or an nn.Module of the model; check that its layer exists."""
    if isinstance(unit, nn.Module):
        return Unit(module_name(model, unit))
    unit = Unit.parse(unit)
    find_module(model, unit.layer)
    return unit
