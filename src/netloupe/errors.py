"""The errors netloupe raises on user mistakes; each message says what to do next."""


class NetloupeError(Exception):
    """Base class: a mistake the user can fix (bad input, unknown layer, missing weights)."""


class UnitError(NetloupeError, KeyError):
    """A unit string that does not parse, or names a layer, channel or position that does not exist."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ModelError(NetloupeError):
    """A model spec that cannot be loaded (unknown name, weights not on disk, bad file)."""


class InputError(NetloupeError, ValueError):
    """Input data of the wrong type, shape or content (missing file, corrupt image, NaN)."""
