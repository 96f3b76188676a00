"""One writer per run folder: a lock file holding the writer's PID.

A run folder (``RunConfig.output_dir``) is written by one process at a time. While a
run writes, ``<folder>/.fusnet.lock`` holds its PID, host name and start time, and the
process holds an exclusive ``flock`` on it (released by the kernel when the process dies,
so two processes can never both take it over). A second writer fails at once with
:class:`~fusnet.errors.RunLockError` naming the holder; a lock left by a process that no
longer runs (on this host) is taken over with a warning. Folders the lock created are removed again on release if nothing
else was written into them, so a run that fails before writing leaves no folder.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import time
from pathlib import Path
from types import TracebackType

from fusnet.errors import RunLockError

logger = logging.getLogger(__name__)

LOCK_NAME = ".fusnet.lock"


def pid_alive(pid: int) -> bool:
    """Whether a process with this PID runs on this host (zombies count as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


class RunLock:
    """Context manager holding ``<folder>/.fusnet.lock`` for this process.

    Args:
        folder: the run folder (created if missing).
        purpose: what the holder is doing, recorded in the lock and named in errors.
    """

    def __init__(self, folder: str | Path, purpose: str = "training") -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.purpose = purpose
        self._created: list[Path] = []
        self._held = False
        self._fd = -1

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the lock, or raise naming the live process that holds it.

        Raises:
            RunLockError: a live process (or one on another host) holds the lock.
        """
        self._make_folder()
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "purpose": self.purpose,
            "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        for _ in range(3):
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                holder = read_lock(self.path)
                if holder.get("pid") == os.getpid():
                    self._check_holder(holder)  # "already locked by this process"
                self._refuse(holder, live=True)
            if not self._same_file(fd):  # released and removed while we opened it: again
                os.close(fd)
                continue
            try:  # only the flock holder gets here: the check and the takeover are atomic
                self._check_holder(read_lock(self.path))
            except RunLockError:
                os.close(fd)
                raise
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps(record).encode())
            os.fsync(fd)
            self._fd = fd  # held open: the kernel drops the flock if this process dies
            self._held = True
            return
        raise RunLockError(
            f"could not take the lock {self.path}: other processes keep taking it; make sure "
            "only one process writes this run folder"
        )

    def _same_file(self, fd: int) -> bool:
        try:
            return os.fstat(fd).st_ino == os.stat(self.path).st_ino
        except FileNotFoundError:
            return False

    def _make_folder(self) -> None:
        missing = []
        folder = self.folder
        while not folder.exists():
            missing.append(folder)
            if folder.parent == folder:
                break
            folder = folder.parent
        self.folder.mkdir(parents=True, exist_ok=True)
        self._created = missing  # deepest first

    def _refuse(self, holder: dict, live: bool) -> None:
        pid = holder.get("pid", "unknown")
        raise RunLockError(
            f"run folder {self.folder} is being written by PID {pid} "
            f"({holder.get('purpose', 'writing')} since {holder.get('since', '?')}); wait for "
            f"it to finish or stop it (kill {pid}), or choose another --output-dir"
            if live else
            f"run folder {self.folder} is locked by PID {pid} on host {holder.get('host')} "
            f"({holder.get('purpose', 'writing')} since {holder.get('since', '?')}); wait for "
            f"it to finish, or if it no longer runs delete {self.path}"
        )

    def _check_holder(self, holder: dict) -> None:
        """A record left in the file we now hold: refuse a live writer, take over a stale one.

        A writer of this version holds the file's flock while it runs, so a record without
        the flock is normally stale; the PID check still covers writers that do not flock
        (an older fusnet, a file system without flock)."""
        pid, host = holder.get("pid"), holder.get("host")
        if not holder:
            return  # a new (empty) lock file
        if not isinstance(pid, int):
            logger.warning("%s is unreadable or empty (%s); taking it over", self.path, holder)
        elif host not in (None, socket.gethostname()):
            self._refuse(holder, live=False)
        elif pid == os.getpid():
            raise RunLockError(
                f"run folder {self.folder} is already locked by this process (PID {pid}); one "
                "run per folder at a time, choose another --output-dir"
            )
        elif pid_alive(pid):
            self._refuse(holder, live=True)
        else:
            logger.warning(
                "taking over the stale lock %s of PID %s, which no longer runs (%s since %s)",
                self.path, pid, holder.get("purpose", "writing"), holder.get("since", "?"),
            )

    def release(self) -> None:
        """Drop the lock (if this process still holds it) and remove empty created folders."""
        if self._held:
            self._held = False
            try:  # removed while still flocked: a process that opened it retries (_same_file)
                self.path.unlink()
            except FileNotFoundError:
                pass
            os.close(self._fd)
        for folder in self._created:  # deepest first; stops at the first non-empty one
            try:
                folder.rmdir()
            except OSError:
                break
        self._created = []


def read_lock(path: Path) -> dict:
    """The record of a lock file (``{}`` when missing or unreadable)."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}
