"""The run folder: where a run writes, and how a finished run is told from an unfinished one.

    DIR/output/part-*.parquet|jsonl   annotated posts
    DIR/audit.jsonl                   one line per input record
    DIR/quarantine.jsonl              records that could not be moderated, with reasons
    DIR/manifest.json                 written last: its presence with status "complete" marks a finished run
    DIR/.lock                         while a run writes here: its OS file lock, naming it

A run writes everything under `DIR/.partial/` and moves it into place only when it has finished,
so a run that fails (or is killed) leaves nothing that looks like a finished output, and an
`--overwrite` run that fails leaves the previous finished output as it was. The staging folder also
holds the run's checkpoint (`checkpoint.py`): running the same command again continues the
unfinished run instead of starting over; an unfinished run of other settings or inputs is removed.

One run writes into a folder at a time: `RunDir.locked()` holds an exclusive `flock` on `DIR/.lock`
for the whole run (the OS releases it when the process ends, even on SIGKILL, so a killed run never
leaves a stale lock; a finished or failed run removes the file), and a second run into the same
folder stops with a one-line error naming the holder instead of "resuming" the live run's checkpoint.

Files are created with the run's file mode and folders with the matching folder mode (default
0600 and 0700: owner only; `[output] file_mode`), whatever the umask.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from moderator.errors import ConfigError, OutputError
from moderator.files import PRIVATE, create_file, folder_mode
from moderator.readers.discovery import (JSONL_SUFFIXES, PARQUET_SUFFIXES, RUN_AUDIT, RUN_MANIFEST, RUN_OUTPUT,
                                         RUN_QUARANTINE, RUN_STAGING, STDIN, glob_root)
from moderator.writers import json_default

log = logging.getLogger(__name__)

# The layout's names live in readers/discovery.py (it skips run folders found inside an input folder, and this
# module imports it); one definition for both.
OUTPUT, AUDIT, QUARANTINE, MANIFEST, STAGING = RUN_OUTPUT, RUN_AUDIT, RUN_QUARANTINE, RUN_MANIFEST, RUN_STAGING
LOCK = ".lock"
KNOWN = {OUTPUT, AUDIT, QUARANTINE, MANIFEST, STAGING, LOCK}


def default_output(specs: list[str]) -> Path:
    """`posts.parquet` -> `posts.moderated/` beside it; a folder or glob root `dump/` -> `dump.moderated/`."""
    first = specs[0]
    if first == STDIN:
        raise ConfigError("reading from stdin: name the output folder with --out")
    import glob

    path = Path(glob_root(first) if glob.has_magic(first) else first).expanduser()
    if path.is_dir():
        path = path.resolve()
        return path.with_name(path.name + ".moderated")
    name = path.name
    for suffix in sorted(JSONL_SUFFIXES + PARQUET_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return path.with_name(name + ".moderated")


def write_json_atomic(path: Path, obj: Any, file_mode: int = PRIVATE) -> None:
    """Write JSON atomically (see `write_text_atomic`)."""
    write_text_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False, default=json_default) + "\n", file_mode)


def write_text_atomic(path: Path, text: str, file_mode: int = PRIVATE) -> None:
    """Write text to `path` atomically (see `atomic_file`)."""
    with atomic_file(path, file_mode) as handle:
        handle.write(text)


@contextlib.contextmanager
def atomic_file(path: Path, file_mode: int = PRIVATE) -> Iterator[TextIO]:
    """A text file written to a temporary name in the same folder, fsynced and renamed to `path`
    when the block ends; removed if the block raises, so `path` is whole or untouched.

    The file gets `file_mode` like every other file of the run (mkstemp creates it owner-only).
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, file_mode)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _holder(fd: int) -> str:
    """Who holds a run folder's lock, from what it wrote into the lock file."""
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"pid {info['pid']} on {info['host']}, since {info['since']}: {info['command']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "a run that has not said who it is yet"


class RunDir:
    def __init__(self, path: Path, file_mode: int = PRIVATE) -> None:
        self.path = path
        self.staging = path / STAGING
        self.file_mode = file_mode

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the run folder's lock for the block; `OutputError` naming the holder when another run
        holds it. A folder this call had to create is removed again if the block leaves nothing in it
        (a run that failed before writing, e.g. on a bad input file)."""
        created = not self.path.exists()
        if self.path.exists() and not self.path.is_dir():
            raise OutputError(f"{self.path}: exists and is not a folder")
        while True:
            try:
                if not self.path.is_dir():
                    self.path.mkdir(parents=True, exist_ok=True)
                    os.chmod(self.path, folder_mode(self.file_mode))
                fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, self.file_mode)
                with contextlib.suppress(OSError):
                    os.fchmod(fd, self.file_mode)
            except OSError as exc:
                raise OutputError(f"{self.path}: cannot write here ({exc.strerror})") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = _holder(fd)
                os.close(fd)
                raise OutputError(f"{self.path}: another moderator run is writing here ({holder}); wait for it "
                                  "to finish, or choose another --out") from None
            try:  # the holder before us may have removed the folder it created: lock the file that is there now
                same = os.path.samestat(os.fstat(fd), os.stat(self.path / LOCK))
            except OSError:
                same = False
            if same:
                break
            os.close(fd)
        try:
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": _now(),
                                     "command": " ".join(sys.argv)}).encode() + b"\n")
            yield
        finally:
            try:  # removed while still held: a run waiting on this file sees it gone and retries (samestat)
                os.unlink(self.path / LOCK)
                if created and not any(self.path.iterdir()):
                    self.path.rmdir()
            except OSError:
                pass
            os.close(fd)

    def finished(self) -> dict[str, Any] | None:
        """The manifest of a finished run in this folder, or None."""
        try:
            manifest = json.loads((self.path / MANIFEST).read_text())
        except (OSError, ValueError):
            return None
        return manifest if isinstance(manifest, dict) and manifest.get("status") == "complete" else None

    def start(self, overwrite: bool, resume: bool = False) -> Path:
        """Create an empty staging folder and return it, or with `resume` keep the one there (a run
        continued from its checkpoint). Refuses folders that are not ours."""
        if self.path.exists() and not self.path.is_dir():
            raise OutputError(f"{self.path}: exists and is not a folder")
        if self.path.is_dir():
            foreign = sorted(p.name for p in self.path.iterdir() if p.name not in KNOWN)
            if foreign and not overwrite:
                raise OutputError(
                    f"{self.path}: exists and holds files that are not a moderator output "
                    f"({', '.join(foreign[:3])}{'...' if len(foreign) > 3 else ''}); choose another --out"
                )
        try:
            if not self.path.is_dir():  # a folder the user made keeps the mode they gave it
                self.path.mkdir(parents=True)
                os.chmod(self.path, folder_mode(self.file_mode))
            if resume:
                (self.staging / "error.txt").unlink(missing_ok=True)
            else:
                if self.staging.exists():
                    log.info("removing the unfinished output of an earlier run in %s", self.staging)
                    shutil.rmtree(self.staging)
                self.staging.mkdir(mode=0o700)
                os.chmod(self.staging, folder_mode(self.file_mode))
            probe = self.staging / ".write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise OutputError(f"{self.path}: cannot write here ({exc.strerror})") from None
        return self.staging

    def commit(self, manifest: dict[str, Any]) -> None:
        """Move the staged run into place; the manifest goes last, marking the run finished."""
        try:
            for name in (MANIFEST, OUTPUT, AUDIT, QUARANTINE):  # a previous run's, with --overwrite
                old = self.path / name
                if old.is_dir():
                    shutil.rmtree(old)
                elif old.exists():
                    old.unlink()
            for name in (OUTPUT, AUDIT, QUARANTINE):
                os.replace(self.staging / name, self.path / name)
            write_json_atomic(self.path / MANIFEST, manifest, self.file_mode)
            shutil.rmtree(self.staging)
        except OSError as exc:
            raise OutputError(f"{self.path}: cannot finish the output ({exc.strerror})") from None

    def fail(self, message: str) -> None:
        """Leave a note in the staging folder of a failed run (the next run removes it, or resumes)."""
        try:
            with create_file(self.staging / "error.txt", self.file_mode) as handle:
                handle.write(message + "\n")
        except OSError:
            pass
