"""Writers: annotated output shards (Parquet or JSONL), JSON-lines logs, quarantine records.

Output goes to `output/part-NNNNN.parquet` (or `.jsonl`), a new part every `rows_per_shard` rows,
and also when a batch's columns cannot be written under the current part's schema (JSONL inputs,
or Parquet shards with different schemas): nothing is dropped or coerced to fit. A part is written
under a temporary name (`.part-NNNNN.parquet.tmp`), fsynced and renamed when it is complete, so a
part file that has its final name is always whole: a run that resumes after a crash keeps those
and rewrites the rest (see `checkpoint.py`).

Every file is created with the run's file mode, and every folder with the matching folder mode
(`files.py`).
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from moderator import records
from moderator.errors import OutputError
from moderator.files import PRIVATE, create_file, fsync_close, fsync_folder, make_folder, open_at, sync

log = logging.getLogger(__name__)


def json_default(value: Any) -> Any:
    """JSON for the Arrow values that `json` does not know."""
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, decimal.Decimal):
        return str(value)
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return str(value)


def json_line(obj: Any) -> str:
    """One line of strict JSON. NaN and +-Infinity (JSON has none; Python's `json` reads and writes them,
    so a JSONL input may hold them) are written as null: bare `NaN` would make the line unreadable
    to every other JSON parser."""
    try:
        text = json.dumps(obj, ensure_ascii=False, default=json_default, separators=(",", ":"), allow_nan=False)
    except ValueError:
        text = json.dumps(_finite(obj), ensure_ascii=False, default=json_default, separators=(",", ":"),
                          allow_nan=False)
    return text + "\n"


def _finite(value: Any) -> Any:
    """`value` with every non-finite float (also inside lists, dicts and numpy scalars) replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        return _finite(value.item())
    return value


class JsonLinesWriter:
    """JSON lines into one file. `resume_at`: continue an existing file after its first N bytes."""

    def __init__(self, path: Path, file_mode: int = PRIVATE, resume_at: tuple[int, int] | None = None) -> None:
        self.path = path
        self.rows = 0
        try:
            if resume_at is None:
                self._handle = create_file(path, file_mode, binary=True)
            else:
                size, self.rows = resume_at
                self._handle = open_at(path, size, file_mode)
        except OSError as exc:
            raise OutputError(f"{path}: cannot {'create' if resume_at is None else 'resume'} ({exc.strerror})") from None

    def write(self, objects: list[dict]) -> None:
        if objects:
            self._write_bytes("".join(json_line(o) for o in objects).encode("utf-8"))
            self.rows += len(objects)

    def _write_bytes(self, data: bytes) -> None:
        try:
            self._handle.write(data)
        except OSError as exc:
            raise OutputError(f"{self.path}: cannot write ({exc.strerror})") from None

    def sync(self) -> tuple[int, int]:
        """Make what was written durable: (bytes, rows) for a checkpoint."""
        try:
            return sync(self._handle), self.rows
        except OSError as exc:
            raise OutputError(f"{self.path}: cannot write ({exc.strerror})") from None

    def close(self) -> None:
        try:
            fsync_close(self._handle)
        except OSError as exc:
            raise OutputError(f"{self.path}: cannot write ({exc.strerror})") from None


def conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch | None:
    """`batch` cast to `schema`, filling absent columns with nulls; None when that would lose data."""
    if batch.schema.equals(schema):
        return batch
    if any(name not in schema.names for name in batch.schema.names):
        return None
    columns = []
    for field in schema:
        if field.name not in batch.schema.names:
            columns.append(pa.nulls(batch.num_rows, field.type))
            continue
        column = batch.column(field.name)
        if column.type == field.type:
            columns.append(column)
        elif column.type == pa.null():
            columns.append(pa.nulls(batch.num_rows, field.type))
        else:
            return None
    return pa.RecordBatch.from_arrays(columns, schema=schema)


class PartWriter:
    """Annotated rows into numbered part files under `folder`.

    `done` continues a run from a checkpoint: the parts it lists are kept, every other file in
    the folder (a part that was being written, a part finished after the checkpoint) is removed.
    """

    def __init__(self, folder: Path, fmt: str, rows_per_shard: int, compression: str = "zstd",
                 file_mode: int = PRIVATE, done: list[dict[str, Any]] | None = None) -> None:
        self.folder = folder
        self.format = fmt
        self.rows_per_shard = rows_per_shard
        self.compression = compression
        self.file_mode = file_mode
        self.parts: list[dict[str, Any]] = [dict(p) for p in done or []]
        self._writer: pq.ParquetWriter | JsonLinesWriter | None = None
        self._handle = None  # the open part's file (Parquet)
        self._schema: pa.Schema | None = None
        self._rows = 0
        self.rewritten: set[str] = set()  # parts rewritten to the common schema on closing (hashes change)
        try:
            make_folder(folder, file_mode)
            keep = {p["file"] for p in self.parts}
            for path in folder.iterdir():
                if path.name not in keep:
                    path.unlink()
            missing = [name for name in sorted(keep) if not (folder / name).is_file()]
        except OSError as exc:
            raise OutputError(f"{folder}: cannot create ({exc.strerror})") from None
        if missing:
            raise OutputError(f"{folder}: {missing[0]} is missing; the checkpoint cannot be resumed")

    @property
    def is_open(self) -> bool:
        """Whether a part is being written (a checkpoint can only be taken between parts)."""
        return self._writer is not None

    def room(self) -> int:
        """Rows that still fit into the open part (a whole part's worth when none is open)."""
        return self.rows_per_shard - self._rows if self._writer is not None else self.rows_per_shard

    def write(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows == 0:
            return
        if self._writer is not None and self.format == "parquet":
            conformed = conform(batch, self._schema)
            if conformed is None:
                self._finish_part()
            else:
                batch = conformed
        start = 0
        while start < batch.num_rows:
            if self._writer is None:
                self._open_part(batch.schema)
            take = min(batch.num_rows - start, self.rows_per_shard - self._rows)
            self._write_rows(batch.slice(start, take))
            start += take
            if self._rows >= self.rows_per_shard:
                self._finish_part()

    def _paths(self) -> tuple[Path, Path]:
        name = self.parts[-1]["file"]
        return self.folder / name, self.folder / f".{name}.tmp"

    def _open_part(self, schema: pa.Schema) -> None:
        name = f"part-{len(self.parts):05d}.{'parquet' if self.format == 'parquet' else 'jsonl'}"
        self._schema, self._rows = schema, 0
        self.parts.append({"file": name, "rows": 0})
        _, tmp = self._paths()
        if self.format == "parquet":
            try:
                self._handle = create_file(tmp, self.file_mode, binary=True)
                self._writer = pq.ParquetWriter(self._handle, schema, compression=self.compression)
            except OSError as exc:
                raise OutputError(f"{tmp}: cannot create ({exc})") from None
        else:
            self._writer = JsonLinesWriter(tmp, self.file_mode)

    def _write_rows(self, batch: pa.RecordBatch) -> None:
        try:
            if isinstance(self._writer, pq.ParquetWriter):
                self._writer.write_batch(batch)
            else:
                self._writer.write(batch.to_pylist())
        except OSError as exc:
            raise OutputError(f"{self.folder}: cannot write output ({exc})") from None
        self._rows += batch.num_rows
        self.parts[-1]["rows"] = self._rows

    def _finish_part(self) -> None:
        """Close the open part, fsync it and give it its final name: it appears whole or not at all."""
        if self._writer is None:
            return
        path, tmp = self._paths()
        try:
            self._writer.close()
            if self._handle is not None:
                fsync_close(self._handle)
            os.replace(tmp, path)
            fsync_folder(self.folder)
        except OSError as exc:
            raise OutputError(f"{self.folder}: cannot write output ({exc})") from None
        self._writer, self._handle = None, None

    def close(self) -> list[dict[str, Any]]:
        self._finish_part()
        if self.format == "parquet":
            self._unify_parts()
        return self.parts

    def _unify_parts(self) -> None:
        """Give every Parquet part one schema, so the output folder reads back as one dataset.

        A column whose type changed between input files or batches (an int here, a float or a string
        there) started a new part (`conform`); here the parts are rewritten to the common type: Arrow's
        permissive promotion where one exists (int -> double, null -> anything), else JSON text in every
        part (as the JSONL reader keeps mixed keys: 5 and "5" stay apart). Rare, and only the parts
        whose schema differs or that hold such a column are rewritten.
        """
        paths = [self.folder / part["file"] for part in self.parts]
        try:
            schemas = [pq.read_schema(path).remove_metadata() for path in paths]
        except (OSError, pa.ArrowException) as exc:
            raise OutputError(f"{self.folder}: cannot read an output part back ({exc})") from None
        if len({schema.to_string() for schema in schemas}) <= 1:
            return
        target, as_json = common_schema(schemas)
        for path, schema in zip(paths, schemas):
            if schema.equals(target) and not as_json & set(schema.names):
                continue
            changed = [f"{f.name}: {f.type}" for f in target
                       if f.name not in schema.names or schema.field(f.name).type != f.type]
            log.warning("%s: column types differ between output parts; rewriting it with %s", path.name,
                        ", ".join(changed))
            tmp = path.with_name(f".{path.name}.tmp")
            try:
                with create_file(tmp, self.file_mode, binary=True) as handle:
                    writer = pq.ParquetWriter(handle, target, compression=self.compression)
                    for batch in pq.ParquetFile(path).iter_batches():
                        writer.write_batch(cast_to(batch, target, as_json))
                    writer.close()
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp, path)
                self.rewritten.add(path.name)
            except (OSError, pa.ArrowException) as exc:
                tmp.unlink(missing_ok=True)
                raise OutputError(f"{path}: cannot rewrite to the common schema ({exc})") from None
        fsync_folder(self.folder)


def common_schema(schemas: list[pa.Schema]) -> tuple[pa.Schema, set[str]]:
    """One schema for all, and the columns that become JSON text: each column's types promoted
    permissively, JSON text where no promotion exists."""
    fields: dict[str, list[pa.DataType]] = {}
    for schema in schemas:
        for f in schema:
            fields.setdefault(f.name, []).append(f.type)
    out, as_json = [], set()
    for name, types in fields.items():
        try:
            merged = pa.unify_schemas([pa.schema([(name, t)]) for t in types], promote_options="permissive")
            out.append(merged.field(name))
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            out.append(pa.field(name, pa.string()))
            as_json.add(name)
    return pa.schema(out), as_json


def cast_to(batch: pa.RecordBatch, schema: pa.Schema, as_json: set[str] = frozenset()) -> pa.RecordBatch:  # type: ignore[assignment]
    """`batch` in `schema`: absent columns as nulls, `as_json` columns as JSON text, others cast."""
    columns = []
    for f in schema:
        if f.name not in batch.schema.names:
            columns.append(pa.nulls(batch.num_rows, f.type))
        elif f.name in as_json:
            values = batch.column(f.name).to_pylist()
            columns.append(pa.array([None if v is None else json_line(v).rstrip("\n") for v in values], pa.string()))
        else:
            columns.append(batch.column(f.name).cast(f.type))
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def quarantine_records(batch: pa.RecordBatch) -> list[dict[str, Any]]:
    """One record per quarantined row: where it came from, why, and everything it held.

    Rows read from JSONL keep their original line (`raw`); rows from Parquet keep their columns.
    """
    user_columns = [name for name in batch.schema.names if not name.startswith(records.PREFIX)]
    columns = {name: batch.column(name).to_pylist() for name in batch.schema.names}
    raws = columns.get(records.RAW, [None] * batch.num_rows)
    out = []
    for i in range(batch.num_rows):
        record: dict[str, Any] = {
            "id": columns[records.ID][i],
            "source": columns[records.SOURCE][i],
            "row": columns[records.ROW][i],
            "reason": columns[records.QUARANTINE][i],
            "detail": columns[records.DETAIL][i] or records.QUARANTINE_REASONS.get(columns[records.QUARANTINE][i]),
        }
        if raws[i] is not None:
            record["line"] = columns[records.ROW][i] + 1
            record["raw"] = raws[i]
        else:
            record["record"] = {name: columns[name][i] for name in user_columns}
        out.append(record)
    return out
