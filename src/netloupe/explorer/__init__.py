"""The live explorer (``netloupe explore``): a web page over the model, served by FastAPI, and the
static unit atlas (``netloupe atlas``)."""

from .service import Explorer

__all__ = ["Explorer"]
