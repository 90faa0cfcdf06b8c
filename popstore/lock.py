"""One writer per store: a lock file next to the store naming the host and process that hold it.

``generate`` and ``verify --repair`` hold ``<store>.lock`` (e.g.
``maps.zarr.lock``, JSON with ``host``, ``pid`` and ``started``) while they
write. A second writer stops with a :class:`StoreLockedError` naming the
holder. A lock is *stale*, and taken over with a warning, when its process is
gone (same host: the pid no longer exists) or, for a holder on another host
(where its pid cannot be checked), when the file has not been refreshed for
``stale_after`` seconds; a writer refreshes it with :meth:`StoreLock.refresh`
as it makes progress.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from datetime import datetime, timezone
from pathlib import Path

from popstore.errors import UserError

log = logging.getLogger(__name__)

DEFAULT_STALE_AFTER = 6 * 3600.0


class StoreLockedError(UserError):
    """Another live process holds a store's lock."""


def lock_path(store: str | Path) -> Path:
    """The lock file of ``store``: ``<store>.lock`` beside it."""
    store = Path(store)
    return store.with_name(store.name + ".lock")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class StoreLock:
    """Context manager holding ``<store>.lock`` (see module docstring).

    Parameters
    ----------
    store
        Path of the store (which need not exist yet).
    stale_after
        Seconds without a refresh after which a lock held on another host is stale.
    """

    def __init__(self, store: str | Path, stale_after: float = DEFAULT_STALE_AFTER) -> None:
        self.path = lock_path(store)
        self.stale_after = float(stale_after)
        self.held = False

    def _create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            json.dump({"host": socket.gethostname(), "pid": os.getpid(),
                       "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}, f)
        return True

    def _holder(self) -> dict:
        try:
            holder = json.loads(self.path.read_text())
            return holder if isinstance(holder, dict) else {}
        except (OSError, ValueError):
            return {}

    def _stale_reason(self, holder: dict) -> str | None:
        try:
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return "it is gone"
        host, pid = holder.get("host"), holder.get("pid")
        if host == socket.gethostname() and isinstance(pid, int):
            return None if _pid_alive(pid) else f"process {pid} on this host no longer exists"
        if age > self.stale_after:
            return f"it was last refreshed {age:.0f} s ago (stale after {self.stale_after:.0f} s)"
        return None

    def acquire(self) -> "StoreLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            if self._create():
                self.held = True
                return self
            holder = self._holder()
            reason = self._stale_reason(holder)
            if reason is None:
                raise StoreLockedError(
                    f"{self.path.with_suffix('')} is being written by pid {holder.get('pid', '?')} on host "
                    f"{holder.get('host', '?')} since {holder.get('started', '?')} (lock file {self.path}); "
                    "wait for it, or delete the lock file if that process is gone")
            log.warning("taking over the stale lock %s of pid %s on host %s: %s", self.path, holder.get("pid", "?"),
                        holder.get("host", "?"), reason)
            self.path.unlink(missing_ok=True)
        raise StoreLockedError(f"could not take the lock {self.path}: other writers keep creating it")

    def refresh(self) -> None:
        """Mark the lock as alive (its age counts from now)."""
        if self.held:
            os.utime(self.path)

    def release(self) -> None:
        if self.held and self._holder().get("pid") == os.getpid():
            self.path.unlink(missing_ok=True)
        self.held = False

    def __enter__(self) -> "StoreLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


class NoLock:
    """The stand-in for :class:`StoreLock` on object stores (fsspec URLs), which hold no lock files."""

    def __enter__(self) -> "NoLock":
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def refresh(self) -> None:
        """Nothing to refresh."""
