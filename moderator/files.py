"""Files with the run's file mode, written durably.

Every file a run writes is created with the run's file mode (`[output] file_mode`, default 0600:
owner only) and every folder with the matching folder mode, whatever the umask: outputs and logs
hold posts, scores and ids that a shared machine's other users should not read by default. What a
checkpoint records is fsynced first (`sync`), and a file continued after a crash is cut back to
what its checkpoint recorded (`open_at`).
"""

from __future__ import annotations

import os
from pathlib import Path

PRIVATE = 0o600  # the default file mode: owner read and write only


def folder_mode(file_mode: int) -> int:
    """The folder mode that goes with a file mode: x wherever r is set (0600 -> 0700, 0640 -> 0750)."""
    return file_mode | (file_mode & 0o444) >> 2


def make_folder(path: Path, file_mode: int = PRIVATE) -> None:
    """Create `path` (its parents as usual) and give it the folder mode of `file_mode`."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, folder_mode(file_mode))


def create_file(path: Path, file_mode: int = PRIVATE, binary: bool = False):  # type: ignore[no-untyped-def]
    """Open a new (or truncated) file for writing with exactly `file_mode`.

    The mode is set on the open descriptor, so the umask cannot widen or narrow it and there is no
    moment when the file exists with looser permissions.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, file_mode)
    try:
        os.fchmod(fd, file_mode)
    except OSError:
        os.close(fd)
        raise
    if binary:
        return os.fdopen(fd, "wb")
    return os.fdopen(fd, "w", encoding="utf-8", newline="\n")


def fsync_close(handle) -> None:  # type: ignore[no-untyped-def]
    handle.flush()
    os.fsync(handle.fileno())
    handle.close()


def open_at(path: Path, size: int, file_mode: int = PRIVATE):  # type: ignore[no-untyped-def]
    """Open an existing file for appending after its first `size` bytes (what a checkpoint recorded).

    Whatever a killed run wrote after the checkpoint is cut off first.
    """
    fd = os.open(path, os.O_WRONLY, file_mode)
    try:
        if os.fstat(fd).st_size < size:
            raise OSError(0, f"shorter ({os.fstat(fd).st_size} bytes) than its checkpoint ({size} bytes)")
        os.ftruncate(fd, size)
        os.lseek(fd, size, os.SEEK_SET)
    except OSError:
        os.close(fd)
        raise
    return os.fdopen(fd, "wb")


def sync(handle) -> int:  # type: ignore[no-untyped-def]
    """Flush and fsync an open file; its size in bytes (what a checkpoint records)."""
    handle.flush()
    os.fsync(handle.fileno())
    return handle.tell()


def fsync_folder(path: Path) -> None:
    """Make a rename in `path` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
