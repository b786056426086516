"""Writers: annotated output shards (Parquet or JSONL), JSON-lines logs, quarantine records.

Output goes to `output/part-NNNNN.parquet` (or `.jsonl`), a new part every `rows_per_shard` rows,
and also when a batch's columns cannot be written under the current part's schema (JSONL inputs,
or Parquet shards with different schemas): nothing is dropped or coerced to fit.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from moderator import records
from moderator.errors import OutputError


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
    return json.dumps(obj, ensure_ascii=False, default=json_default, separators=(",", ":")) + "\n"


def fsync_close(handle) -> None:  # type: ignore[no-untyped-def]
    handle.flush()
    os.fsync(handle.fileno())
    handle.close()


class JsonLinesWriter:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows = 0
        try:
            self._handle = open(path, "w", encoding="utf-8", newline="\n")
        except OSError as exc:
            raise OutputError(f"{path}: cannot create ({exc.strerror})") from None

    def write(self, objects: list[dict]) -> None:
        if objects:
            try:
                self._handle.write("".join(json_line(o) for o in objects))
            except OSError as exc:
                raise OutputError(f"{self.path}: cannot write ({exc.strerror})") from None
            self.rows += len(objects)

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
    """Annotated rows into numbered part files under `folder`."""

    def __init__(self, folder: Path, fmt: str, rows_per_shard: int, compression: str = "zstd") -> None:
        self.folder = folder
        self.format = fmt
        self.rows_per_shard = rows_per_shard
        self.compression = compression
        self.parts: list[dict[str, Any]] = []
        self._writer: pq.ParquetWriter | JsonLinesWriter | None = None
        self._schema: pa.Schema | None = None
        self._rows = 0
        folder.mkdir(parents=True, exist_ok=True)

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

    def _open_part(self, schema: pa.Schema) -> None:
        path = self.folder / f"part-{len(self.parts):05d}.{'parquet' if self.format == 'parquet' else 'jsonl'}"
        self._schema, self._rows = schema, 0
        self.parts.append({"file": path.name, "rows": 0})
        if self.format == "parquet":
            try:
                self._writer = pq.ParquetWriter(path, schema, compression=self.compression)
            except OSError as exc:
                raise OutputError(f"{path}: cannot create ({exc})") from None
        else:
            self._writer = JsonLinesWriter(path)

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
        if self._writer is None:
            return
        try:
            self._writer.close()
        except OSError as exc:
            raise OutputError(f"{self.folder}: cannot write output ({exc})") from None
        self._writer = None

    def close(self) -> list[dict[str, Any]]:
        self._finish_part()
        return self.parts


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
