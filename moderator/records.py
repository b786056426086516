"""The record batch that flows through the steps, and what each step adds to it.

One unit flows through a run: an Arrow record batch holding the input's own columns plus working
columns whose names start with `__mod_`. Readers add the row's origin; `Prepare` adds the post's id
and text and marks rows that cannot be moderated; each later step adds its columns; `finalize`
packs the working columns into the single struct column `moderation` of the output. Rows are never
dropped on the way: a row that cannot be moderated carries a quarantine reason to the end, where
the writer sends it to the quarantine file. So input rows = output rows + quarantined rows holds by
construction, and every step has the batch -> batch shape that Ray Data's `map_batches` wants.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

PREFIX = "__mod_"
SOURCE = "__mod_source"  # input file, as named in ids and quarantine records
ROW = "__mod_row"  # 0-based position of the record in its file (for JSONL: line number - 1)
RAW = "__mod_raw"  # the original line, for records a reader could not parse into columns
QUARANTINE = "__mod_quarantine"  # reason code, or null for rows that go on
DETAIL = "__mod_detail"  # human-readable detail for the quarantine reason
ID = "__mod_id"
TEXT = "__mod_text"
STAGE = "__mod_stage"  # what scored the row (`Stage`)
TOXICITY = "__mod_toxicity"
SCORES = "__mod_scores"
ACTION = "__mod_action"
REASON = "__mod_reason"
REWRITE = "__mod_rewrite"
REWRITE_TOXICITY = "__mod_rewrite_toxicity"
SIMILARITY = "__mod_similarity"
# Sentence level (sentences.py): the classifier's score of each sentence of a post, as
# list<struct<start, end, toxicity>> (character offsets into the text); the policy's targets: the
# spans the rewriter is asked to rewrite (the toxic sentences, or the whole post), each with the
# rewritability model's probability that it cannot be rewritten; the rewriter's candidates for each
# target (list<list<string>>, in target order); and what verify made of them.
SENTENCES = "__mod_sentences"
TARGETS = "__mod_targets"
UNREWRITABLE = "__mod_unrewritable"  # the lowest probability among the targets (output field `unrewritable`)
REWRITE_CANDIDATES = "__mod_rewrite_candidates"
CANDIDATES = "__mod_candidates"  # how many candidates verify tried (output field `candidates`)
REWRITTEN_SENTENCES = "__mod_rewritten_sentences"  # how many spans the published rewrite replaced
CARRIED_FROM = "__mod_carried_from"  # run id of the earlier run whose decision was carried over (state.py)

ANNOTATION = "moderation"  # the output's struct column

# The names a decision is made of: actions and the stage that scored a post, spelled in this one
# place, and the reason codes with what each means. Every decision carries exactly one reason code:
# the steps that decide (policy, rewrite, verify) spell it out, and tests/test_policy.py checks that
# each one they use is documented here.


class Action:
    """What happens to a post (the output's `moderation.action`)."""

    ALLOW = "allow"
    REWRITE = "rewrite"
    REVIEW = "review"
    REMOVE = "remove"
    # Not a post's action (it is not in ACTIONS): the audit log's `action` for a quarantined record.
    QUARANTINE = "quarantine"


class Stage:
    """What scored a post (the output's `moderation.stage`)."""

    PREFILTER = "prefilter"  # the cascade's first stage cleared it
    CLASSIFIER = "classifier"
    CARRIED_OVER = "carried_over"  # an earlier run decided it, with the same text, policy and models (state.py)


# Categories of toxicity: a multi-label classifier may score these beside its toxicity label, each
# a field of the `scores` struct named as here. Which ones a model has is read from those fields, so
# a model without them (a user's own binary classifier) runs as if categories did not exist.
CATEGORY_HELP = {
    "insult": "insulting, inflammatory or demeaning language aimed at a person",
    "threat": "a wish or an intention to hurt someone, or to have someone hurt",
    "identity_attack": "hate or contempt for people for who they are: origin, religion, gender, sexuality, disability",
    "obscene": "swearing, cursing, vulgar or profane language",
    "sexual": "sexually explicit language",
}
CATEGORIES = tuple(CATEGORY_HELP)


def category_reason(category: str) -> str:
    """The reason code of a post removed for a category the policy does not rewrite (category_threat)."""
    return "category_" + category


ACTIONS = (Action.ALLOW, Action.REWRITE, Action.REVIEW, Action.REMOVE)
REASONS = {
    "below_rewrite_threshold": "allow: toxicity under the rewrite threshold",
    "cleared_by_prefilter": "allow: the cascade's first stage is confident the post is clean",
    "above_rewrite_threshold": "rewrite: toxic, rewritten, and the rewrite passed verification",
    "rewritten_truncated": "rewrite: too long for the rewriter's context; its start was rewritten",
    "above_remove_threshold": "remove: toxicity at or above the remove threshold (opt-in: [policy] remove_threshold)",
    "not_rewritable": "remove: toxic, and its meaning itself is the harm (abuse, a threat, hate, only obscenity): "
                      "the rewritability model says no faithful rewrite exists (surely; or likely, and no rewrite "
                      "passed verification)",
    "uncertain_not_rewritable": "review: judged not rewritable, but its toxicity is under [policy] sure_toxicity",
    **{category_reason(name): f"remove: toxic, and at or above [policy] category_threshold for {name} ({help}), "
                              "a category of [policy] unrewritable_categories: a rewrite would launder the harm"
       for name, help in CATEGORY_HELP.items()},
    "uncertain_category": "review: toxic, with a category of [policy] unrewritable_categories, but its toxicity "
                          "is under [policy] sure_toxicity",
    "rewrite_disabled": "review: would be rewritten, but rewriting is off (--no-rewrite)",
    "too_long_to_rewrite": "review: the post does not fit the rewriter's context",
    "rewrite_empty": "review or remove (on_rewrite_failure): the rewriter returned nothing",
    "rewrite_still_toxic": "review or remove (on_rewrite_failure): the rewrite still scores at or above "
                           "max_rewrite_toxicity",
    "rewrite_dissimilar": "review or remove (on_rewrite_failure): the rewrite's similarity to the post is under "
                          "min_similarity",
    "rewrite_copied": "review or remove (on_rewrite_failure): every candidate repeated the toxic text instead of "
                      "rewriting it",
}
# Reasons of a rewrite that failed verification: the post goes to [policy] on_rewrite_failure
# (review, or remove) with the reason of what failed.
REWRITE_FAILURES = ("rewrite_empty", "rewrite_still_toxic", "rewrite_dissimilar", "rewrite_copied")
QUARANTINE_REASONS = {
    "invalid_json": "the line is not valid JSON",
    "invalid_utf8": "the line is not valid UTF-8",
    "invalid_unicode": "a string escapes a lone surrogate (\\ud800-\\udfff), which is no character",
    "not_an_object": "the JSON value is not an object",
    "text_missing": "the record has no text field",
    "text_null": "the text is null",
    "text_not_string": "the text is not a string",
    "text_empty": "the text is empty or only whitespace",
    "record_too_large": "the line (JSONL) or text (Parquet) is over [input] max_record_bytes; not kept whole",
}


def set_column(batch: pa.RecordBatch, name: str, values: pa.Array) -> pa.RecordBatch:
    """`batch` with column `name` added, or replaced where it exists."""
    index = batch.schema.get_field_index(name)
    if index >= 0:
        return batch.set_column(index, name, values)
    return batch.append_column(name, values)


def active_mask(batch: pa.RecordBatch) -> pa.Array:
    """True for rows that are not quarantined."""
    return pc.is_null(batch.column(QUARANTINE))


def whole_post(text: str) -> dict:
    """The target that stands for a whole post: its text without the whitespace around it."""
    return {"start": len(text) - len(text.lstrip()), "end": len(text.rstrip()), "unrewritable": None}


def targets(batch: pa.RecordBatch) -> list[list[dict] | None]:
    """Each row's targets (the spans to rewrite); a batch the policy did not mark targets the whole post."""
    if TARGETS in batch.schema.names:
        return batch.column(TARGETS).to_pylist()
    return [None if text is None else [whole_post(text)] for text in batch.column(TEXT).to_pylist()]


def category_scores(batch: pa.RecordBatch) -> dict[str, np.ndarray]:
    """The classifier's score of each category it has (the CATEGORIES among the `scores` fields), NaN
    where a post was not scored; {} for a model without categories or a batch without scores. Kept in
    float32, like toxicity: a score compares with a threshold as toxicity does (0.9 >= 0.9)."""
    if SCORES not in batch.schema.names or not pa.types.is_struct(batch.column(SCORES).type):
        return {}
    column = batch.column(SCORES)
    fields = dict(zip((f.name for f in column.type), column.flatten()))  # flatten: null where the post is
    return {name: pc.fill_null(pc.cast(fields[name], pa.float32()), float("nan")).to_numpy(zero_copy_only=False)
            for name in CATEGORIES if name in fields}


def categories_of(scores: dict | None) -> dict[str, float]:
    """The category scores in a decision's `scores` (an audit line's, or the output's), in CATEGORIES order."""
    if not isinstance(scores, dict):
        return {}
    return {name: float(scores[name]) for name in CATEGORIES
            if isinstance(scores.get(name), (int, float)) and not isinstance(scores.get(name), bool)}


def category_threshold(thresholds: dict | None) -> float:
    """A run's [policy] category_threshold, from the thresholds its audit lines record; for runs from
    before the setting existed, its default."""
    value = (thresholds or {}).get("category_threshold")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.5


def strongest_category(scores: dict | None, threshold: float) -> tuple[str, float] | None:
    """The category a decision scored highest in, if that score is at or above `threshold`."""
    present = categories_of(scores)
    if not present:
        return None
    name = max(present, key=lambda c: present[c])  # ties: the first in CATEGORIES order
    return (name, present[name]) if present[name] >= threshold else None


def rows_with_action(batch: pa.RecordBatch, action: str) -> list[int]:
    actions = batch.column(ACTION).to_pylist()
    return [i for i, value in enumerate(actions) if value == action]


class Prepare:
    """Resolve each row's id and text; mark rows without usable text for quarantine.

    A row's id is the id column's value as a string, or, where the column is missing or null, a
    stable id made of the input file's name and the row's position (`posts.parquet:17`).
    """

    def __init__(self, text_column: str, id_column: str) -> None:
        self.text_column = text_column
        self.id_column = id_column

    def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        n = batch.num_rows
        derived = pc.binary_join_element_wise(
            batch.column(SOURCE), pc.cast(batch.column(ROW), pa.string()), ":"
        )
        if self.id_column in batch.schema.names and batch.schema.field(self.id_column).type != pa.null():
            given = _as_string(batch.column(self.id_column))
            ids = pc.coalesce(given, derived)
        else:
            ids = derived
        reasons = batch.column(QUARANTINE).to_pylist() if QUARANTINE in batch.schema.names else [None] * n
        details = batch.column(DETAIL).to_pylist() if DETAIL in batch.schema.names else [None] * n
        if self.text_column in batch.schema.names:
            texts = batch.column(self.text_column)
            if not (pa.types.is_string(texts.type) or pa.types.is_large_string(texts.type)):
                # Parquet files with a non-string text column are refused before the run starts;
                # this catches a JSONL batch whose text key only ever held nulls.
                texts = pa.nulls(n, pa.string()) if texts.type == pa.null() else texts
            text_values = texts.to_pylist()
        else:
            text_values = [None] * n
            reasons = [r or "text_missing" for r in reasons]
        for i, text in enumerate(text_values):
            if reasons[i] is not None:
                continue
            if text is None:
                reasons[i] = "text_null"
            elif not isinstance(text, str):
                reasons[i], details[i] = "text_not_string", f"text is {type(text).__name__}"
            elif not text.strip():
                reasons[i] = "text_empty"
        clean = [t if reasons[i] is None else None for i, t in enumerate(text_values)]
        batch = set_column(batch, ID, ids)
        batch = set_column(batch, TEXT, pa.array(clean, pa.string()))
        batch = set_column(batch, QUARANTINE, pa.array(reasons, pa.string()))
        return set_column(batch, DETAIL, pa.array(details, pa.string()))


def _as_string(values: pa.Array) -> pa.Array:
    if pa.types.is_string(values.type):
        return values
    try:
        return pc.cast(values, pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        import json

        return pa.array([None if v is None else json.dumps(v, default=str) for v in values.to_pylist()],
                        pa.string())


def annotation_type(labels: list[str] | None) -> pa.DataType:
    """The type of the output's `moderation` struct column."""
    score_fields = [pa.field(label, pa.float32()) for label in labels or []]
    return pa.struct(
        [
            pa.field("id", pa.string()),
            pa.field("toxicity", pa.float32()),
            pa.field("stage", pa.string()),
            pa.field("scores", pa.struct(score_fields) if score_fields else pa.null()),
            pa.field("action", pa.string()),
            pa.field("reason", pa.string()),
            pa.field("rewrite", pa.string()),
            pa.field("rewrite_toxicity", pa.float32()),
            pa.field("similarity", pa.float32()),
            pa.field("unrewritable", pa.float32()),
            pa.field("candidates", pa.int32()),
            pa.field("rewritten_sentences", pa.int32()),
        ]
    )


def _column_or_nulls(batch: pa.RecordBatch, name: str, type_: pa.DataType) -> pa.Array:
    if name in batch.schema.names:
        values = batch.column(name)
        return values if values.type == type_ else pc.cast(values, type_)
    return pa.nulls(batch.num_rows, type_)


def finalize(batch: pa.RecordBatch, labels: list[str] | None) -> tuple[pa.RecordBatch, pa.RecordBatch]:
    """Split a processed batch into (output rows, quarantined rows).

    Output rows keep every input column, in input order, plus the `moderation` struct. Quarantined
    rows keep the working columns too, for the quarantine and audit writers.
    """
    struct_type = annotation_type(labels)
    children = [
        _column_or_nulls(batch, PREFIX + f.name, f.type) for f in struct_type
    ]
    annotation = pa.StructArray.from_arrays(children, fields=list(struct_type))
    active = active_mask(batch)
    user_columns = [name for name in batch.schema.names if not name.startswith(PREFIX)]
    output = pa.RecordBatch.from_arrays(
        [batch.column(name) for name in user_columns] + [annotation],
        names=user_columns + [ANNOTATION],
    ).filter(active)
    quarantined = batch.filter(pc.invert(active))
    return output, quarantined
