"""Rewrite: ask a LoRA-adapted decoder for neutral versions of the toxic parts of the posts the policy
sent to `rewrite`.

Only rows whose action is `rewrite` are touched, and of those only their *targets* (policy.py): the
toxic sentences of a long post, or the whole post. Every target gets up to `[rewriter] candidates`
rewrites (the first greedy, the others sampled with a fixed seed); `verify` picks among them and
puts the post back together. By default (`sample_when = "greedy_fails"`) the greedy rewrites of a
batch come first, in one engine call, and are screened with verify's candidate check; only the
targets whose greedy rewrite fails get the sampled ones, in a second call (where verify will also
judge a rewrite by rewritability, for a post likely not rewritable as a whole and tried first, so does
the screen). With `always`, greedy and sampled rewrites of every target come from one call. A target
whose prompt would not fit the engine's context is never handed to the engine: its post is sent to review
(`too_long_to_rewrite`), or, with `long_posts = "truncate"`, the target's start is rewritten and the
reason says so (`rewritten_truncated`).
"""

from __future__ import annotations

import logging
from typing import Callable

import pyarrow as pa

from moderator import models, prompts, records
from moderator.config import RewriterConfig, RuntimeConfig
from moderator.engines import Engine, build_engine
from moderator.errors import ModelError
from moderator.records import Action

log = logging.getLogger(__name__)

# (originals, rewrites, guarded) -> whether each rewrite passes; guarded: per target, whether its post is one
# verify also judges by rewritability (Verify.passes and Verify.hopeless_rows)
Screen = Callable[[list[str], list[str], list[bool]], list[bool]]
Guarded = Callable[[pa.RecordBatch], list[bool]]  # per row of a batch: whether its targets are guarded

TRUNCATION_MARGIN = 4  # tokens kept free when cutting a post, for merges at the cut


def resolve_models(config: RewriterConfig) -> tuple[models.ModelRef, models.ModelRef | None]:
    """The base and adapter a run uses.

    With neither configured, the adapter bundled with moderator and the base its adapter_config.json
    names. With only an adapter, that adapter's base. With only a base, the base alone.
    """
    adapter_ref = config.adapter or (models.bundled("rewriter") if config.base is None else None)
    adapter = models.resolve(adapter_ref, "adapter") if adapter_ref else None
    if adapter is not None and not models.is_peft_adapter(adapter.path):
        raise ModelError(f"adapter {adapter.ref!r}: no adapter_config.json; is it a PEFT adapter folder?")
    base_ref = config.base
    if base_ref is None and adapter is not None:
        base_ref = models.read_json(adapter.path / "adapter_config.json").get("base_model_name_or_path")
        if not base_ref:
            raise ModelError(f"adapter {adapter.ref!r} does not name its base model; pass --rewriter-base")
    return models.resolve(base_ref, "rewriter base"), adapter


class Rewriter:
    def __init__(self, config: RewriterConfig, runtime: RuntimeConfig, engine: Engine | None = None) -> None:
        self.config = config
        self.base, self.adapter = resolve_models(config)
        device = models.pick_device(runtime.device)
        models.set_threads(runtime.threads)
        self.engine = engine or build_engine(config, device, self.base, self.adapter)
        self.tokenizer = self.engine.tokenizer
        self.prompt_budget = self.engine.max_model_len - config.max_new_tokens
        self._overhead = self._count(prompts.build_prompt("x")) - self._count("x", special=False)
        log.info("rewriter: %s engine, base %s, adapter %s", self.engine.name, self.base.ref,
                 self.adapter.ref if self.adapter else None)

    def _count(self, text: str, special: bool = True) -> int:
        return len(self.tokenizer(text, add_special_tokens=special)["input_ids"])

    def fit(self, post: str) -> tuple[str | None, bool]:
        """(prompt, truncated) for a post; prompt is None when it cannot fit and we may not cut it."""
        prompt = prompts.build_prompt(post)
        if self._count(prompt) <= self.prompt_budget:
            return prompt, False
        if self.config.long_posts == "review":
            return None, False
        ids = self.tokenizer(prompts.normalize_post(post), add_special_tokens=False)["input_ids"]
        keep = self.prompt_budget - self._overhead - TRUNCATION_MARGIN
        while keep > 0:
            prompt = prompts.build_prompt(self.tokenizer.decode(ids[:keep], skip_special_tokens=True))
            if self._count(prompt) <= self.prompt_budget:
                return prompt, True
            keep -= TRUNCATION_MARGIN
        return None, False

    def rewrite(self, posts: list[str]) -> list[str]:
        """Rewrites for posts that fit (no policy, no checks): for evaluation and tests."""
        return [prompts.parse_completion(g.text) for g in self.engine.generate([prompts.build_prompt(p) for p in posts])]

    def candidates(self, prompts_: list[str], originals: list[str], screen: Screen | None = None,
                   guarded: list[bool] | None = None) -> list[list[str]]:
        """The distinct candidate rewrites of each prompt's target, the greedy one first. With `screen`
        (and `sample_when = "greedy_fails"`), samples only for the targets whose greedy rewrite fails it
        (`guarded`: per target, passed on to the screen; none by default)."""
        config = self.config
        n = config.candidates
        if screen is None or n <= 1 or config.sample_when == "always":
            rows = self.engine.candidates(prompts_, n, config.candidate_temperature, config.seed)
            return [_distinct(prompts.parse_completion(g.text) for g in row) for row in rows]
        out = [[prompts.parse_completion(g.text)] for g in self.engine.generate(prompts_)]
        flags = guarded if guarded is not None else [False] * len(prompts_)
        failed = [j for j, passed in enumerate(screen(originals, [row[0] for row in out], flags)) if not passed]
        if failed:
            more = self.engine.samples([prompts_[j] for j in failed], n - 1, config.candidate_temperature, config.seed)
            for j, row in zip(failed, more):
                out[j] = _distinct([out[j][0], *(prompts.parse_completion(g.text) for g in row)])
        return out

    def __call__(self, batch: pa.RecordBatch, screen: Screen | None = None,
                 guarded: Guarded | None = None) -> pa.RecordBatch:
        """The rewrite step: candidates for the targets of every `rewrite` row (see `candidates`);
        `guarded` says which rows' targets the screen also judges by rewritability."""
        rows = records.rows_with_action(batch, Action.REWRITE)
        candidates: list[list[list[str]] | None] = [None] * batch.num_rows
        if not rows:
            return records.set_column(batch, records.REWRITE_CANDIDATES, pa.array(candidates, CANDIDATES_TYPE))
        texts = batch.column(records.TEXT).to_pylist()
        targets = records.targets(batch)
        actions = batch.column(records.ACTION).to_pylist()
        reasons = batch.column(records.REASON).to_pylist()
        todo: list[tuple[int, int, str]] = []  # (row, target, prompt)
        originals: list[str] = []
        hopeless = guarded(batch) if guarded is not None else [False] * batch.num_rows
        for i in rows:
            pieces = [texts[i][t["start"]:t["end"]] for t in targets[i]]
            fitted = [self.fit(piece) for piece in pieces]
            if any(prompt is None for prompt, _ in fitted):
                actions[i], reasons[i] = Action.REVIEW, "too_long_to_rewrite"
                continue
            if any(truncated for _, truncated in fitted):
                reasons[i] = "rewritten_truncated"
            todo.extend((i, k, prompt) for k, (prompt, _) in enumerate(fitted))
            originals.extend(pieces)
        if todo:
            generated = self.candidates([prompt for _, _, prompt in todo], originals, screen,
                                        [hopeless[i] for i, _, _ in todo])
            for (i, k, _), row in zip(todo, generated):
                if candidates[i] is None:
                    candidates[i] = [[] for _ in targets[i]]
                candidates[i][k] = row
        batch = records.set_column(batch, records.REWRITE_CANDIDATES, pa.array(candidates, CANDIDATES_TYPE))
        batch = records.set_column(batch, records.ACTION, pa.array(actions, pa.string()))
        return records.set_column(batch, records.REASON, pa.array(reasons, pa.string()))


CANDIDATES_TYPE = pa.list_(pa.list_(pa.string()))  # per row, per target: the distinct candidates


def _distinct(texts) -> list[str]:  # type: ignore[no-untyped-def]
    """The texts in order, each once."""
    return list(dict.fromkeys(texts))
