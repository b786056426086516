"""The JSONL reader: line by line, so that one bad line is one quarantined record.

JSONL is parsed per line rather than by pyarrow's block parser, so that one bad line becomes one
quarantined record (with its reason and the line itself) instead of a failed file, and so that a
key missing from the first record of a batch is not silently dropped.

No record is held whole past `[input] max_record_bytes`: a longer JSONL line is read in bounded
pieces and skipped to its end, and becomes a `record_too_large` quarantine record that keeps its
size and first bytes. A line that has not ended after `SKIP_FACTOR` times the limit (a 200 MB export
written as one JSON array ends well before; a link to /dev/zero never does) is not read to its end:
the record says so and the file is not read further, with an error in the log that names it.
"""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import pyarrow as pa

from moderator import records
from moderator.errors import InputError
from moderator.readers.base import HashingReader, Reader, short_error
from moderator.readers.discovery import COMPRESSED_SUFFIXES

log = logging.getLogger(__name__)

SKIP_FACTOR = 64  # a line over the limit is skipped to its end for at most this many times the limit
KEPT_PREFIX = 1000  # bytes of an oversized line kept in its quarantine record


class JsonlReader(Reader):
    def _open(self) -> BinaryIO:
        if self.item.is_stdin:
            if self.stdin is None:
                raise InputError("stdin: no standard input to read from")
            return self.stdin
        try:
            return pa.input_stream(self.item.path, compression="detect")
        except (OSError, pa.ArrowException) as exc:
            raise InputError(f"{self.item.path}: cannot open ({short_error(exc)})") from None

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
