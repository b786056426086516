"""The Parquet reader: `ParquetFile.iter_batches`, with the file hashed first and views cast away.

A row whose text is over `[input] max_record_bytes` becomes a `record_too_large` quarantine record
that keeps its size and first characters (pyarrow has decoded that cell, but it goes no further).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from moderator import records
from moderator.readers.base import HashingReader, Reader


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
            target = pa.schema([f.with_type(without_views(f.type)) for f in batch.schema],
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


def without_views(type_: pa.DataType) -> pa.DataType:
    """`type_` with Arrow's view types (string_view, binary_view, list_view), nested ones too, replaced by
    their large offset types: Arrow's filter and take, which every run uses, have no kernels for views."""
    if pa.types.is_string_view(type_):
        return pa.large_string()
    if pa.types.is_binary_view(type_):
        return pa.large_binary()
    if pa.types.is_list_view(type_) or pa.types.is_large_list_view(type_):
        return pa.large_list(type_.value_field.with_type(without_views(type_.value_type)))
    if pa.types.is_list(type_) or pa.types.is_large_list(type_) or pa.types.is_fixed_size_list(type_):
        value = type_.value_field.with_type(without_views(type_.value_type))
        if value.type == type_.value_type:
            return type_
        if pa.types.is_fixed_size_list(type_):
            return pa.list_(value, type_.list_size)
        return pa.large_list(value) if pa.types.is_large_list(type_) else pa.list_(value)
    if pa.types.is_struct(type_):
        fields = [type_.field(i) for i in range(type_.num_fields)]
        changed = [f.with_type(without_views(f.type)) for f in fields]
        return type_ if changed == fields else pa.struct(changed)
    if pa.types.is_map(type_):
        key, item = without_views(type_.key_type), without_views(type_.item_type)
        return type_ if (key, item) == (type_.key_type, type_.item_type) else pa.map_(key, item)
    if pa.types.is_dictionary(type_):
        value = without_views(type_.value_type)
        return type_ if value == type_.value_type else value
    return type_
