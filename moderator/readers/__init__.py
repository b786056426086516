"""Readers: turn input files into a stream of record batches with bounded memory.

Where each part of reading lives:

    discovery.py  which files the INPUT arguments name (files, folders, globs, "-"): `discover`,
                  `InputFile`; moderator's own run folders are skipped, and refused when named
    checks.py     before any model loads: a Parquet file's schema (`check_schema`), the id column
                  (`check_id_column`)
    base.py       what every reader shares (`Reader`): the row's origin, checksums, errors that name
                  the file, continuing from a checkpoint's row (`batches_from`)
    parquet.py    `ParquetReader`: `ParquetFile.iter_batches`
    jsonl.py      `JsonlReader`: line by line, one bad line one quarantined record

`open_reader` picks the reader for a file's format. Nothing ever holds the whole corpus, and no
record is held whole past `[input] max_record_bytes`: a longer one is quarantined as
`record_too_large`, with its size and first bytes.
"""

from __future__ import annotations

from typing import BinaryIO

from moderator.readers.base import DEFAULT_MAX_RECORD_BYTES, FileStats, HashingReader, Reader, content_sha256
from moderator.readers.checks import check_id_column, check_schema, has_column
from moderator.readers.discovery import (COMPRESSED_SUFFIXES, JSONL_SUFFIXES, PARQUET_SUFFIXES, STDIN, InputFile,
                                         discover, format_of, is_run_folder, run_folder_of)
from moderator.readers.jsonl import JsonlReader
from moderator.readers.parquet import ParquetReader


def open_reader(item: InputFile, batch_size: int, text_column: str, stdin: BinaryIO | None = None,
                id_column: str | None = None, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> Reader:
    cls = ParquetReader if item.format == "parquet" else JsonlReader
    return cls(item, batch_size, text_column, stdin, id_column, max_record_bytes)


__all__ = [
    "COMPRESSED_SUFFIXES", "DEFAULT_MAX_RECORD_BYTES", "JSONL_SUFFIXES", "PARQUET_SUFFIXES", "STDIN",
    "FileStats", "HashingReader", "InputFile", "JsonlReader", "ParquetReader", "Reader",
    "check_id_column", "check_schema", "content_sha256", "discover", "format_of", "has_column", "is_run_folder",
    "open_reader", "run_folder_of",
]
