"""Readers: turn input files into a stream of record batches with bounded memory.

A reader implements one narrow hook, `_batches(handle)`: open this file and yield batches of its
rows. The base class adds what every format shares: the row's origin (file name and position),
checksums of the bytes read, and errors that name the file. Nothing ever holds the whole corpus:
Parquet is read with `ParquetFile.iter_batches`, JSONL line by line.

JSONL is parsed per line rather than by pyarrow's block parser, so that one bad line becomes one
quarantined record (with its reason and the line itself) instead of a failed file, and so that a
key missing from the first record of a batch is not silently dropped.
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
import pyarrow.parquet as pq

from moderator import records
from moderator.errors import InputError

log = logging.getLogger(__name__)

JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.zst", ".ndjson", ".ndjson.gz", ".ndjson.zst")
PARQUET_SUFFIXES = (".parquet", ".pq")
STDIN = "-"


@dataclass(frozen=True)
class InputFile:
    path: str  # a filesystem path, or "-" for standard input
    name: str  # the stable name used in derived ids: path relative to the folder or glob it came from
    format: str  # "parquet" or "jsonl"

    @property
    def is_stdin(self) -> bool:
        return self.path == STDIN


def format_of(path: str) -> str | None:
    lower = path.lower()
    if lower.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if lower.endswith(JSONL_SUFFIXES):
        return "jsonl"
    return None


def discover(specs: list[str]) -> list[InputFile]:
    """Expand the user's INPUT arguments (files, folders, globs, "-") into a sorted list of files."""
    found: list[InputFile] = []
    seen: set[str] = set()
    for spec in specs:
        for item in _expand(spec):
            key = item.path if item.is_stdin else os.path.realpath(item.path)
            if key not in seen:
                seen.add(key)
                found.append(item)
    if not found:
        raise InputError("no input files given")
    return found


def _expand(spec: str) -> list[InputFile]:
    if spec == STDIN:
        return [InputFile(STDIN, "stdin", "jsonl")]
    path = Path(spec).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and format_of(p.name))
        if not files:
            raise InputError(f"{spec}: folder holds no .parquet or .jsonl(.gz/.zst) files")
        return [InputFile(str(p), p.relative_to(path).as_posix(), format_of(p.name)) for p in files]
    if glob.has_magic(spec):
        matches = sorted(m for m in glob.glob(os.path.expanduser(spec), recursive=True) if os.path.isfile(m))
        if not matches:
            raise InputError(f"{spec}: no files match this pattern")
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
    clash = [name for name in schema.names if name.startswith(records.PREFIX) or name == records.ANNOTATION]
    if clash:
        raise InputError(
            f"{item.path}: has column {clash[0]!r}, a name moderator writes itself "
            "(is this already a moderator output? moderate the original input instead)"
        )
    return meta.metadata.num_rows


def _is_text(type_: pa.DataType) -> bool:
    if pa.types.is_dictionary(type_):
        type_ = type_.value_type
    return pa.types.is_string(type_) or pa.types.is_large_string(type_) or pa.types.is_string_view(type_)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:300]


class HashingReader(io.RawIOBase):
    """A binary stream that passes reads through and keeps the sha256 and size of what it read."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.sha256 = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        data = self.raw.read(len(buffer))
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
                 id_column: str | None = None) -> None:
        self.item = item
        self.id_column = id_column
        self.batch_size = batch_size
        self.text_column = text_column
        self.stdin = stdin
        self.stats = FileStats()

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
            raise InputError(f"{self.item.path}: cannot read ({_short(exc)}) after {self.stats.rows} rows") from None

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
        yield from parquet.iter_batches(batch_size=self.batch_size)


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
        hashing = HashingReader(source)
        stream = io.BufferedReader(hashing, buffer_size=1 << 20)
        pending: list[tuple[int, bytes]] = []
        for line_index, line in enumerate(stream):
            if line_index == 0 and line.startswith(b"\xef\xbb\xbf"):
                line = line[3:]  # a UTF-8 byte-order mark is not part of the first record
            if not line.strip():
                continue
            pending.append((line_index, line))
            if len(pending) >= self.batch_size:
                yield self._parse(pending)
                pending = []
        if pending:
            yield self._parse(pending)
        self.stats.sha256, self.stats.size = hashing.sha256.hexdigest(), hashing.size

    def _parse(self, lines: list[tuple[int, bytes]]) -> pa.RecordBatch:
        objects: list[dict] = []
        texts: list[str | None] = []
        reasons: list[str | None] = []
        details: list[str | None] = []
        raws: list[str | None] = []
        for _, line in lines:
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


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _decode(line: bytes) -> tuple[dict, str | None, str | None]:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return {}, "invalid_utf8", f"byte {exc.start}: {exc.reason}"
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        return {}, "invalid_json", f"{exc.msg} at column {exc.colno}"
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
                id_column: str | None = None) -> Reader:
    cls = ParquetReader if item.format == "parquet" else JsonlReader
    return cls(item, batch_size, text_column, stdin, id_column)
