"""One writer per gallery: ``build``, ``add`` and ``convert`` hold an exclusive lock.

The lock is a ``filelock.FileLock`` (an ``flock``) on ``<gallery>/.writer.lock``; its
holder names itself in ``.writer.json`` (PID, command line, start time) so that a second
writer can say who is writing instead of guessing at an "interrupted" job. The kernel
drops an ``flock`` when its process dies, SIGKILL included, so a lock left by a crash is
free again: the next writer takes it and overwrites the stale ``.writer.json``. Searches
take no lock (:mod:`fusnet.index.layout` says why they need none).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from fusnet.errors import DataError
from fusnet.runtime import atomic_write_text

LOCK, HOLDER = ".writer.lock", ".writer.json"


@contextlib.contextmanager
def writer_lock(directory: Path) -> Iterator[None]:
    """Hold ``directory``'s writer lock, or refuse at once, naming the process that holds it.

    Raises:
        DataError: another live process is writing the gallery.
    """
    lock = FileLock(directory / LOCK, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise DataError(
            f"{directory} is being written by {_holder(directory)}: wait until it finishes "
            "(searches keep answering meanwhile), then run this command again"
        ) from None
    try:
        started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        command = shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])
        atomic_write_text(directory / HOLDER, json.dumps(
            {"pid": os.getpid(), "command": command, "started": started}) + "\n")
        yield
    finally:
        (directory / HOLDER).unlink(missing_ok=True)
        lock.release()


def _holder(directory: Path) -> str:
    """"PID 123 (`fusnet index add ...`, since ...)", from ``.writer.json``."""
    try:
        holder = json.loads((directory / HOLDER).read_text())
        return f"PID {holder['pid']} (`{holder['command']}`, since {holder['started']})"
    except (OSError, ValueError, KeyError):  # the holder has not written it yet
        return "another process"
