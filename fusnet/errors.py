"""Exceptions that fusnet raises for bad input.

Every message names the offending file or value and says how to fix it.
"""


class FusnetError(Exception):
    """Base class of fusnet's user-facing errors."""


class DataError(FusnetError):
    """A dataset is missing, laid out wrongly, or holds a bad image or label."""


class ConfigError(FusnetError):
    """A configuration value is invalid or inconsistent."""


class CheckpointError(FusnetError):
    """A checkpoint cannot be loaded (missing, corrupt, or from another config)."""


class DownloadError(FusnetError):
    """A dataset or weights file could not be fetched or verified."""


class TrainingError(FusnetError):
    """Training cannot continue (for example a NaN or infinite loss)."""


class OutputError(FusnetError):
    """A result file could not be written (disk full, no permission, read-only folder)."""


class RunLockError(FusnetError):
    """Another live process is writing the same run folder."""
