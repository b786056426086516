"""Input checks made before any model loads: a Parquet file's schema, and the id column.

A file that cannot be moderated at all (unreadable, no text column, a column Arrow cannot convert,
columns moderator writes itself) stops the run here with an error naming it, before minutes go
into loading models; a misspelled id column is refused, a missing one warned about.
"""

from __future__ import annotations

import io
import json
import logging

import pyarrow as pa
import pyarrow.parquet as pq

from moderator import records
from moderator.errors import InputError
from moderator.readers.base import short_error
from moderator.readers.discovery import InputFile
from moderator.readers.parquet import without_views

log = logging.getLogger(__name__)


def check_schema(item: InputFile, text_column: str) -> int | None:
    """Refuse, before any model loads, a Parquet file that cannot be read or lacks a string text column.

    Returns the file's row count where it is known without reading the data (Parquet), else None.
    """
    if item.format != "parquet":
        return None
    try:
        meta = pq.ParquetFile(item.path)
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"{item.path}: cannot read as Parquet ({short_error(exc)})") from None
    schema = meta.schema_arrow
    if text_column not in schema.names:
        columns = ", ".join(schema.names) or "none"
        raise InputError(f"{item.path}: no column {text_column!r} (columns: {columns}); use --text-column")
    if not _is_text(schema.field(text_column).type):
        raise InputError(
            f"{item.path}: column {text_column!r} is {schema.field(text_column).type}, not a string column"
        )
    for column in schema:
        target = without_views(column.type)
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


def _is_text(type_: pa.DataType) -> bool:
    if pa.types.is_dictionary(type_):
        type_ = type_.value_type
    return pa.types.is_string(type_) or pa.types.is_large_string(type_) or pa.types.is_string_view(type_)
