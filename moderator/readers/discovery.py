"""Input discovery: which files a run reads, from the user's INPUT arguments (files, folders, globs, "-").

Expanding a folder or glob skips moderator's own run folders (`rundir.py`: a folder holding a
moderator manifest.json or a .partial/ staging folder), so that a run folder inside the input
folder (`--out dump/out`) is not read back as input by the next run; a run folder's file named
on its own is refused.
"""

from __future__ import annotations

import glob
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from moderator.errors import InputError

log = logging.getLogger(__name__)

JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.zst", ".ndjson", ".ndjson.gz", ".ndjson.zst")
PARQUET_SUFFIXES = (".parquet", ".pq")
COMPRESSED_SUFFIXES = (".gz", ".zst")
STDIN = "-"
# The run folder's layout (rundir.py takes its names from here: it imports this module).
RUN_OUTPUT, RUN_AUDIT, RUN_QUARANTINE, RUN_MANIFEST, RUN_STAGING = (
    "output", "audit.jsonl", "quarantine.jsonl", "manifest.json", ".partial")


@dataclass(frozen=True)
class InputFile:
    path: str  # a filesystem path, or "-" for standard input
    name: str  # the stable name used in derived ids: path relative to the folder or glob it came from
    format: str  # "parquet" or "jsonl"

    @property
    def is_stdin(self) -> bool:
        return self.path == STDIN

    @property
    def abspath(self) -> str:
        """The path manifests and checkpoints record: absolute, or "-" for standard input."""
        return self.path if self.is_stdin else str(Path(self.path).resolve())


def format_of(path: str) -> str | None:
    lower = path.lower()
    if lower.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if lower.endswith(JSONL_SUFFIXES):
        return "jsonl"
    return None


def discover(specs: list[str], exclude: Path | None = None) -> list[InputFile]:
    """Expand the user's INPUT arguments (files, folders, globs, "-") into a sorted list of files.

    Folders and globs skip moderator run folders and `exclude` (the run's own output folder), with
    a log line naming each; a run folder, or a file of one, named on its own is refused.
    """
    found: list[InputFile] = []
    seen: set[str] = set()
    excluded = os.path.realpath(exclude) if exclude is not None else None
    for spec in specs:
        for item in _expand(spec, excluded):
            key = item.path if item.is_stdin else os.path.realpath(item.path)
            if key not in seen:
                seen.add(key)
                found.append(item)
    if not found:
        raise InputError("no input files given")
    return found


def _expand(spec: str, excluded: str | None = None) -> list[InputFile]:
    if spec == STDIN:
        return [InputFile(STDIN, "stdin", "jsonl")]
    path = Path(spec).expanduser()
    if path.exists() and (run := run_folder_of(path)) is not None:
        what = ("a moderator run folder" if run == Path(os.path.abspath(path))
                else f"part of the moderator run folder {run}")
        raise InputError(f"{spec}: is {what} (an earlier run's output), not input; "
                         "moderate the original input instead")
    if path.is_dir():
        files, skipped = _walk(path, excluded)
        _log_skipped(spec, skipped, excluded)
        if not files:
            raise InputError(f"{spec}: folder holds no .parquet or .jsonl(.gz/.zst) files"
                             + (" outside moderator run folders" if skipped else ""))
        return [InputFile(str(p), p.relative_to(path).as_posix(), format_of(p.name)) for p in files]
    if glob.has_magic(spec):
        matches = sorted(m for m in glob.glob(os.path.expanduser(spec), recursive=True) if os.path.isfile(m))
        if not matches:
            raise InputError(f"{spec}: no files match this pattern")
        skipped: set[Path] = set()
        for match in matches:
            run = run_folder_of(Path(match))
            if run is None and excluded is not None and _under(match, [excluded]):
                run = Path(excluded)
            if run is not None:
                skipped.add(run)
        if skipped:
            runs = [os.path.realpath(run) for run in skipped]
            matches = [m for m in matches if not _under(m, runs)]
        _log_skipped(spec, sorted(skipped), excluded)
        if not matches:
            raise InputError(f"{spec}: every file that matches is in a moderator run folder "
                             f"({', '.join(map(str, sorted(skipped)[:3]))}); moderate the original input instead")
        root = glob_root(spec)
        result = []
        for match in matches:
            fmt = format_of(match)
            if fmt is None:
                raise InputError(f"{match}: not a .parquet or .jsonl(.gz/.zst) file (matched by {spec})")
            result.append(InputFile(match, os.path.relpath(match, root).replace(os.sep, "/"), fmt))
        return result
    if not path.exists():
        raise InputError(f"{spec}: no such file or folder")
    fmt = format_of(path.name)
    if fmt is None:
        raise InputError(f"{spec}: unknown format; expected .parquet, .jsonl, .jsonl.gz or .jsonl.zst")
    return [InputFile(str(path), path.name, fmt)]


def is_run_folder(path: Path) -> bool:
    """Whether `path` is a moderator run folder: one holding a moderator manifest.json (finished) or a
    .partial/ staging folder (unfinished). Reads at most the manifest's first 4 KiB."""
    if (path / RUN_STAGING).is_dir():
        return True
    try:
        with open(path / RUN_MANIFEST, "rb") as handle:
            head = handle.read(4096)
    except OSError:
        return False
    return head.lstrip().startswith(b"{") and b'"moderator_version"' in head and b'"run_id"' in head


def run_folder_of(path: Path) -> Path | None:
    """The run folder that `path` is, or is one of the files or folders of (DIR/output/...,
    DIR/audit.jsonl, DIR/quarantine.jsonl, DIR/.partial/...); None for anything else.

    Only the run folder's own names count, so that an input kept beside a run's files is still read.
    """
    path = Path(os.path.abspath(path))
    if path.is_dir() and is_run_folder(path):
        return path
    if path.name in (RUN_AUDIT, RUN_QUARANTINE) and is_run_folder(path.parent):
        return path.parent
    for part in [path, *list(path.parents)[:2]]:  # the deepest: DIR/.partial/output/part-00000.parquet
        if part.name in (RUN_OUTPUT, RUN_STAGING) and is_run_folder(part.parent):
            return part.parent
    return None


def _walk(root: Path, excluded: str | None) -> tuple[list[Path], list[Path]]:
    """The input files under `root` (symlinked folders not followed), and the run folders skipped."""
    files: list[Path] = []
    skipped: list[Path] = []
    for folder, dirnames, filenames in os.walk(root):
        keep = []
        for name in sorted(dirnames):
            sub = Path(folder, name)
            if is_run_folder(sub) or (excluded is not None and os.path.realpath(sub) == excluded):
                skipped.append(sub)
            else:
                keep.append(name)
        dirnames[:] = keep
        files.extend(Path(folder, name) for name in filenames
                     if format_of(name) and os.path.isfile(os.path.join(folder, name)))
    return sorted(files), skipped


def _under(path: str, folders: list[str]) -> bool:
    """Whether `path` lies inside one of `folders` (real paths)."""
    real = os.path.realpath(path)
    return any(real.startswith(folder.rstrip(os.sep) + os.sep) for folder in folders)


def _log_skipped(spec: str, skipped: list[Path], excluded: str | None) -> None:
    for folder in skipped:
        what = "this run's output folder" if os.path.realpath(folder) == excluded else "a moderator run folder"
        log.info("%s: skipping %s, %s (its output, audit and quarantine are not input)", spec, folder, what)


def glob_root(spec: str) -> str:
    parts = Path(os.path.expanduser(spec)).parts
    fixed = []
    for part in parts:
        if glob.has_magic(part):
            break
        fixed.append(part)
    return str(Path(*fixed)) if fixed else "."
