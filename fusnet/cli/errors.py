"""How the command line reports a failure: one line on stderr and an exit status.

A :class:`~fusnet.errors.FusnetError` is an expected failure with a message that names the
culprit and the fix, so it is printed as one line, without a traceback: exit status 2 for a
usage or configuration error (:class:`~fusnet.errors.ConfigError`, the status ``argparse``
uses for a bad command line), 1 for a runtime error (data, checkpoint, download, training,
output, lock). ``--debug`` or ``FUSNET_DEBUG=1`` re-raises instead, traceback and all. Any
other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys

from fusnet.errors import ConfigError, FusnetError

DEBUG_ENV = "FUSNET_DEBUG"
USAGE_STATUS = 2
RUNTIME_STATUS = 1
INTERRUPTED_STATUS = 130  # 128 + SIGINT, as a shell reports Ctrl-C


def debug_requested(flag: bool = False) -> bool:
    """``--debug`` was given or ``$FUSNET_DEBUG`` is set to something other than 0/empty."""
    return flag or os.environ.get(DEBUG_ENV, "").strip() not in ("", "0", "false", "no")


def one_line(message: str) -> str:
    """A possibly multi-line message on one line ("a:\\n  b\\n  c" -> "a: b; c")."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    text = lines[0] if lines else ""
    for line in lines[1:]:
        text += (" " if text.endswith((":", ".", ";", ",")) else "; ") + line
    return text


def worker_message(message: str) -> str:
    """The original message of an error re-raised from a DataLoader worker process: PyTorch
    re-raises it with the worker's traceback as its message ("Caught DataError in DataLoader
    worker process 0. Original Traceback ...: <message>"), whose last line is ``Type: message``.
    """
    if "Original Traceback" not in message:
        return message
    last = [line for line in message.splitlines() if line.strip()][-1].strip()
    name, sep, rest = last.partition(": ")
    return rest if sep and name.rsplit(".", 1)[-1].endswith("Error") else last


def report(exc: BaseException) -> int:
    """Write the one-line report of ``exc`` to stderr and return the exit status."""
    if isinstance(exc, KeyboardInterrupt):
        sys.stderr.write("fusnet: interrupted; a training run continues from its last epoch "
                         "with --resume\n")
        return INTERRUPTED_STATUS
    assert isinstance(exc, FusnetError)
    usage = isinstance(exc, ConfigError)
    sys.stderr.write(
        f"fusnet: {'usage error' if usage else 'error'}: {one_line(worker_message(str(exc)))} "
        f"(--debug or {DEBUG_ENV}=1 for a traceback)\n"
    )
    return USAGE_STATUS if usage else RUNTIME_STATUS


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (a usage error, exit 2, otherwise)."""
    return _int_at_least(text, 1)


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0 (a usage error, exit 2, otherwise)."""
    return _int_at_least(text, 0)


def _int_at_least(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"{value} is not allowed: give an integer >= {low}")
    return value
