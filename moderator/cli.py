"""The `moderate` command. Click lives here only: parse, build the config, call the library, and
turn the library's errors into one-line messages and documented exit codes.

    moderate batch posts.parquet
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import click

from moderator import __version__
from moderator.config import DEVICES, ENGINES, EXECUTORS, FORMATS, ON_REWRITE_FAILURE, JobConfig, describe
from moderator.errors import EXIT_CODES, PARTIAL_EXIT_CODE, AuditChainError, ModeratorError, OutputError

log = logging.getLogger("moderator")


def _exit_code_help(codes: dict[int, str]) -> str:
    return "\b\nExit codes:\n" + "\n".join(f"  {code}  {text}" for code, text in codes.items())


EXIT_CODE_HELP = _exit_code_help({c: t for c, t in EXIT_CODES.items() if c != AuditChainError.exit_code})
VERIFY_EXIT_CODE_HELP = _exit_code_help({  # verify never exits 7: partial is about a batch run
    0: "every audit log is intact (and, with several runs, each continues the one before), every manifest's "
       "counts match its log, and every output part is as the run wrote it",
    1: EXIT_CODES[1],
    2: EXIT_CODES[2],
    3: "input error: a run folder, its finished manifest.json or its audit.jsonl is missing or unreadable",
    AuditChainError.exit_code: "a run was changed: an audit line edited, deleted, inserted or reordered, the log "
                               "cut short, its manifest's audit section or counts changed, or an output part "
                               "cut, edited, removed or added",
})


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("moderate: %(message)s" if not verbose else "%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    log.setLevel(level)
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "INFO" if verbose > 1 else "ERROR")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:
        pass


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="moderate")
@click.option("-v", "--verbose", count=True, help="More log output on stderr (-vv: also the engines').")
@click.option("--debug", is_flag=True, help="Show the full traceback when something fails.")
@click.pass_context
def cli(ctx: click.Context, verbose: int, debug: bool) -> None:
    """Batch content moderation: score posts for toxicity, rewrite toxic ones, log every decision.

    \b
    Examples:
      moderate batch posts.parquet
      moderate batch dump/ --out run/ --config job.toml
      moderate show posts.moderated
      moderate audit verify posts.moderated
      moderate config > job.toml
    """
    ctx.ensure_object(dict)
    ctx.obj.update(verbose=verbose, debug=debug)


def _overrides(**sections: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Only the flags the user actually gave (None means: not given), grouped by config section."""
    out = {}
    for section, values in sections.items():
        given = {k: v for k, v in values.items() if v is not None and v != ()}
        if given:
            out[section] = given
    return out


@cli.command(epilog=EXIT_CODE_HELP)
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@click.option("-o", "--out", type=click.Path(path_type=Path), help="Run folder. Default: INPUT.moderated/ beside the first input.")
@click.option("-c", "--config", "config_file", type=click.Path(path_type=Path), envvar="MODERATOR_CONFIG",
              help="TOML file with settings (see `moderate config`); flags override it.")
@click.option("--text-column", help="Column or key holding the post text. [default: text]")
@click.option("--id-column", help="Column or key holding the post id. [default: id]")
@click.option("--format", "output_format", type=click.Choice(FORMATS), help="Output format. [default: auto: like the input]")
@click.option("--classifier", envvar="MODERATOR_CLASSIFIER", help="Classifier folder or hub id. [default: bundled model]")
@click.option("--toxic-label", "toxic_labels", multiple=True, help="A classifier label that counts as toxic (repeatable).")
@click.option("--rewriter-base", envvar="MODERATOR_REWRITER_BASE", help="Decoder base folder or hub id. [default: bundled]")
@click.option("--adapter", envvar="MODERATOR_ADAPTER", help="PEFT LoRA adapter folder for the base. [default: bundled]")
@click.option("--engine", type=click.Choice(ENGINES), envvar="MODERATOR_ENGINE", help="Rewrite engine. [default: auto]")
@click.option("--rewrite/--no-rewrite", default=None,
              help="--no-rewrite: classify and decide only; posts that would be rewritten go to review.")
@click.option("--rewrite-threshold", type=click.FloatRange(0, 1), help="Toxicity from which posts are rewritten. [default: 0.5]")
@click.option("--remove-threshold", type=click.FloatRange(0, 1),
              help="Opt-in: toxicity from which posts are removed without trying to rewrite them. [default: off]")
@click.option("--on-rewrite-failure", type=click.Choice(ON_REWRITE_FAILURE),
              help="Toxic posts for which no rewrite passes verification. [default: review]")
@click.option("--candidates", type=click.IntRange(1), help="Rewrites tried per toxic sentence: the greedy one, "
              "then samples where it fails verification ([rewriter] sample_when). [default: 4]")
@click.option("--batch-size", type=click.IntRange(1), help="Rows per record batch. [default: 512]")
@click.option("--device", type=click.Choice(DEVICES), envvar="MODERATOR_DEVICE", help="Where models run. [default: auto]")
@click.option("--threads", type=click.IntRange(0), envvar="MODERATOR_THREADS", help="CPU threads for torch (0: automatic).")
@click.option("--executor", type=click.Choice(EXECUTORS), envvar="MODERATOR_EXECUTOR",
              help="local: this process; ray: Ray Data (pip install 'moderator[ray]'). [default: local]")
@click.option("--ray-address", envvar="MODERATOR_RAY_ADDRESS", metavar="ADDR",
              help="With --executor ray: the cluster to join (auto, or ray://HOST:10001). [default: start a local Ray]")
@click.option("--audit-text/--no-audit-text", default=None,
              help="Also store each post's text and its rewrite in audit.jsonl. [default: hashes only]")
@click.option("--audit-chain-from", type=click.Path(path_type=Path), metavar="PREVIOUS_RUN_DIR",
              help="Continue the audit hash chain of this earlier run of the same job. [default: new chain]")
@click.option("--max-quarantine-share", type=click.FloatRange(0, 1), metavar="SHARE",
              help="Exit 7 (partial) when more than this share of records is quarantined. [default: 0.01]")
@click.option("--state", "state_path", type=click.Path(path_type=Path), metavar="STATE.sqlite",
              help="State store for incremental runs: posts moderated before with the same text, policy and "
                   "models are carried over, not scored again. [default: off]")
@click.option("--force", is_flag=True, help="With --state: score every post again (and refresh the store).")
@click.option("--overwrite", is_flag=True, help="Replace a finished output in the run folder (refused when a later "
                                                 "run beside it continues its audit chain; see --break-chain).")
@click.option("--break-chain", is_flag=True,
              help="With --overwrite: replace the run even though later runs continue its audit chain, which then "
                   "breaks (warned; recorded in the manifest).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no summary; errors and warnings only.")
@click.pass_context
def batch(ctx: click.Context, inputs: tuple[str, ...], out: Path | None, config_file: Path | None,
          text_column: str | None, id_column: str | None, output_format: str | None, classifier: str | None,
          toxic_labels: tuple[str, ...], rewriter_base: str | None, adapter: str | None, engine: str | None,
          rewrite: bool | None, rewrite_threshold: float | None, remove_threshold: float | None,
          on_rewrite_failure: str | None, candidates: int | None, batch_size: int | None, device: str | None, threads: int | None, executor: str | None,
          ray_address: str | None, audit_text: bool | None,
          audit_chain_from: Path | None, max_quarantine_share: float | None, state_path: Path | None, force: bool,
          overwrite: bool, break_chain: bool, quiet: bool) -> None:
    """Moderate Parquet or JSONL dumps of forum posts.

    Every post is scored for toxicity, sentence by sentence. Toxic posts are rewritten first: the
    toxic sentences go to a LoRA-adapted decoder, which proposes a few rewrites of each; the best
    one that verification passes replaces the sentence and every other sentence is kept as written.
    A post whose meaning itself is abuse, a threat or hate (a small rewritability model judges) is
    removed: untried where the model is sure, else once no rewrite passed; one that no rewrite
    could fix goes to human review. The run folder gets
    the annotated posts (output/part-*.parquet or .jsonl, a `moderation` column added), an audit
    log with one line per input record (audit.jsonl), the records that could not be moderated
    (quarantine.jsonl) and a manifest (manifest.json). Audit lines are hash-chained (see
    `moderate audit verify`); files are created owner-only ([output] file_mode).

    INPUT is a .parquet, .jsonl, .jsonl.gz or .jsonl.zst file, a folder or a glob of such files,
    or - for JSONL on standard input.

    A run that was killed or failed continues from its checkpoint when the same command is run
    again (same inputs and settings; not for standard input): see "Resuming" in the README.

    \b
    Examples:
      moderate batch posts.parquet                       # -> posts.moderated/
      moderate batch 'dump/2026-11-24/*.jsonl.gz' -o runs/2026-11-24
      moderate batch posts.parquet --no-rewrite          # triage only, no decoder
      moderate batch posts.parquet --candidates 1        # greedy rewrites only (faster)
      moderate batch posts.parquet --on-rewrite-failure remove
      moderate batch posts.parquet --config job.toml --engine hf
      zcat posts.jsonl.gz | moderate batch - --out run/
      moderate batch today.parquet -o runs/2026-11-25 --audit-chain-from runs/2026-11-24
      moderate batch dump/ --max-quarantine-share 0.05   # exit 7 only above 5% quarantined
      moderate batch dump/ -o runs/today --state runs/state.sqlite   # skip posts seen before
      moderate batch dump/ --executor ray --ray-address auto   # on the Ray cluster of this machine
    """
    from moderator.pipeline import run

    _setup_logging(ctx.obj["verbose"], quiet)
    overrides = _overrides(
        input={"text_column": text_column, "id_column": id_column, "batch_size": batch_size},
        runtime={"device": device, "threads": threads, "executor": executor, "ray_address": ray_address},
        classifier={"model": classifier, "toxic_labels": toxic_labels},
        policy={"rewrite_threshold": rewrite_threshold, "remove_threshold": remove_threshold,
                "on_rewrite_failure": on_rewrite_failure},
        rewriter={"enabled": rewrite, "engine": engine, "base": rewriter_base, "adapter": adapter,
                  "candidates": candidates},
        output={"format": output_format, "audit_text": audit_text, "max_quarantine_share": max_quarantine_share,
                "audit_chain_from": None if audit_chain_from is None else str(audit_chain_from)},
        state={"path": None if state_path is None else str(state_path)},
    )
    with _errors(ctx):
        config = JobConfig.load(config_file, overrides)
        stdin = click.get_binary_stream("stdin") if "-" in inputs else None
        result = run(config, list(inputs), out, overwrite=overwrite, progress=not quiet, stdin=stdin,
                     command=["moderate", *sys.argv[1:]], force=force, break_chain=_break_chain(overwrite, break_chain))
    _report(ctx, result, config, quiet)


@cli.command("run", epilog=EXIT_CODE_HELP)
@click.argument("job_file", type=click.Path(path_type=Path), metavar="JOB.toml")
@click.option("--date", metavar="YYYY-MM-DD", help="The date to run: fills {date} in the job's inputs and names the "
                                                    "run folder. [default: today]")
@click.option("--force", is_flag=True, help="Score every post again instead of carrying over earlier decisions.")
@click.option("--overwrite", is_flag=True, help="Replace the date's finished run folder (refused when a later date "
                                                 "continues its audit chain; see --break-chain).")
@click.option("--break-chain", is_flag=True,
              help="With --overwrite: replace the date even though later dates continue its audit chain, which then "
                   "breaks (warned; recorded in the manifest).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no summary; errors and warnings only.")
@click.pass_context
def run_job(ctx: click.Context, job_file: Path, date: str | None, force: bool, overwrite: bool, break_chain: bool,
            quiet: bool) -> None:
    """Run a job file for one date: inputs, output root, settings and state in one TOML file.

    The [job] table names the inputs (paths or globs; {date} becomes the date) and the output
    root, which gets one run folder per date (OUTPUT_ROOT/YYYY-MM-DD). Every other table is a
    section of `moderate config`. Decisions are kept in OUTPUT_ROOT/state.sqlite, so posts seen on
    an earlier night are carried over, and each night's audit log continues the chain of the
    latest earlier night. Running a date again resumes it after a crash, or leaves it untouched
    when it is finished.

    --overwrite replaces a finished date, except one that a later date continues: its new audit
    log could not end at the head the later date started from, so that date's chain would break
    and `moderate audit verify` / `moderate report` would fail for it. That is refused before
    anything is written. To replace it anyway, add --break-chain (a loud warning; the manifest
    records what was replaced and whose chain broke), then re-run each later date with
    --overwrite --break-chain, oldest first, to rebuild the chain (the newest date needs no
    --break-chain). Decisions the replaced run made are scored again, not carried over, so the new
    run's DSA export holds their statements.

    \b
    Examples:
      moderate run jobs/nightly.toml                      # today
      moderate run jobs/nightly.toml --date 2026-11-24    # a given night (or a re-run)
      moderate audit verify /srv/moderation/nightly/2026-11-*   # the nights, one chain
    """
    from moderator.jobs import plan
    from moderator.pipeline import run

    _setup_logging(ctx.obj["verbose"], quiet)
    with _errors(ctx):
        job = plan(job_file, date)
        if job.previous is not None:
            log.info("continuing the audit chain of %s", job.previous)
        result = run(job.config, job.inputs, job.out, overwrite=overwrite, progress=not quiet, force=force,
                     command=["moderate", *sys.argv[1:]], break_chain=_break_chain(overwrite, break_chain))
    _report(ctx, result, job.config, quiet)


def _break_chain(overwrite: bool, break_chain: bool) -> bool:
    if break_chain and not overwrite:
        raise click.UsageError("--break-chain only goes with --overwrite")
    return break_chain


def _report(ctx: click.Context, result: Any, config: JobConfig, quiet: bool) -> None:
    """The summary on stderr, and exit code 7 (partial) when too many records were quarantined."""
    if not quiet:
        _summary(result)
    if result.partial:
        counts = result.manifest.get("counts", {})
        rows, quarantined = counts.get("input_rows", 0), counts.get("quarantined_rows", 0)
        click.echo(f"Warning: {quarantined} of {rows} records ({quarantined / rows:.1%}) were quarantined, more than "
                   f"[output] max_quarantine_share = {config.output.max_quarantine_share} allows; the output is "
                   f"complete (see {result.path / 'quarantine.jsonl'})", err=True)
        ctx.exit(PARTIAL_EXIT_CODE)


def _summary(result: Any) -> None:
    manifest = result.manifest
    if result.skipped:
        click.echo(f"{result.path}: already complete (run {manifest.get('run_id')}, finished "
                   f"{manifest.get('finished')}); left untouched. Use --overwrite to run again.", err=True)
        return
    from moderator.records import Action

    counts = manifest["counts"]
    summary = ", ".join(f"{k} {v}" for k, v in {**counts["actions"], Action.QUARANTINE: counts["quarantined_rows"]}.items())
    if counts.get("carried_over"):
        summary += f", carried over {counts['carried_over']}"
    here = manifest.get("rows_this_process", counts["input_rows"])
    if manifest.get("resumed") and here != counts["input_rows"]:
        click.echo(f"resumed from a checkpoint ({len(manifest['resumed'])}x): moderated the last {here} of "
                   f"{counts['input_rows']} posts in {manifest['timings_s']['total']:.1f} s "
                   f"({manifest['posts_per_s']} posts/s); the whole run: {summary}", err=True)
    else:
        click.echo(f"moderated {counts['input_rows']} posts in {manifest['timings_s']['total']:.1f} s "
                   f"({manifest['posts_per_s']} posts/s): {summary}", err=True)
    toxic = counts["output_rows"] - counts["actions"].get(Action.ALLOW, 0)
    if toxic:
        reasons = counts.get("reasons", {})
        why = ", ".join(f"{reason} {n}" for reason, n in sorted(reasons.items(), key=lambda kv: -kv[1])
                        if reason not in ("below_rewrite_threshold", "cleared_by_prefilter"))
        rewritten = counts["actions"].get(Action.REWRITE, 0)
        click.echo(f"toxic posts: {toxic}, published rewritten {rewritten} ({rewritten / toxic:.0%}); by reason: {why}",
                   err=True)
    click.echo(f"output: {result.path}", err=True)


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
# records.ACTIONS, spelled out: importing records (pyarrow) would slow every `moderate` command's start
@click.option("-a", "--action", "actions", multiple=True, type=click.Choice(("allow", "rewrite", "review", "remove")),
              help="Show only these actions (repeatable). [default: all]")
@click.option("-n", "--limit", type=click.IntRange(1), default=5, show_default=True, help="Posts shown per action.")
@click.pass_context
def show(ctx: click.Context, run_dir: Path, actions: tuple[str, ...], limit: int) -> None:
    """Show a finished run's counts and a few of its decisions per action.

    \b
    Examples:
      moderate show posts.moderated
      moderate show posts.moderated --action rewrite --limit 20
    """
    from moderator.records import ACTIONS
    from moderator.show import format_run

    with _errors(ctx):
        click.echo(format_run(run_dir, actions or ACTIONS, limit), nl=False)


@cli.group()
def audit() -> None:
    """Check the audit logs of finished runs.

    \b
    Examples:
      moderate audit verify posts.moderated
    """


@audit.command("verify", epilog=VERIFY_EXIT_CODE_HELP)
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path), metavar="RUN_DIR...")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with every run's result on stdout.")
@click.pass_context
def audit_verify(ctx: click.Context, run_dirs: tuple[Path, ...], as_json: bool) -> None:
    """Check that audit logs are exactly as their runs wrote them.

    Re-reads RUN_DIR/audit.jsonl in one streaming pass, re-computes every line's sha256, checks
    each line's prev_sha256 and seq, and the line count and head recorded in RUN_DIR/manifest.json.
    On the first difference it names the line and the most likely change: edited, deleted,
    inserted, reordered (swapped), truncated, chain_start (line 1 does not link to the chain
    start) or manifest (the manifest's line count changed).

    It then holds the manifest's counts (posts, per action, reason and quarantine reason) against
    the lines of the intact log (counts: a number was changed), and re-hashes and re-counts every
    output part against the manifest's sha256 and rows (output: a part cut, edited, removed or
    added). Runs written before parts were hashed are checked as far as they go, with a note on
    stderr saying what was not checkable.

    Several RUN_DIRs, oldest first, are also checked to form one chain: each run must continue
    the one before it (runs made with --audit-chain-from).

    Intact runs are listed on stdout with their head; problems go to stderr, one line each.

    \b
    Examples:
      moderate audit verify posts.moderated
      moderate audit verify runs/2026-11-24 runs/2026-11-25   # two nights, one chain
      moderate audit verify runs/* --json
    """
    import json

    from moderator.auditchain import GENESIS, verify_runs

    with _errors(ctx):
        verdicts = verify_runs(list(run_dirs))
    if as_json:
        click.echo(json.dumps({"ok": all(v.ok for v in verdicts), "runs": [v.to_dict() for v in verdicts]}, indent=2))
    for v in verdicts:
        for note in v.notes:
            click.echo(f"Note: {v.run_dir}: {note}", err=True)
        if v.problem is not None:
            click.echo(f"Error: {v.where}: {v.problem.describe()}", err=True)
        elif not as_json:
            start = "new chain" if v.chain_from == GENESIS else f"continues run {v.previous_run_id or v.chain_from}"
            click.echo(f"{v.run_dir}: intact, {v.lines} lines, head {v.head_sha256} ({start})")
    if not all(v.ok for v in verdicts):
        ctx.exit(AuditChainError.exit_code)


REPORT_EXIT_CODE_HELP = _exit_code_help({
    0: "the report files were written, and every run passes `moderate audit verify` (logs, chain, counts, parts)",
    1: EXIT_CODES[1],
    2: EXIT_CODES[2] + " (also: a statement of reasons breaks a field rule of the DSA API)",
    3: "input error: a run folder, its finished manifest.json or its audit.jsonl is missing or unreadable",
    4: "output error: a report file cannot be written",
    AuditChainError.exit_code: "the report files were written, but a run fails `moderate audit verify` (a log, "
                               "the chain between runs, a manifest's counts or an output part was changed; the "
                               "report says which and how), or a log's counts differ from its manifest",
})


@cli.command("report", epilog=REPORT_EXIT_CODE_HELP)
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path), metavar="RUN_DIR...")
@click.option("-o", "--out", "html", type=click.Path(path_type=Path), metavar="FILE.html",
              help="Write the report as one self-contained HTML file (plots embedded; prints and reads on a phone).")
@click.option("--json", "json_path", type=click.Path(path_type=Path), metavar="FILE.json",
              help="Write the summary as JSON: every number of the report.")
@click.option("--markdown", type=click.Path(path_type=Path), metavar="FILE.md", help="Write the summary as Markdown.")
@click.option("--dsa-sor", type=click.Path(path_type=Path), metavar="FILE.jsonl",
              help="Write one DSA statement of reasons per remove and rewrite decision (JSON lines, the "
                   "transparency database API's fields; see [report] dsa_* in `moderate config`).")
@click.option("-c", "--config", "config_file", type=click.Path(path_type=Path),
              help="Config or job file whose [report] table sets the title, the QA sample and the DSA fields.")
@click.option("--seed", type=int, help="Seed of the QA sample. [default: [report] seed, 0]")
@click.option("--qa-per-stratum", type=click.IntRange(1), help="QA sample size per action and reason. [default: 10]")
@click.option("--title", help="The report's title.")
@click.pass_context
def report_command(ctx: click.Context, run_dirs: tuple[Path, ...], html: Path | None, json_path: Path | None,
                   markdown: Path | None, dsa_sor: Path | None, config_file: Path | None, seed: int | None,
                   qa_per_stratum: int | None, title: str | None) -> None:
    """Report on finished runs for compliance: HTML, JSON and Markdown summaries, DSA export.

    Reads each RUN_DIR's manifest.json and audit.jsonl (streaming: logs of millions of lines are
    fine) and never runs a model. A folder of run folders (a job's output_root) stands for all
    the finished runs in it. Several runs are reported together, with the trend per run, in chain
    order: a run comes after the run whose audit chain it continues (runs of separate chains by
    start time), and each chain gets exactly the checks of `moderate audit verify` on its runs in
    that order, so a report never calls "intact" what `audit verify` rejects: when anything
    disagrees the report says so and the command exits 6.

    The report holds counts and shares by action, reason and label; toxicity score
    distributions; rewrite quality (toxicity before and after, similarity, share sent to
    review); a stratified random QA sample with a fixed seed (texts only where the run stored
    them with --audit-text); the policy thresholds; model provenance (ids, hashes, packages);
    the input files with checksums; and each audit log's hash-chain verification.

    \b
    Examples:
      moderate report posts.moderated --out report.html
      moderate report /srv/moderation/nightly --out month.html --json month.json --markdown month.md
      moderate report runs/2026-11-2* --dsa-sor statements.jsonl -c jobs/nightly.toml
    """
    from moderator import dsa, report
    from moderator.auditchain import chain_order
    from moderator.rundir import write_text_atomic

    if not any((html, json_path, markdown, dsa_sor)):
        raise click.UsageError("name at least one output: --out FILE.html, --json, --markdown or --dsa-sor")
    _setup_logging(ctx.obj["verbose"], quiet=False)
    with _errors(ctx):
        config = JobConfig.load(config_file, _overrides(report={"seed": seed, "qa_per_stratum": qa_per_stratum,
                                                                "title": title}), job_file=True)
        settings, mode = config.report, config.output.file_permissions
        runs = report.expand_runs(list(run_dirs))
        outputs = [p for p in (html, json_path, markdown) if p is not None]
        for path in [*outputs, *([dsa_sor] if dsa_sor else [])]:
            if not path.parent.is_dir():
                raise OutputError(f"{path}: its folder {path.parent} does not exist")
        summary = None
        if outputs:
            summary = report.summarize(runs, settings)
            for path, render in ((html, report.render_html), (json_path, report.render_json),
                                 (markdown, report.render_markdown)):
                if path is not None:
                    try:
                        write_text_atomic(path, render(summary), mode)
                    except OSError as exc:
                        raise OutputError(f"{path}: cannot write ({exc.strerror})") from None
                    click.echo(f"wrote {path}", err=True)
        if dsa_sor is not None:
            try:
                exported = dsa.export(runs, settings, dsa_sor, mode)
            except OSError as exc:
                raise OutputError(f"{dsa_sor}: cannot write ({exc.strerror})") from None
            carried = f"; {exported.carried_over} carried-over decisions skipped (exported by their first run)" \
                if exported.carried_over else ""
            click.echo(f"wrote {dsa_sor}: {exported.statements} statements of reasons "
                       f"({', '.join(f'{a} {n}' for a, n in sorted(exported.by_action.items())) or 'none'}){carried}",
                       err=True)
            if exported.undated:
                click.echo(f"Warning: {exported.undated} statements have content_date = the decision's date: "
                           "set [report] dsa_content_date_column to the input column holding each post's date",
                           err=True)
        # The DSA export alone is checked too: statements from a changed run must not pass silently.
        checked = summary["runs"] if summary is not None else [
            {"path": str(run_dir), "audit": audit, "matches_manifest": True}
            for run_dir, audit in report.verify_chains(chain_order(runs)).items()]
    if summary is not None:
        t = summary["totals"]
        click.echo(f"{len(runs)} run(s), {t['posts']:,} posts: " + ", ".join(
            f"{a} {v['count']:,}" for a, v in t["actions"].items()), err=True)
    failed = False
    for run in checked:
        if run["audit"]["intact"] is False:
            click.echo(f"Error: {run['path']}: fails `moderate audit verify`: {run['audit']['problem']}", err=True)
            failed = True
        elif not run["matches_manifest"]:
            click.echo(f"Error: {run['path']}: the audit log's counts differ from its manifest's", err=True)
            failed = True
    if failed:
        ctx.exit(AuditChainError.exit_code)


@cli.command("config")
@click.option("-c", "--config", "config_file", type=click.Path(path_type=Path), help="Show this file's settings merged with the defaults.")
@click.pass_context
def config_command(ctx: click.Context, config_file: Path | None) -> None:
    """Print every setting, with its value and what it does, as TOML.

    \b
    Examples:
      moderate config > job.toml          # start a job file from the defaults
      moderate config --config job.toml   # check what a job file resolves to
    """
    with _errors(ctx):
        click.echo(describe(JobConfig.load(config_file)), nl=False)


class _errors:
    """Library errors -> one line on stderr and their exit code; other exceptions -> exit code 1."""

    def __init__(self, ctx: click.Context) -> None:
        self.ctx = ctx

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, tb) -> bool:  # type: ignore[no-untyped-def]
        if exc is None or isinstance(exc, (click.exceptions.Exit, click.ClickException, click.Abort)):
            return False
        if self.ctx.obj.get("debug"):
            return False
        if isinstance(exc, KeyboardInterrupt):
            click.echo("moderate: interrupted; the run folder holds no finished output", err=True)
            self.ctx.exit(130)
        if isinstance(exc, ModeratorError):
            click.echo(f"Error: {exc}", err=True)
            self.ctx.exit(exc.exit_code)
        if isinstance(exc, MemoryError):
            click.echo("Error: out of memory; lower --batch-size or [classifier] batch_size", err=True)
            self.ctx.exit(1)
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        command = self.ctx.command_path.partition(" ")[2]  # "batch", "audit verify"
        click.echo(f"Internal error: {type(exc).__name__}: {first} (for the traceback run it again as "
                   f"`moderate --debug {command} ...`)", err=True)
        self.ctx.exit(1)
        return True


def main() -> None:
    cli(prog_name="moderate")
