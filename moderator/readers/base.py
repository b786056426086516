"""What every reader shares: the row's origin, checksums, errors that name the file, resuming.

A reader implements one narrow hook, `_batches()`: open its file and yield batches of its rows
(`parquet.py`, `jsonl.py`). The base class adds what every format shares: the row's origin (file
name and position), checksums of the bytes read, and errors that name the file. Nothing ever holds
the whole corpus: Parquet is read with `ParquetFile.iter_batches`, JSONL line by line.
"""

from __future__ import annotations

import hashlib
import io
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import pyarrow as pa

from moderator import records
from moderator.errors import InputError
from moderator.readers.discovery import InputFile

DEFAULT_MAX_RECORD_BYTES = 8 << 20


def short_error(exc: BaseException) -> str:
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
            raise InputError(f"{self.item.path}: cannot read ({short_error(exc)}) after {rows} rows") from None

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
        raise InputError(f"{item.path}: cannot read ({short_error(exc)})") from None
    return digest.hexdigest()
