"""Compare models: what changed in each unit between two or more models (a base and its
fine-tuned version, or a sequence of checkpoints), by renders, by data and by weights."""

from .comparison import compare
from .data import layer_cka
from .report import comparison_report
from .result import DISSIMILARITY, MEASURES, Comparison

__all__ = ["Comparison", "DISSIMILARITY", "MEASURES", "compare", "comparison_report", "layer_cka"]
