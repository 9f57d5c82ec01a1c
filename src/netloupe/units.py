"""Units: a layer, a channel of it, or one neuron, written as a string anyone can type.

``"layer4.1.conv2"`` is a layer, ``"layer4.1.conv2:12"`` channel 12 of it and
``"layer4.1.conv2:12@3,4"`` the neuron at row 3, column 4 of that channel. Layer names
are those of ``model.named_modules()``; ``""`` is the model itself.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Optional, Union

import torch.nn as nn

from .errors import UnitError

_UNIT = re.compile(r"^(?P<layer>[^:@\s]*)(?::(?P<channel>-?\d+)(?:@(?P<y>-?\d+),(?P<x>-?\d+))?)?$")


@dataclass(frozen=True)
class Unit:
    layer: str
    channel: Optional[int] = None
    y: Optional[int] = None
    x: Optional[int] = None

    def __post_init__(self):
        if (self.y is None) != (self.x is None):
            raise UnitError(f"unit {self!s}: give both y and x, as 'layer:channel@y,x'")
        if self.y is not None and self.channel is None:
            raise UnitError(f"unit {self!s}: a position needs a channel, as 'layer:channel@y,x'")

    @classmethod
    def parse(cls, text: Union[str, "Unit"]) -> "Unit":
        """Parse ``layer``, ``layer:channel`` or ``layer:channel@y,x``."""
        if isinstance(text, Unit):
            return text
        if not isinstance(text, str):
            raise UnitError(f"a unit must be a string like 'layer4:12@3,4', got {type(text).__name__}")
        m = _UNIT.match(text.strip())
        if m is None:
            raise UnitError(
                f"cannot parse unit {text!r}: write 'layer', 'layer:channel' or 'layer:channel@y,x' "
                "(e.g. 'blocks.5.0.conv_pw:12@3,4'), with layer a name from model.named_modules()"
            )
        as_int = lambda s: None if s is None else int(s)  # noqa: E731
        return cls(m["layer"], as_int(m["channel"]), as_int(m["y"]), as_int(m["x"]))

    def __str__(self) -> str:
        s = self.layer
        if self.channel is not None:
            s += f":{self.channel}"
        if self.y is not None:
            s += f"@{self.y},{self.x}"
        return s

    def module(self, model: nn.Module) -> nn.Module:
        """The module this unit's layer names in ``model``."""
        return find_module(model, self.layer)

    def check(self, shape) -> None:
        """Raise a UnitError if channel or position lie outside an activation of ``shape`` (N, C, ...)."""
        if self.channel is None:
            return
        if len(shape) < 2:
            raise UnitError(f"unit {self}: layer {self.layer!r} has output shape {tuple(shape)}, no channels")
        if not 0 <= self.channel < shape[1]:
            raise UnitError(f"unit {self}: channel {self.channel} out of range; layer {self.layer!r} has channels 0..{shape[1] - 1}")
        if self.y is None:
            return
        if len(shape) != 4:
            raise UnitError(f"unit {self}: layer {self.layer!r} has output shape {tuple(shape)}, no (y, x) positions")
        h, w = shape[2], shape[3]
        if not (0 <= self.y < h and 0 <= self.x < w):
            raise UnitError(f"unit {self}: position ({self.y}, {self.x}) out of range; valid y is 0..{h - 1}, x is 0..{w - 1}")


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
