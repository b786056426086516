"""Statements of reasons for the EU Digital Services Act transparency database.

Article 24(5) DSA makes online platforms submit a statement of reasons (SoR) for every content
moderation decision to the Commission's transparency database. `moderate report --dsa-sor FILE`
writes one statement per `remove` and `rewrite` decision of the runs, one JSON object per line,
each an object that the database's API (`POST /api/v1/statement`, or `/api/v1/statements` with up
to 100 in `{"statements": [...]}`) accepts:

    decision_visibility        remove  -> ["DECISION_VISIBILITY_CONTENT_REMOVED"]
                               rewrite -> ["DECISION_VISIBILITY_OTHER"] + decision_visibility_other
                                          (the post is shown only in its rewritten form)
    decision_ground            [report] dsa_decision_ground; with it the ground's fields:
                               incompatible_content_ground/_explanation/_illegal, or
                               illegal_content_legal_ground/_explanation
    category                   from the decision's category (a classifier that scores categories,
                               see CATEGORY_STATEMENTS): threat -> VIOLENCE, identity_attack ->
                               hate speech, sexual -> sexualized content; otherwise, and with
                               [report] dsa_category_from_scores = false: [report] dsa_category
                               (+ category_specification when set)
    content_type               ["CONTENT_TYPE_TEXT"]
    content_date               the post's date, from [report] dsa_content_date_column of the run's
                               output; without one, the decision date (and the report says so)
    application_date           the decision's date (the audit line's time, UTC)
    decision_facts             what the classifier scored (the decision's category too), against
                               which threshold, by which model
    source_type                [report] dsa_source_type (SOURCE_VOLUNTARY: own initiative)
    automated_detection        "Yes": a classifier found the content
    automated_decision         [report] dsa_automated_decision (AUTOMATED_DECISION_FULLY: no
                               human confirmed the decision before it applied)
    puid                       [report] dsa_puid_prefix + post id + run id, in [A-Za-z0-9_-]
    territorial_scope, content_language, decision_ground_reference_url: from [report] when set

`validate` checks a statement against the field rules of the API's documentation (required
fields, allowed values, conditional fields, lengths, date formats and ranges, the puid's
characters); the export refuses to write a statement that breaks one. Posts whose decision was
carried over from an earlier run (incremental jobs) are not exported again: the earlier run's
export holds their statement. That run still exists: an `--overwrite` run never carries over the
decisions of the run it replaces (state.py), it decides and exports them itself.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from moderator import records
from moderator.records import Action

# Allowed values, as the API names them (its documentation's enumerations).
DECISION_VISIBILITIES = (
    "DECISION_VISIBILITY_CONTENT_REMOVED", "DECISION_VISIBILITY_CONTENT_DISABLED",
    "DECISION_VISIBILITY_CONTENT_DEMOTED", "DECISION_VISIBILITY_CONTENT_AGE_RESTRICTED",
    "DECISION_VISIBILITY_CONTENT_INTERACTION_RESTRICTED", "DECISION_VISIBILITY_CONTENT_LABELLED",
    "DECISION_VISIBILITY_OTHER",
)
DECISION_MONETARIES = ("DECISION_MONETARY_SUSPENSION", "DECISION_MONETARY_TERMINATION", "DECISION_MONETARY_OTHER")
DECISION_PROVISIONS = (
    "DECISION_PROVISION_PARTIAL_SUSPENSION", "DECISION_PROVISION_TOTAL_SUSPENSION",
    "DECISION_PROVISION_PARTIAL_TERMINATION", "DECISION_PROVISION_TOTAL_TERMINATION",
)
DECISION_ACCOUNTS = ("DECISION_ACCOUNT_SUSPENDED", "DECISION_ACCOUNT_TERMINATED")
ACCOUNT_TYPES = ("ACCOUNT_TYPE_BUSINESS", "ACCOUNT_TYPE_PRIVATE")
DECISION_GROUNDS = ("DECISION_GROUND_ILLEGAL_CONTENT", "DECISION_GROUND_INCOMPATIBLE_CONTENT")
YES_NO = ("Yes", "No")
CONTENT_TYPES = (
    "CONTENT_TYPE_APP", "CONTENT_TYPE_AUDIO", "CONTENT_TYPE_IMAGE", "CONTENT_TYPE_PRODUCT",
    "CONTENT_TYPE_SYNTHETIC_MEDIA", "CONTENT_TYPE_TEXT", "CONTENT_TYPE_VIDEO", "CONTENT_TYPE_OTHER",
)
CATEGORIES = (
    "STATEMENT_CATEGORY_ANIMAL_WELFARE", "STATEMENT_CATEGORY_DATA_PROTECTION_AND_PRIVACY_VIOLATIONS",
    "STATEMENT_CATEGORY_ILLEGAL_OR_HARMFUL_SPEECH", "STATEMENT_CATEGORY_INTELLECTUAL_PROPERTY_INFRINGEMENTS",
    "STATEMENT_CATEGORY_NEGATIVE_EFFECTS_ON_CIVIC_DISCOURSE_OR_ELECTIONS",
    "STATEMENT_CATEGORY_NON_CONSENSUAL_BEHAVIOUR", "STATEMENT_CATEGORY_PORNOGRAPHY_OR_SEXUALIZED_CONTENT",
    "STATEMENT_CATEGORY_PROTECTION_OF_MINORS", "STATEMENT_CATEGORY_RISK_FOR_PUBLIC_SECURITY",
    "STATEMENT_CATEGORY_SCAMS_AND_FRAUD", "STATEMENT_CATEGORY_SELF_HARM",
    "STATEMENT_CATEGORY_SCOPE_OF_PLATFORM_SERVICE", "STATEMENT_CATEGORY_UNSAFE_AND_ILLEGAL_PRODUCTS",
    "STATEMENT_CATEGORY_VIOLENCE",
)
# category_specification keywords; those a toxic-speech moderator may plausibly use, plus the rest
# of the speech-related ones. (The API knows more, for other categories: products, IP, minors...)
KEYWORDS = (
    "KEYWORD_DEFAMATION", "KEYWORD_DISCRIMINATION", "KEYWORD_HATE_SPEECH",
    "KEYWORD_INCITEMENT_VIOLENCE_HATRED", "KEYWORD_ONLINE_BULLYING_INTIMIDATION", "KEYWORD_STALKING",
    "KEYWORD_GENDER_BASED_VIOLENCE", "KEYWORD_COORDINATED_HARM", "KEYWORD_DISINFORMATION",
    "KEYWORD_MISINFORMATION", "KEYWORD_NUDITY", "KEYWORD_ADULT_SEXUAL_MATERIAL", "KEYWORD_SELF_MUTILATION",
    "KEYWORD_SUICIDE", "KEYWORD_OTHER",
)
# The statement category of each classifier category (records.CATEGORIES) that has a category of its
# own, with the category_specification keywords that fit it; insults and obscenity are what
# [report] dsa_category describes (illegal or harmful speech by default) and keep it. The API's
# violence keywords name coordinated harm, gender-based violence, human exploitation and trafficking,
# and general calls to violence or hatred: a toxicity classifier tells none of these apart from a
# threat against one person, so a threat's statement sends no keyword rather than a wrong one.
CATEGORY_STATEMENTS = {
    "threat": ("STATEMENT_CATEGORY_VIOLENCE", ()),
    "identity_attack": ("STATEMENT_CATEGORY_ILLEGAL_OR_HARMFUL_SPEECH", ("KEYWORD_HATE_SPEECH",)),
    "sexual": ("STATEMENT_CATEGORY_PORNOGRAPHY_OR_SEXUALIZED_CONTENT", ("KEYWORD_ADULT_SEXUAL_MATERIAL",)),
}
SOURCE_TYPES = ("SOURCE_ARTICLE_16", "SOURCE_TRUSTED_FLAGGER", "SOURCE_TYPE_OTHER_NOTIFICATION", "SOURCE_VOLUNTARY")
AUTOMATED_DECISIONS = ("AUTOMATED_DECISION_FULLY", "AUTOMATED_DECISION_PARTIALLY", "AUTOMATED_DECISION_NOT_AUTOMATED")
# territorial_scope: the EU member states and the other EEA countries.
EEA_COUNTRIES = (
    "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU", "IE", "IT", "LT",
    "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK", "IS", "LI", "NO",
)
# content_language: ISO 639-1, upper case.
LANGUAGES = (
    "AA", "AB", "AF", "AK", "AM", "AR", "AS", "AY", "AZ", "BA", "BE", "BG", "BN", "BO", "BR", "BS", "CA",
    "CE", "CO", "CS", "CY", "DA", "DE", "DV", "DZ", "EL", "EN", "EO", "ES", "ET", "EU", "FA", "FF", "FI",
    "FJ", "FO", "FR", "FY", "GA", "GD", "GL", "GN", "GU", "HA", "HE", "HI", "HR", "HT", "HU", "HY", "ID",
    "IG", "IS", "IT", "JA", "JV", "KA", "KK", "KL", "KM", "KN", "KO", "KS", "KU", "KY", "LA", "LB", "LN",
    "LO", "LT", "LV", "MG", "MI", "MK", "ML", "MN", "MR", "MS", "MT", "MY", "NB", "NE", "NL", "NN", "NO",
    "NY", "OC", "OM", "OR", "PA", "PL", "PS", "PT", "QU", "RM", "RO", "RU", "RW", "SA", "SC", "SD", "SE",
    "SI", "SK", "SL", "SM", "SN", "SO", "SQ", "SR", "ST", "SU", "SV", "SW", "TA", "TE", "TG", "TH", "TI",
    "TK", "TL", "TN", "TO", "TR", "TS", "TT", "UG", "UK", "UR", "UZ", "VI", "WO", "XH", "YI", "YO", "ZH",
    "ZU",
)

MAX_LENGTHS = {
    "decision_visibility_other": 500, "decision_monetary_other": 500, "category_specification_other": 500,
    "decision_ground_reference_url": 500, "illegal_content_legal_ground": 500,
    "illegal_content_explanation": 2000, "incompatible_content_ground": 500,
    "incompatible_content_explanation": 2000, "content_type_other": 500, "decision_facts": 5000,
    "source_identity": 500, "puid": 500,
}
PUID = re.compile(r"[A-Za-z0-9_-]+")
DATES = {  # field: (earliest, latest), format YYYY-MM-DD
    "content_date": ("2000-01-01", "2038-01-01"),
    "application_date": ("2020-01-01", "2038-01-01"),
    "end_date_account_restriction": (None, "2038-01-01"),
    "end_date_monetary_restriction": (None, "2038-01-01"),
    "end_date_service_restriction": (None, "2038-01-01"),
    "end_date_visibility_restriction": (None, "2038-01-01"),
}
REQUIRED = ("decision_ground", "content_type", "category", "content_date", "application_date", "decision_facts",
            "source_type", "automated_detection", "automated_decision", "puid")
FIELDS = frozenset(
    REQUIRED + tuple(MAX_LENGTHS) + tuple(DATES) + (
        "decision_visibility", "decision_monetary", "decision_provision", "decision_account", "account_type",
        "category_specification", "category_addition", "incompatible_content_illegal", "territorial_scope",
        "content_language",
    )
)


def _date(value: Any) -> dt.date | None:
    if not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        return None


def validate(sor: dict[str, Any]) -> list[str]:
    """The field rules a statement breaks, one message each; [] for a valid statement."""
    errors: list[str] = []

    def one_of(name: str, allowed: tuple[str, ...], nullable: bool = False) -> None:
        value = sor.get(name)
        if value is None:
            if not nullable:
                errors.append(f"{name}: required")
        elif value not in allowed:
            errors.append(f"{name}: {value!r} is not one of the allowed values")

    def list_of(name: str, allowed: tuple[str, ...], required: bool = False) -> None:
        value = sor.get(name)
        if value is None:
            if required:
                errors.append(f"{name}: required")
            return
        if not isinstance(value, list) or (required and not value):
            errors.append(f"{name}: must be a non-empty list" if required else f"{name}: must be a list")
            return
        bad = [v for v in value if v not in allowed]
        if bad:
            errors.append(f"{name}: {bad[0]!r} is not one of the allowed values")
        if len(set(value)) != len(value):
            errors.append(f"{name}: holds a value twice")

    for name in sorted(set(sor) - FIELDS):
        errors.append(f"{name}: not a field of the statement of reasons API")
    for name in REQUIRED:
        if sor.get(name) in (None, "", []):
            errors.append(f"{name}: required")
    restrictions = ("decision_visibility", "decision_monetary", "decision_provision", "decision_account")
    if all(sor.get(name) in (None, []) for name in restrictions):
        errors.append("decision_visibility: required when decision_monetary, decision_provision and "
                      "decision_account are all empty")
    list_of("decision_visibility", DECISION_VISIBILITIES)
    if "DECISION_VISIBILITY_OTHER" in (sor.get("decision_visibility") or []) and not sor.get("decision_visibility_other"):
        errors.append("decision_visibility_other: required when decision_visibility holds DECISION_VISIBILITY_OTHER")
    one_of("decision_monetary", DECISION_MONETARIES, nullable=True)
    if sor.get("decision_monetary") == "DECISION_MONETARY_OTHER" and not sor.get("decision_monetary_other"):
        errors.append("decision_monetary_other: required when decision_monetary is DECISION_MONETARY_OTHER")
    one_of("decision_provision", DECISION_PROVISIONS, nullable=True)
    one_of("decision_account", DECISION_ACCOUNTS, nullable=True)
    one_of("account_type", ACCOUNT_TYPES, nullable=True)
    list_of("category_specification", KEYWORDS)
    one_of("decision_ground", DECISION_GROUNDS, nullable=True)  # "required" is reported above
    ground = sor.get("decision_ground")
    grounds = {
        "DECISION_GROUND_ILLEGAL_CONTENT": ("illegal_content_legal_ground", "illegal_content_explanation"),
        "DECISION_GROUND_INCOMPATIBLE_CONTENT": ("incompatible_content_ground", "incompatible_content_explanation"),
    }
    for name, needed in grounds.items():
        for field_name in needed:
            if ground == name and not sor.get(field_name):
                errors.append(f"{field_name}: required when decision_ground is {name}")
            if ground != name and field_name in sor:
                errors.append(f"{field_name}: only for decision_ground {name}")
    if "incompatible_content_illegal" in sor:
        if ground != "DECISION_GROUND_INCOMPATIBLE_CONTENT":
            errors.append("incompatible_content_illegal: only for decision_ground DECISION_GROUND_INCOMPATIBLE_CONTENT")
        one_of("incompatible_content_illegal", YES_NO)
    list_of("content_type", CONTENT_TYPES, required=True)
    if "CONTENT_TYPE_OTHER" in (sor.get("content_type") or []) and not sor.get("content_type_other"):
        errors.append("content_type_other: required when content_type holds CONTENT_TYPE_OTHER")
    one_of("category", CATEGORIES, nullable=True)
    list_of("category_addition", CATEGORIES)
    list_of("territorial_scope", EEA_COUNTRIES)
    one_of("content_language", LANGUAGES, nullable=True)
    for name, (earliest, latest) in DATES.items():
        if sor.get(name) is None:
            continue
        day = _date(sor[name])
        if day is None:
            errors.append(f"{name}: {sor[name]!r} is not a date written YYYY-MM-DD")
        elif (earliest and day < dt.date.fromisoformat(earliest)) or day > dt.date.fromisoformat(latest):
            errors.append(f"{name}: {sor[name]} is outside {earliest or 'any date'}..{latest}")
    one_of("source_type", SOURCE_TYPES, nullable=True)
    one_of("automated_detection", YES_NO, nullable=True)
    one_of("automated_decision", AUTOMATED_DECISIONS, nullable=True)
    for name, limit in MAX_LENGTHS.items():
        value = sor.get(name)
        if value is not None and (not isinstance(value, str) or len(value) > limit):
            errors.append(f"{name}: must be text of at most {limit} characters")
    puid = sor.get("puid")
    if isinstance(puid, str) and puid and not PUID.fullmatch(puid):
        errors.append("puid: may hold only letters, digits, '-' and '_'")
    return errors


def puid(prefix: str, post_id: str, run_id: str) -> str:
    """A statement's platform unique identifier: prefix, post id and run id, in [A-Za-z0-9_-].

    Characters outside that set become '_', and a short hash of the original id is added when any
    had to be replaced, so that two ids that differ only there keep distinct puids. The run id
    makes it unique when a later run decides the same post again (its text changed).
    """
    clean = re.sub(r"[^A-Za-z0-9_-]", "_", post_id)
    if clean != post_id:
        clean += "-" + hashlib.sha256(post_id.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return f"{prefix}{clean}-{re.sub(r'[^A-Za-z0-9_-]', '_', run_id)}"[:500]


def decision_category(line: dict[str, Any]) -> tuple[str, float] | None:
    """The category a decision is about, with its score: the one its reason names (category_threat),
    else the one it scored highest in at or above the category threshold; None for a classifier
    without categories, or a post under the threshold in all of them."""
    scores = records.categories_of(line.get("scores"))
    named = next((c for c in scores if line.get("reason") == records.category_reason(c)), None)
    if named is not None:
        return named, scores[named]
    return records.strongest_category(scores, _category_threshold(line))


def _category_threshold(line: dict[str, Any]) -> float:
    return records.category_threshold(line.get("thresholds"))


def statement_category(line: dict[str, Any], settings: Any) -> tuple[str, tuple[str, ...]]:
    """The statement's category and category_specification keywords (see CATEGORY_STATEMENTS)."""
    default = (settings.dsa_category, tuple(settings.dsa_category_specification))
    found = decision_category(line) if settings.dsa_category_from_scores else None
    return default if found is None else CATEGORY_STATEMENTS.get(found[0], default)


def _score_of(category: str, score: float) -> str:
    return f"{score:.3f} for {category.replace('_', ' ')} ({records.CATEGORY_HELP[category]})"


def _category_facts(line: dict[str, Any]) -> str:
    """The decision's category, for a decision that has one and whose reason did not already say it."""
    found = decision_category(line)
    if found is None or line.get("reason") == records.category_reason(found[0]):
        return ""
    return (f" The classifier scored it {_score_of(*found)}, its highest category, at or above the category "
            f"threshold of {_category_threshold(line)}.")


def _removal_facts(line: dict[str, Any], thresholds: dict[str, Any]) -> str:
    """Why a post was removed, from its audit line's reason (records.REASONS)."""
    reason = line.get("reason")
    found = decision_category(line)
    if found is not None and reason == records.category_reason(found[0]):
        return (f"at or above the rewrite threshold of {thresholds.get('rewrite_threshold')}, and "
                f"{_score_of(*found)}, at or above the category threshold of {_category_threshold(line)}. The "
                "policy does not rewrite posts in this category: a rewrite would keep the harm in politer words. "
                "The post was removed without human review.")
    if reason == "not_rewritable":
        p = line.get("unrewritable")
        judged = f" (probability {p:.3f})" if isinstance(p, (int, float)) else ""
        tried = line.get("candidates")
        if isinstance(tried, int) and tried > 0:  # likely not rewritable: tried first (policy.py)
            return (f"at or above the rewrite threshold of {thresholds.get('rewrite_threshold')}, and an automated "
                    f"rewritability model judged{judged} that its meaning itself is likely abusive; none of the "
                    f"{tried} automated rewrites tried passed verification, so that no rewrite could keep it "
                    "without the abuse. The post was removed without human review.")
        return (f"at or above the rewrite threshold of {thresholds.get('rewrite_threshold')}, and an automated "
                f"rewritability model judged{judged} that its meaning itself is abusive, so that no rewrite could "
                "keep it without the abuse. The post was removed without human review.")
    if reason in records.REWRITE_FAILURES:
        return (f"at or above the rewrite threshold of {thresholds.get('rewrite_threshold')}. None of the automated "
                f"rewrites passed verification ({reason}), and the policy removes such posts. The post was removed "
                "without human review.")
    return (f"at or above the removal threshold of {thresholds.get('remove_threshold')}. The post was removed without "
            "human review.")


def statement(line: dict[str, Any], settings: Any, classifier_sha256: str | None,
              content_date: str | None) -> dict[str, Any]:
    """The statement of reasons for one `remove` or `rewrite` audit line.

    `settings` is the `[report]` section (`config.ReportConfig`); `content_date` the post's date
    (YYYY-MM-DD), or None to use the decision's date.
    """
    action = line["action"]
    decided = line["time"][:10]
    thresholds = line.get("thresholds") or {}
    model = f"toxicity classifier sha256 {classifier_sha256[:12]}" if classifier_sha256 else "toxicity classifier"
    if action == Action.REMOVE:
        visibility = ["DECISION_VISIBILITY_CONTENT_REMOVED"]
        facts = f"An automated {model} scored the post {line['toxicity']:.3f} for toxicity, " + _removal_facts(line, thresholds)
    elif action == Action.REWRITE:
        visibility = ["DECISION_VISIBILITY_OTHER"]
        sentences = line.get("rewritten_sentences")
        what = (f"{sentences} of its sentences" if isinstance(sentences, int) and sentences > 1 else "its toxic part")
        facts = (f"An automated {model} scored the post {line['toxicity']:.3f} for toxicity, at or above the "
                 f"rewrite threshold of {thresholds.get('rewrite_threshold')}. An automated rewriter replaced "
                 f"{what} with a version without the toxic language; the rewritten post scored "
                 f"{line['rewrite_toxicity']:.3f} for toxicity and {line['similarity']:.3f} in meaning similarity "
                 "to the original; only that version is shown.")
    else:
        raise ValueError(f"no statement of reasons for action {action!r}")
    facts += _category_facts(line)
    sor: dict[str, Any] = {"decision_visibility": visibility}
    if action == Action.REWRITE:
        sor["decision_visibility_other"] = settings.dsa_visibility_other_rewrite
    sor["decision_ground"] = settings.dsa_decision_ground
    if settings.dsa_decision_ground_reference_url:
        sor["decision_ground_reference_url"] = settings.dsa_decision_ground_reference_url
    explanation = f"{settings.dsa_explanation} {facts}"[:2000]
    if settings.dsa_decision_ground == "DECISION_GROUND_ILLEGAL_CONTENT":
        sor.update(illegal_content_legal_ground=settings.dsa_legal_ground, illegal_content_explanation=explanation)
    else:
        sor.update(incompatible_content_ground=settings.dsa_incompatible_content_ground,
                   incompatible_content_explanation=explanation,
                   incompatible_content_illegal=settings.dsa_incompatible_content_illegal)
    sor["category"], keywords = statement_category(line, settings)
    if keywords:
        sor["category_specification"] = list(keywords)
    sor["content_type"] = ["CONTENT_TYPE_TEXT"]
    if settings.dsa_content_language:
        sor["content_language"] = settings.dsa_content_language
    sor["content_date"] = content_date or decided
    sor["application_date"] = decided
    if settings.dsa_territorial_scope:
        sor["territorial_scope"] = list(settings.dsa_territorial_scope)
    sor["decision_facts"] = facts
    sor["source_type"] = settings.dsa_source_type
    sor["automated_detection"] = "Yes"
    sor["automated_decision"] = settings.dsa_automated_decision
    sor["puid"] = puid(settings.dsa_puid_prefix, str(line["id"]), str(line["run_id"]))
    return sor


# ---------------------------------------------------------------------------------------------------
# The export


def _day(value: Any) -> str | None:
    """A post's date as YYYY-MM-DD from a date, a timestamp, an ISO string or epoch seconds."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return (value.astimezone(dt.timezone.utc) if value.tzinfo else value).date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return dt.datetime.fromtimestamp(value, dt.timezone.utc).date().isoformat()
    if isinstance(value, str):
        text = value.strip()
        try:
            moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return text[:10] if _date(text[:10]) else None
        return _day(moment)
    return None


def content_dates(run_dir: Any, column: str) -> Iterator[tuple[str, str | None]]:
    """(post id, date) for each row of a run's output, in order: the output holds the input's columns."""
    import pyarrow.parquet as pq

    from moderator.errors import InputError
    from moderator.rundir import OUTPUT

    parts = sorted((run_dir / OUTPUT).glob("part-*"))
    for part in parts:
        if part.suffix == ".parquet":
            file = pq.ParquetFile(part)
            if column not in file.schema_arrow.names:
                raise InputError(f"{part}: has no column {column!r} ([report] dsa_content_date_column)")
            for batch in file.iter_batches(columns=[column, records.ANNOTATION]):
                ids = batch.column(records.ANNOTATION).field("id").to_pylist()
                yield from zip(ids, (_day(v) for v in batch.column(column).to_pylist()))
        else:
            import json

            with part.open("rb") as handle:
                for raw in handle:
                    row = json.loads(raw)
                    if column not in row:
                        raise InputError(f"{part}: a row has no {column!r} ([report] dsa_content_date_column)")
                    yield row[records.ANNOTATION]["id"], _day(row[column])


@dataclass
class Export:
    statements: int = 0
    by_action: dict[str, int] = field(default_factory=dict)
    carried_over: int = 0  # decisions carried over from earlier runs: not exported again
    undated: int = 0  # statements whose content_date is the decision date (no date known)


def export(run_dirs: list[Any], settings: Any, path: Any, file_mode: int = 0o600) -> Export:
    """Write one statement of reasons per remove/rewrite decision of `run_dirs` to `path` (JSONL).

    Every statement is validated before it is written; the first invalid one stops the export
    (ConfigError naming the field: the [report] settings produced it), leaving no file behind.
    """
    import json

    from moderator.errors import ConfigError, InputError
    from moderator.report import audit_lines
    from moderator.rundir import AUDIT, RunDir, atomic_file

    result = Export()
    with atomic_file(path, file_mode) as out:
        for run_dir in run_dirs:
            manifest = RunDir(run_dir).finished() or {}
            classifier = ((manifest.get("models") or {}).get("classifier") or {}).get("sha256")
            dates = content_dates(run_dir, settings.dsa_content_date_column) if settings.dsa_content_date_column else None
            for line in audit_lines(run_dir / AUDIT):
                action = line.get("action")
                content_date = None
                if dates is not None and action != "quarantine":
                    post_id, content_date = next(dates, (None, None))
                    if post_id != line.get("id"):
                        raise InputError(f"{run_dir}: the output's rows do not follow its audit log (post "
                                         f"{line.get('id')!r} in the log, {post_id!r} in the output)")
                if action not in (Action.REMOVE, Action.REWRITE):
                    continue
                if line.get("carried_from"):
                    result.carried_over += 1
                    continue
                sor = statement(line, settings, classifier, content_date)
                problems = validate(sor)
                if problems:
                    raise ConfigError(f"statement of reasons for post {line.get('id')!r} of {run_dir}: "
                                      f"{problems[0]}" + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
                result.undated += content_date is None
                out.write(json.dumps(sor, ensure_ascii=False) + "\n")
                result.statements += 1
                result.by_action[action] = result.by_action.get(action, 0) + 1
    return result
