"""Output files that appear whole or not at all (a custodian's nightly list and its token).

``AtomicFile(path)`` writes into a hidden temporary file beside ``path``
(``.<name>.<random>.part``, same directory, so same file system), and only ``commit()`` makes
it ``path``: flushed and fsynced first, then renamed (``replace=True``) or hard-linked
(``replace=False``: fails with ``FileExistsError`` if ``path`` exists, atomically, so two
writers can never both win). Until then ``path`` is untouched; ``discard()`` (or an error)
removes the temporary file. A reader therefore sees the previous file or the complete new one,
never a truncated one, whatever happens to the writer (killed, disk full, database gone): at
worst a ``.part`` file is left behind by a killed process (``SIGKILL``), never under ``path``.

The temporary file is created with mode 0666 less the umask, as ``>`` in a shell would create
``path`` (``tempfile.mkstemp`` would make it 0600, unreadable for the custodian's reader).

``SpoolFile`` is the other kind: an upload held on disk while it is loaded, removed in every
exit path, and (if its process was killed) by ``remove_stale_spools`` at the next start.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import BinaryIO


class AtomicFile:
    """A file written in full before it appears under its name (see the module docstring)."""

    def __init__(self, path: Path, *, replace: bool) -> None:
        self.path = path
        self.replace = replace
        self.temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
        descriptor = os.open(self.temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        self.file: BinaryIO = os.fdopen(descriptor, "wb")
        self._done = False

    def commit(self) -> None:
        """Make the complete file appear as ``path``; ``FileExistsError`` if it must not
        replace and ``path`` exists (then nothing changed, the temporary file is removed)."""
        try:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            if self.replace:
                os.replace(self.temporary, self.path)
            else:
                self._link()
            self._done = True
            _fsync_directory(self.path.parent)  # the rename itself survives a power cut
        finally:
            self.discard()

    def discard(self) -> None:
        """Drop the temporary file (nothing happens to ``path``); a no-op after ``commit``."""
        self.file.close()
        if not self._done:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.temporary)
            self._done = True

    def _link(self) -> None:
        """``path`` becomes the temporary file, unless it exists."""
        try:
            os.link(self.temporary, self.path)
            os.unlink(self.temporary)
        except FileExistsError:
            raise FileExistsError(
                errno.EEXIST, "exists; not replacing it", str(self.path)
            ) from None
        except OSError as exc:
            # A file system without hard links (some network and FUSE mounts): a check then a
            # rename, atomic for readers though not against a second concurrent writer.
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                raise
            if self.path.exists():
                raise FileExistsError(
                    errno.EEXIST, "exists; not replacing it", str(self.path)
                ) from None
            os.rename(self.temporary, self.path)

    def __enter__(self) -> AtomicFile:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.discard()


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


# ------------------------------------------------------------------------------ spool files

SPOOL_PREFIX = "upload-"
# A spool file unlocked for this long belongs to no process (see ``remove_stale_spools``); the
# margin covers the instant between creating a spool file and locking it.
STALE_AFTER_SECONDS = 2.0


class SpoolFile:
    """A temporary file of ours holding an upload while it is loaded, locked while in use.

    Created in ``directory`` (made 0700 if missing) as ``upload-<random>.part``, and locked
    (``flock``, exclusive) until ``discard()``, which closes and removes it; call it in every
    exit path. A process killed meanwhile (``SIGKILL``, the OOM killer) cannot remove it, but
    its lock dies with it: ``remove_stale_spools`` at the next start removes what is unlocked.
    """

    def __init__(self, directory: Path) -> None:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        descriptor, name = tempfile.mkstemp(prefix=SPOOL_PREFIX, suffix=".part", dir=directory)
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)  # new: nobody else holds it
        self.path = Path(name)
        self.file: BinaryIO = os.fdopen(descriptor, "wb")

    def write(self, data: bytes) -> None:
        self.file.write(data)

    def finish(self) -> None:
        """Everything written: flushed for readers (the file stays open: the lock with it)."""
        self.file.flush()

    def discard(self) -> None:
        """Remove the file (idempotent); its lock goes with the descriptor."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        self.file.close()


def remove_stale_spools(directory: Path, *, older_than: float = STALE_AFTER_SECONDS) -> int:
    """Remove the spool files in ``directory`` that no live process holds; how many.

    Safe while other processes (workers sharing the directory) load files: a file in use is
    locked, and a lock can be taken only once its process has let go of it or died.
    """
    removed = 0
    try:
        entries = list(directory.iterdir())
    except FileNotFoundError:
        return 0
    now = time.time()
    for path in entries:
        if not (path.name.startswith(SPOOL_PREFIX) and path.name.endswith(".part")):
            continue
        try:
            descriptor = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            continue  # in use
        try:
            if now - os.fstat(descriptor).st_mtime >= older_than:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                removed += 1
        finally:
            os.close(descriptor)
    return removed
