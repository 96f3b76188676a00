"""One writer per run folder: ``<folder>/.fusnet.lock``, flocked through :mod:`filelock`,
records the writer's PID, host, purpose and start time. The kernel drops the flock when the
writer dies; a second writer gets a RunLockError naming the holder."""

from __future__ import annotations

import json
import logging
import os
import time
from contextlib import suppress
from pathlib import Path

from filelock import FileLock, Timeout

from fusnet.errors import RunLockError

logger = logging.getLogger(__name__)

LOCK_NAME = ".fusnet.lock"
HOST = os.uname().nodename


class RunLock:
    """Context manager holding ``<folder>/.fusnet.lock`` for ``purpose`` (recorded, and named
    in errors); it makes the folder if missing and removes the empty folders it made."""

    def __init__(self, folder: str | Path, purpose: str = "training") -> None:
        self.folder, self.path, self.purpose = Path(folder), Path(folder) / LOCK_NAME, purpose
        self._created: list[Path] = []
        self._lock = FileLock(self.path, timeout=0.2, on_acquired=self._claim)  # see release()

    @property
    def holder(self) -> dict:
        """The record in the lock file (``{}`` when missing or unreadable)."""
        with suppress(OSError, ValueError):
            record = json.loads(self.path.read_text())
            return record if isinstance(record, dict) else {}
        return {}

    def acquire(self) -> RunLock:
        """Take the lock, or raise RunLockError naming the process that holds it."""
        self._created = [p for p in (self.folder, *self.folder.parents) if not p.exists()]
        try:  # filelock makes the missing folders
            self._lock.acquire()
        except Timeout:  # a live process holds the flock
            raise self._refusal(self.holder) from None
        return self

    __enter__ = acquire

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def _claim(self, fd: int) -> None:
        """filelock's hook once the flock is ours. A record left there is from a writer without
        a flock (an older fusnet, another host): taken over only if it ran here and is gone."""
        holder = self.holder
        pid = holder.get("pid")
        if holder.get("host", HOST) != HOST or _alive(pid):  # (this process is alive too)
            raise self._refusal(holder)
        if holder:
            logger.warning("taking over the stale lock %s of PID %s (%s)", self.path, pid, holder)
        self.path.write_text(json.dumps({"pid": os.getpid(), "host": HOST, "purpose": self.purpose,
                                         "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}))

    def _refusal(self, holder: dict) -> RunLockError:
        pid, doing = holder.get("pid", "unknown"), holder.get("purpose", "writing")
        who = "this process" if pid == os.getpid() else f"PID {pid} on {holder.get('host', HOST)}"
        return RunLockError(
            f"run folder {self.folder} is being written by {who} ({doing} since "
            f"{holder.get('since', '?')}); one writer per folder: wait for it to finish or stop "
            f"it, choose another --output-dir, or if it no longer runs delete {self.path}")

    def release(self) -> None:
        """Drop the lock (if held) and remove the empty folders it created."""
        if self._lock.is_locked:
            self.path.unlink(missing_ok=True)  # still flocked: a waiter (0.2 s) retries anew
            self._lock.release()
        with suppress(OSError):  # deepest first, up to the first folder that is not empty
            while self._created:
                self._created.pop(0).rmdir()


def _alive(pid: int) -> bool:
    try:
        with suppress(PermissionError):  # another user's process
            os.kill(pid, 0)
    except (ProcessLookupError, TypeError):  # TypeError: the record's PID is no number
        return False
    return pid > 0  # kill(0) and kill(-N) address process groups
