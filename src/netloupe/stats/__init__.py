"""Dataset-wide unit statistics (the Deep Visualization Toolbox's analyses): streaming scans,
receptive fields, top patches, reports."""

from .receptive import Patches, ReceptiveField, receptive_field, top_patches
from .report import scan_report
from .result import LayerStats, ScanResult
from .scan import scan

__all__ = ["LayerStats", "Patches", "ReceptiveField", "ScanResult", "receptive_field", "scan", "scan_report",
           "top_patches"]
