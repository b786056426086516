"""Readers: turn input files into a stream of record batches with bounded memory.

A reader implements one narrow hook, `_batches(handle)`: open this file and yield batches of its
rows. The base class adds what every format shares: the row's origin (file name and position),
checksums of the bytes read, and errors that name the file. Nothing ever holds the whole corpus:
Parquet is read with `ParquetFile.iter_batches`, JSONL line by line.

JSONL is parsed per line rather than by pyarrow's block parser, so that one bad line becomes one
quarantined record (with its reason and the line itself) instead of a failed file, and so that a
key missing from the first record of a batch is not silently dropped.

No record is held whole past `[input] max_record_bytes`: a longer JSONL line is read in bounded
pieces and skipped to its end, and becomes a `record_too_large` quarantine record that keeps its
size and first bytes; so does a Parquet row whose text is longer (pyarrow has decoded that cell, but
it goes no further). A line that has not ended after `SKIP_FACTOR` times the limit (a 200 MB export
written as one JSON array ends well before; a link to /dev/zero never does) is not read to its end:
the record says so and the file is not read further, with an error in the log that names it.

Expanding a folder or glob skips moderator's own run folders (`rundir.py`: a folder holding a
moderator manifest.json or a .partial/ staging folder), so that a run folder inside the input
folder (`--out dump/out`) is not read back as input by the next run; a run folder's file named
on its own is refused.
"""

from __future__ import annotations

import glob
import hashlib
import io
import json
import logging
import os
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from moderator import records
from moderator.errors import InputError

log = logging.getLogger(__name__)

JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.zst", ".ndjson", ".ndjson.gz", ".ndjson.zst")
PARQUET_SUFFIXES = (".parquet", ".pq")
COMPRESSED_SUFFIXES = (".gz", ".zst")
STDIN = "-"
# The run folder's layout (rundir.py takes its names from here: it imports this module).
RUN_OUTPUT, RUN_AUDIT, RUN_QUARANTINE, RUN_MANIFEST, RUN_STAGING = (
    "output", "audit.jsonl", "quarantine.jsonl", "manifest.json", ".partial")
DEFAULT_MAX_RECORD_BYTES = 8 << 20
SKIP_FACTOR = 64  # a line over the limit is skipped to its end for at most this many times the limit
KEPT_PREFIX = 1000  # bytes of an oversized line kept in its quarantine record


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
        root = _glob_root(spec)
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


def _glob_root(spec: str) -> str:
    parts = Path(os.path.expanduser(spec)).parts
    fixed = []
    for part in parts:
        if glob.has_magic(part):
            break
        fixed.append(part)
    return str(Path(*fixed)) if fixed else "."


def check_schema(item: InputFile, text_column: str) -> int | None:
    """Refuse, before any model loads, a Parquet file that cannot be read or lacks a string text column.

    Returns the file's row count where it is known without reading the data (Parquet), else None.
    """
    if item.format != "parquet":
        return None
    try:
        meta = pq.ParquetFile(item.path)
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"{item.path}: cannot read as Parquet ({_short(exc)})") from None
    schema = meta.schema_arrow
    if text_column not in schema.names:
        columns = ", ".join(schema.names) or "none"
        raise InputError(f"{item.path}: no column {text_column!r} (columns: {columns}); use --text-column")
    if not _is_text(schema.field(text_column).type):
        raise InputError(
            f"{item.path}: column {text_column!r} is {schema.field(text_column).type}, not a string column"
        )
    for column in schema:
        target = _without_views(column.type)
        if target != column.type:
            try:
                pa.array([], column.type).cast(target)
            except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
                raise InputError(f"{item.path}: column {column.name!r} is {column.type}, which moderator cannot "
                                 f"convert to {target}; write it as a plain type") from None
    clash = [name for name in schema.names if name.startswith(records.PREFIX) or name == records.ANNOTATION]
    if clash:
        raise InputError(
            f"{item.path}: has column {clash[0]!r}, a name moderator writes itself "
            "(is this already a moderator output? moderate the original input instead)"
        )
    return meta.metadata.num_rows


ID_PEEK_LINES = 200  # JSONL records looked at, per file, for the id column


def has_column(item: InputFile, column: str) -> bool | None:
    """Whether `item` holds `column`: from the schema (Parquet), or any of its first records (JSONL);
    None where that cannot be known without consuming the input (standard input)."""
    if item.is_stdin:
        return None
    if item.format == "parquet":
        try:
            return column in pq.ParquetFile(item.path).schema_arrow.names
        except (OSError, pa.ArrowException):
            return None  # check_schema says why
    try:
        with pa.input_stream(item.path, compression="detect") as raw:
            head = io.BufferedReader(raw, 1 << 16)  # type: ignore[arg-type]
            budget = 4 << 20  # bytes looked at in all: a file of endless lines costs no more
            for _ in range(ID_PEEK_LINES):
                if budget <= 0:
                    break
                line = head.readline(min(1 << 20, budget))
                budget -= len(line)
                if not line:
                    break
                try:
                    obj = json.loads(line)
                except ValueError:
                    continue
                if isinstance(obj, dict) and column in obj:
                    return True
    except (OSError, EOFError, pa.ArrowException):
        return None  # the reader reports it
    return False


def check_id_column(files: list[InputFile], id_column: str, named: bool, incremental: bool) -> None:
    """Refuse, before models load, an id column (`named`: set by the user) that no input holds: a
    misspelled --id-column would silently give every post an id made of file name and row, which
    changes when the dump does (carry-over, DSA puids). Warn when only some inputs lack it, or when
    the default column is missing in an incremental run."""
    present = {item.path: has_column(item, id_column) for item in files}
    known = {path: p for path, p in present.items() if p is not None}
    if not known:
        return
    missing = [path for path, p in known.items() if not p]
    if len(missing) == len(known) and named:
        raise InputError(f"{missing[0]}: no column {id_column!r} (--id-column / [input] id_column) in "
                         f"{'any of the ' + str(len(missing)) + ' inputs' if len(missing) > 1 else 'the input'}; "
                         "check its spelling, or leave it unset to derive ids from file name and row")
    if missing and (len(missing) < len(known) or incremental):
        log.warning("%s: no column %r: its posts get ids from file name and row, which change when the dump "
                    "does (carry-over and DSA puids rely on ids)", ", ".join(missing[:3]) +
                    (f" and {len(missing) - 3} more" if len(missing) > 3 else ""), id_column)


def _without_views(type_: pa.DataType) -> pa.DataType:
    """`type_` with Arrow's view types (string_view, binary_view, list_view), nested ones too, replaced by
    their large offset types: Arrow's filter and take, which every run uses, have no kernels for views."""
    if pa.types.is_string_view(type_):
        return pa.large_string()
    if pa.types.is_binary_view(type_):
        return pa.large_binary()
    if pa.types.is_list_view(type_) or pa.types.is_large_list_view(type_):
        return pa.large_list(type_.value_field.with_type(_without_views(type_.value_type)))
    if pa.types.is_list(type_) or pa.types.is_large_list(type_) or pa.types.is_fixed_size_list(type_):
        value = type_.value_field.with_type(_without_views(type_.value_type))
        if value.type == type_.value_type:
            return type_
        if pa.types.is_fixed_size_list(type_):
            return pa.list_(value, type_.list_size)
        return pa.large_list(value) if pa.types.is_large_list(type_) else pa.list_(value)
    if pa.types.is_struct(type_):
        fields = [type_.field(i) for i in range(type_.num_fields)]
        changed = [f.with_type(_without_views(f.type)) for f in fields]
        return type_ if changed == fields else pa.struct(changed)
    if pa.types.is_map(type_):
        key, item = _without_views(type_.key_type), _without_views(type_.item_type)
        return type_ if (key, item) == (type_.key_type, type_.item_type) else pa.map_(key, item)
    if pa.types.is_dictionary(type_):
        value = _without_views(type_.value_type)
        return type_ if value == type_.value_type else value
    return type_


def _is_text(type_: pa.DataType) -> bool:
    if pa.types.is_dictionary(type_):
        type_ = type_.value_type
    return pa.types.is_string(type_) or pa.types.is_large_string(type_) or pa.types.is_string_view(type_)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:300]


class HashingReader(io.RawIOBase):
    """A binary stream that passes reads through and keeps the sha256 and size of what it read.

    `chunk` caps each read: pyarrow's decompressing streams drop all that one read decoded when the
    stream turns out truncated, so small reads keep the rows before the cut countable.
    """

    def __init__(self, raw: BinaryIO, chunk: int | None = None) -> None:
        self.raw = raw
        self.chunk = chunk
        self.sha256 = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        data = self.raw.read(len(buffer) if self.chunk is None else min(len(buffer), self.chunk))
        n = len(data)
        buffer[:n] = data
        self.sha256.update(data)
        self.size += n
        return n


@dataclass
class FileStats:
    rows: int = 0
    size: int = 0
    sha256: str = ""


class Reader:
    """Base reader: origin columns, checksums and file-naming errors around one format's batches."""

    def __init__(self, item: InputFile, batch_size: int, text_column: str, stdin: BinaryIO | None = None,
                 id_column: str | None = None, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> None:
        self.item = item
        self.id_column = id_column
        self.batch_size = batch_size
        self.text_column = text_column
        self.stdin = stdin
        self.max_record_bytes = max_record_bytes
        self.stats = FileStats()
        self.records_read = 0  # records read so far, also those not yet passed on in a batch

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        row = 0
        try:
            for batch in self._batches():
                n = batch.num_rows
                if n == 0:
                    continue
                batch = records.set_column(batch, records.SOURCE, pa.array([self.item.name] * n, pa.string()))
                batch = records.set_column(batch, records.ROW, _row_numbers(batch, row))
                row += n
                self.stats.rows += n
                yield batch
        except InputError:
            raise
        except (OSError, EOFError, pa.ArrowException) as exc:
            rows = max(self.records_read, self.stats.rows)
            raise InputError(f"{self.item.path}: cannot read ({_short(exc)}) after {rows} rows") from None

    def batches_from(self, skip: int, clock: Counter) -> Iterator[tuple[int, pa.RecordBatch]]:
        """(first row, batch) for the batches that hold rows from `skip` on, adding the time spent
        reading to `clock["read"]`. Batches that end before `skip` (done before a checkpoint) are
        read but not passed on; the batch that holds it is passed on whole, so that it is scored
        exactly as in an uninterrupted run (see `checkpoint.py`)."""
        batches, row = iter(self), 0
        while True:
            t = time.perf_counter()
            batch = next(batches, None)
            clock["read"] += time.perf_counter() - t
            if batch is None:
                return
            first, row = row, row + batch.num_rows
            if row > skip:
                yield first, batch

    def _batches(self) -> Iterator[pa.RecordBatch]:
        raise NotImplementedError


def _row_numbers(batch: pa.RecordBatch, start: int) -> pa.Array:
    if records.ROW in batch.schema.names:  # JSONL readers number rows by line, skipping blank lines
        return batch.column(records.ROW)
    return pa.array(range(start, start + batch.num_rows), pa.int64())


def content_sha256(item: InputFile) -> str:
    """The sha256 a reader records for `item` (FileStats.sha256), without parsing it.

    Parquet: of the file's bytes; JSONL: of the decompressed stream.
    """
    try:
        if item.format == "parquet":
            source: BinaryIO = open(item.path, "rb")
        else:
            source = pa.input_stream(item.path, compression="detect")
        with source:
            digest = hashlib.sha256()
            while chunk := source.read(1 << 20):
                digest.update(chunk)
    except (OSError, EOFError, pa.ArrowException) as exc:
        raise InputError(f"{item.path}: cannot read ({_short(exc)})") from None
    return digest.hexdigest()


class ParquetReader(Reader):
    def _batches(self) -> Iterator[pa.RecordBatch]:
        with open(self.item.path, "rb") as raw:
            hashing = HashingReader(raw)  # pyarrow reads footers first: hash the file separately
            while hashing.read(1 << 20):
                pass
            self.stats.sha256, self.stats.size = hashing.sha256.hexdigest(), hashing.size
        parquet = pq.ParquetFile(self.item.path)
        for batch in parquet.iter_batches(batch_size=self.batch_size):
            self.records_read += batch.num_rows
            target = pa.schema([f.with_type(_without_views(f.type)) for f in batch.schema],
                               metadata=batch.schema.metadata)
            if target != batch.schema:  # check_schema made sure that the cast exists
                batch = batch.cast(target)
            yield self._limit_text(batch)

    def _limit_text(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """`batch` with each text over the record limit replaced by null and its row quarantined
        (`record_too_large`, with the size and first characters), so that it goes no further."""
        column = batch.column(self.text_column)
        texts = column.dictionary_decode() if pa.types.is_dictionary(column.type) else column
        sizes = pc.binary_length(texts).to_pylist()
        limit = self.max_record_bytes
        if not any(size is not None and size > limit for size in sizes):
            return batch
        starts = pc.utf8_slice_codeunits(texts, 0, 80).to_pylist()
        reasons: list[str | None] = [None] * batch.num_rows
        details: list[str | None] = [None] * batch.num_rows
        for i, size in enumerate(sizes):
            if size is not None and size > limit:
                reasons[i] = "record_too_large"
                details[i] = (f"text of {size} bytes is over [input] max_record_bytes = {limit}; it starts "
                              f"{json.dumps(starts[i], ensure_ascii=False)}...")
        keep = pa.array([reason is None for reason in reasons])
        if pa.types.is_dictionary(column.type):  # drop the long values from the dictionary too
            short = pc.less_equal(pc.binary_length(column.dictionary), limit)
            dictionary = pc.if_else(short, column.dictionary, pa.scalar("", column.dictionary.type))
            indices = pc.if_else(keep, column.indices, pa.scalar(None, column.indices.type))
            cleared = pa.DictionaryArray.from_arrays(indices, dictionary)
        else:
            cleared = pc.if_else(keep, column, pa.scalar(None, column.type))
        batch = records.set_column(batch, self.text_column, cleared)
        batch = records.set_column(batch, records.QUARANTINE, pa.array(reasons, pa.string()))
        return records.set_column(batch, records.DETAIL, pa.array(details, pa.string()))


class JsonlReader(Reader):
    def _open(self) -> BinaryIO:
        if self.item.is_stdin:
            if self.stdin is None:
                raise InputError("stdin: no standard input to read from")
            return self.stdin
        try:
            return pa.input_stream(self.item.path, compression="detect")
        except (OSError, pa.ArrowException) as exc:
            raise InputError(f"{self.item.path}: cannot open ({_short(exc)})") from None

    def _batches(self) -> Iterator[pa.RecordBatch]:
        source = self._open()
        compressed = not self.item.is_stdin and self.item.path.lower().endswith(COMPRESSED_SUFFIXES)
        hashing = HashingReader(source, chunk=8192 if compressed else None)
        stream = io.BufferedReader(hashing, buffer_size=1 << 20)
        pending: list[tuple[int, bytes | _Oversized]] = []
        for line_index, line in self._lines(stream):
            if isinstance(line, bytes):
                if line_index == 0 and line.startswith(b"\xef\xbb\xbf"):
                    line = line[3:]  # a UTF-8 byte-order mark is not part of the first record
                if not line.strip():
                    continue
            pending.append((line_index, line))
            self.records_read += 1
            if len(pending) >= self.batch_size:
                yield self._parse(pending)
                pending = []
        if pending:
            yield self._parse(pending)
        self.stats.sha256, self.stats.size = hashing.sha256.hexdigest(), hashing.size

    def _lines(self, stream: io.BufferedReader) -> Iterator[tuple[int, bytes | _Oversized]]:
        """(line index, line) for each line of `stream`; a line over the record limit comes as an
        `_Oversized` instead, read in bounded pieces and skipped to its end. One that has not ended
        after SKIP_FACTOR times the limit ends the file: the rest is not read."""
        limit = self.max_record_bytes
        index = 0
        while line := stream.readline(limit + 1):
            if len(line) <= limit or line.endswith(b"\n"):
                yield index, line
            else:
                oversized = _skip_line(stream, line[:min(limit, KEPT_PREFIX)], len(line), limit * SKIP_FACTOR)
                yield index, oversized
                if not oversized.ended:
                    log.error("%s: line %d has not ended after %d bytes; stopped reading this file there (the "
                              "line is quarantined as record_too_large, the rest of the file is not read)",
                              "stdin" if self.item.is_stdin else self.item.path, index + 1, oversized.size)
                    return
            index += 1

    def _parse(self, lines: list[tuple[int, bytes | _Oversized]]) -> pa.RecordBatch:
        objects: list[dict] = []
        texts: list[str | None] = []
        reasons: list[str | None] = []
        details: list[str | None] = []
        raws: list[str | None] = []
        for _, line in lines:
            if isinstance(line, _Oversized):
                objects.append({})
                texts.append(None)
                reasons.append("record_too_large")
                details.append(line.detail(self.max_record_bytes))
                raws.append(line.prefix.decode("utf-8", "backslashreplace"))
                continue
            obj, reason, detail = _decode(line)
            text = None
            if reason is None:
                if self.text_column not in obj:
                    reason = "text_missing"
                else:
                    text = obj[self.text_column]
                    if text is not None and not isinstance(text, str):
                        reason, detail = "text_not_string", f"text is {_json_type(text)}: {_clip(json.dumps(text))}"
                        text = None
            objects.append(obj if reason is None or reason.startswith("text_") else {})
            texts.append(text)
            reasons.append(reason)
            details.append(detail)
            raws.append(line.decode("utf-8", "backslashreplace").rstrip("\r\n"))  # for quarantine
        columns = _columns(objects, self.item.path, {self.text_column: pa.array(texts, pa.string())}, self.id_column)
        columns[records.ROW] = pa.array([i for i, _ in lines], pa.int64())
        columns[records.QUARANTINE] = pa.array(reasons, pa.string())
        columns[records.DETAIL] = pa.array(details, pa.string())
        columns[records.RAW] = pa.array(raws, pa.string())
        return pa.RecordBatch.from_pydict(columns)


@dataclass(frozen=True)
class _Oversized:
    """A JSONL line over the record limit: its first bytes and its size, not its content."""

    prefix: bytes
    size: int  # bytes before the newline; where the line did not end, the bytes read
    ended: bool

    def detail(self, limit: int) -> str:
        if not self.ended:
            return (f"line longer than {self.size} bytes, not read to its end ([input] max_record_bytes = "
                    f"{limit}); the rest of the file was not read; raw holds its first {len(self.prefix)} bytes")
        return (f"line of {self.size} bytes is over [input] max_record_bytes = {limit}; raw holds its first "
                f"{len(self.prefix)} bytes")


def _skip_line(stream: io.BufferedReader, prefix: bytes, size: int, bound: int) -> _Oversized:
    """Read the rest of a line of which `size` bytes, starting with `prefix`, are read, a piece at a
    time, keeping only its size; give up once `bound` bytes of it are read without its end."""
    while size < bound:
        piece = stream.readline(min(1 << 20, bound - size))
        if not piece:
            return _Oversized(prefix, size, True)  # the file ends the line
        if piece.endswith(b"\n"):
            return _Oversized(prefix, size + len(piece) - 1, True)
        size += len(piece)
    return _Oversized(prefix, size, False)


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _decode(line: bytes) -> tuple[dict, str | None, str | None]:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return {}, "invalid_utf8", f"byte {exc.start}: {exc.reason}"
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        # Some of json's messages end in "at" ("Unterminated string starting at"): not "at at column".
        return {}, "invalid_json", f"{exc.msg.removesuffix(' at')} at column {exc.colno}"
    except RecursionError:
        return {}, "invalid_json", "nested too deeply"
    if not isinstance(obj, dict):
        return {}, "not_an_object", f"the line holds a JSON {_json_type(obj)}"
    if _SURROGATE_ESCAPE.search(text):  # valid JSON, but "\ud800" alone is no character: Arrow cannot hold it
        try:
            json.dumps(obj, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as exc:
            return {}, "invalid_unicode", f"a lone surrogate escape (\\u{ord(exc.object[exc.start]):04x})"
    clash = next((k for k in obj if k.startswith(records.PREFIX) or k == records.ANNOTATION), None)
    if clash is not None:
        return {}, "not_an_object", f"key {clash!r} is a name moderator writes itself"
    return obj, None, None


def _json_type(value: object) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "number",
            float: "number", type(None): "null"}[type(value)]


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


_mixed_warned: set[tuple[str, str]] = set()


def _columns(objects: list[dict], path: str, given: dict[str, pa.Array], id_column: str | None = None
             ) -> dict[str, pa.Array]:
    """Columns for the union of keys over all records, in order of first appearance.

    `given` holds columns already built (the validated text). A key whose values have types Arrow
    cannot put in one column (a number here, a string there) is kept as JSON text, so that no
    value is lost; a warning names the file and the key. The id column is the exception: its string
    values stay as they are (ids 7 and "b7" become "7" and "b7", not "7" and "\"b7\""), so that a
    post keeps its id whatever else its batch holds.
    """
    keys: dict[str, None] = {}
    for obj in objects:
        for key in obj:
            keys.setdefault(key, None)
    for key in given:
        keys.setdefault(key, None)
    columns: dict[str, pa.Array] = {}
    for key in keys:
        if key in given:
            columns[key] = given[key]
            continue
        values = [obj.get(key) for obj in objects]
        try:
            columns[key] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            if key == id_column:
                columns[key] = pa.array([None if v is None else v if isinstance(v, str) else json.dumps(v)
                                         for v in values], pa.string())
                continue
            if (path, key) not in _mixed_warned:
                _mixed_warned.add((path, key))
                log.warning("%s: values of %r have mixed types; kept as JSON text", path, key)
            columns[key] = pa.array([None if v is None else json.dumps(v, ensure_ascii=False) for v in values],
                                    pa.string())
    return columns


def open_reader(item: InputFile, batch_size: int, text_column: str, stdin: BinaryIO | None = None,
                id_column: str | None = None, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> Reader:
    cls = ParquetReader if item.format == "parquet" else JsonlReader
    return cls(item, batch_size, text_column, stdin, id_column, max_record_bytes)
