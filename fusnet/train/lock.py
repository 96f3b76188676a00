"""One writer per run folder: ``<folder>/.fusnet.lock``, flocked through :mod:`filelock`.

The file records the writer's PID, host, purpose and start time; the kernel drops the flock
when the writer dies. A second writer gets a RunLockError naming the holder.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from contextlib import suppress
from pathlib import Path

from filelock import FileLock, Timeout

from fusnet.errors import RunLockError

logger = logging.getLogger(__name__)

LOCK_NAME = ".fusnet.lock"


class RunLock:
    """Context manager holding ``<folder>/.fusnet.lock``; empty folders it made go on release.

    Args:
        folder: the run folder (made if missing).
        purpose: what the holder is doing, recorded in the lock and named in errors.
    """

    def __init__(self, folder: str | Path, purpose: str = "training") -> None:
        self.folder, self.path, self.purpose = Path(folder), Path(folder) / LOCK_NAME, purpose
        self._created: list[Path] = []  # deepest first
        # the short wait rides out a holder's release (it unlinks the file, then unflocks)
        self._lock = FileLock(self.path, timeout=0.2, on_acquired=self._claim)

    def acquire(self) -> RunLock:
        """Take the lock, or raise RunLockError naming the process that holds it."""
        self._created = [p for p in (self.folder, *self.folder.parents) if not p.exists()]
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire()
        except Timeout:  # a live process holds the flock
            raise self._refusal(_read(self.path)) from None
        return self

    __enter__ = acquire

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def _claim(self, fd: int) -> None:
        """filelock's hook once the flock is ours. A record left there is from a writer without
        a flock (an older fusnet, another host): taken over only if it ran here and is gone."""
        holder = _read(self.path)
        pid, host = holder.get("pid"), holder.get("host", socket.gethostname())
        if host != socket.gethostname() or pid == os.getpid() or _alive(pid):
            raise self._refusal(holder)
        if holder:
            logger.warning("taking over the stale lock %s of PID %s (%s)", self.path, pid, holder)
        since = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self.path.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                         "purpose": self.purpose, "since": since}))

    def _refusal(self, holder: dict) -> RunLockError:
        pid, host = holder.get("pid", "unknown"), holder.get("host", socket.gethostname())
        who = f"this process (PID {pid})" if pid == os.getpid() else f"PID {pid} on {host}"
        return RunLockError(
            f"run folder {self.folder} is being written by {who} ({holder.get('purpose', 'writing')}"
            f" since {holder.get('since', '?')}); one writer per folder: wait for it to finish or "
            f"stop it, choose another --output-dir, or if it no longer runs delete {self.path}")

    def release(self) -> None:
        """Drop the lock (if held) and remove the empty folders it created."""
        if self._lock.is_locked:
            self.path.unlink(missing_ok=True)  # while flocked: a waiter on this inode retries
            self._lock.release()
        with suppress(OSError):  # stops at the first folder that is not empty
            for folder in self._created:
                folder.rmdir()
        self._created = []


def _alive(pid: int) -> bool:
    """Whether a process with this PID runs on this host (another user's counts)."""
    try:
        with suppress(PermissionError):
            os.kill(pid, 0)
    except (ProcessLookupError, TypeError):  # TypeError: the record's PID is no number
        return False
    return pid > 0  # kill(0) and kill(-N) address process groups


def _read(path: Path) -> dict:
    """The record of a lock file (``{}`` when missing or unreadable)."""
    with suppress(OSError, ValueError):
        record = json.loads(path.read_text())
        return record if isinstance(record, dict) else {}
    return {}
