"""The Ray executor: the same steps on Ray Data, across a cluster or on a Ray it starts on this machine.

    moderate batch dump/ --executor ray                       # a local Ray, started for this run
    moderate batch dump/ --executor ray --ray-address auto    # the cluster `ray start` runs here

The dataset flowing through Ray is one row per moderator record batch:

    read (tasks, one per input file) -> score (actor pool: prepare, classify, policy)
        -> rewrite (actor pool, one engine per actor, num_gpus=1 on GPU clusters: rewrite, verify)
        -> this process: output parts, audit log, quarantine, checkpoints, manifest (`outputs.Outputs`)

- **No second implementation.** Reading is `readers.open_reader` (the local executor's readers), so
  a bad JSONL line is quarantined, not a failed read, rows are numbered and ids derived exactly as in
  a local run, and the file's size and sha256 come from the same hashing reader. The actors build
  their steps once from the run's `JobConfig` with `steps.load_models` and
  `steps.scoring_steps` / `rewriting_steps` and call them on each batch through
  `steps.score_batch` / `rewrite_batch`; each actor checks that its models have the content hashes
  the run records. Batches are written with `executors.base.write_batch`, as the local executor does.
- **Why not `read_parquet` / `read_json`.** Ray's readers would fail a whole file on one bad JSON
  line, cannot number rows or derive ids the way the audit log needs, and cut blocks differently.
  Block boundaries matter: the classifier pads per batch and the rewriter batches prompts, so the
  same rows in other batches can give (slightly) other scores. Ray may merge or split blocks as it
  likes; here a row is a whole record batch (Arrow IPC bytes), so every step sees exactly the batches
  of a local run, however Ray moves them, and JSONL batches with different columns never have to
  share a block schema.
- **Only flagged rows reach the engine.** Every batch visits a rewrite actor, whose `Rewriter` step
  hands only the rows the policy sent to `rewrite` to the engine; a batch without any costs that
  actor a few milliseconds. Rows never leave their batch, so nothing has to be merged back.
- **Why not `write_parquet`.** Output rows are written by this process through the same `Outputs`
  as a local run, not by Ray's `write_parquet`: the audit chain is sequential (each line hashes the
  one before), checkpoints need the parts, the audit log and the quarantine file to agree at one
  input position, and the parts must be those of a local run (same rows per part, same schema
  handling, written under a temporary name and renamed when whole). Writing is a small share of
  the work (Parquet encoding and one JSON line per post) next to classification and generation,
  so one writer keeps up with many GPU actors; `preserve_order` keeps the input order.
- **Incremental runs.** With a state store (`[state] path`, a SQLite file on this machine), the
  score actors set aside the posts an earlier run decided, as a local run does (`steps.score_batch`
  with the same `state.CarryOver`): they look the batch's ids up through one small actor that runs on
  this process's node and reads the file (SQLite wants its readers on the machine that holds it,
  not on a network file system), and the carried rows travel beside the scored ones. This process
  merges them back in input order and stores the new decisions (`steps.merge_carried`), just
  before writing the batch, as the local executor does.
- **Not supported:** standard input (a Ray task cannot read this process's stdin); refused before
  anything starts. Checkpoints and resuming work as in a local run: the driver takes them, and a
  resumed run's read tasks start at the recorded position.

`import ray` happens only here, and only when a run asks for this executor.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from moderator import memory, readers
from moderator.config import JobConfig
from moderator.errors import ConfigError, ModelError, ModeratorError
from moderator.executors.base import Work, file_stats, write_batch
from moderator.outputs import Outputs
from moderator.state import CarryOver
from moderator.steps import load_models, merge_carried, rewrite_batch, rewriting_steps, score_batch, scoring_steps
from moderator.steps import model_ids as hashes_of

log = logging.getLogger(__name__)

# The columns of the dataset: one row per record batch, or per finished input file (batch null).
SCHEMA = pa.schema([
    pa.field("file", pa.int64()),  # input file number
    pa.field("first", pa.int64()),  # the batch's first row in its file
    pa.field("batch", pa.binary()),  # the record batch, Arrow IPC stream; null: the file is read to the end
    pa.field("stats", pa.string()),  # end of file: rows, size and sha256 as the reader counted them (JSON)
    pa.field("timings", pa.string()),  # seconds per step spent on this batch so far (JSON)
    # With a state store: the posts an earlier run decided, set aside by the score actor (Arrow IPC),
    # and where the scored and the carried rows stood in the batch (JSON [scored, carried]).
    pa.field("carried", pa.binary()),
    pa.field("positions", pa.string()),
])


class RayExecutor:
    """The run's batches through its steps on Ray Data (`[runtime] executor = "ray"`)."""

    rewrites_here = False  # the rewrite actors load the decoder; the run only records it

    def check(self, config: JobConfig, files: list[readers.InputFile]) -> None:
        """Refuse what this executor cannot do, before anything is written: no Ray, standard input."""
        if importlib.util.find_spec("ray") is None:
            raise ConfigError("[runtime] executor = ray needs Ray: pip install 'moderator[ray]' (or 'ray[data]'), "
                              "or use --executor local")
        if any(f.is_stdin for f in files):
            raise ConfigError("--executor ray cannot read standard input (its tasks run in other processes); "
                              "write the input to a file, or use --executor local")

    def execute(self, work: Work, outputs: Outputs, timings: Counter, bar: Any) -> None:
        """Moderate `work` on Ray Data into `outputs`, in input order; with a state store, the posts an
        earlier run decided are merged back here, just before their batch is written."""
        import ray

        started = connect(work.config)
        try:
            for item in _results(work):
                if item["batch"] is None:
                    outputs.file_done(file_stats(work.files[item["file"]], **json.loads(item["stats"])))
                    continue
                timings.update(json.loads(item["timings"]))
                batch = decode(item["batch"])
                if item["carried"] is not None:
                    scored_at, carried_at = json.loads(item["positions"])
                    batch = merge_carried(work.carry, batch, (decode(item["carried"]), scored_at, carried_at),  # type: ignore[arg-type]
                                          timings)
                write_batch(outputs, batch, item["file"], item["first"], work.skip(item["file"]), timings, bar)
        except Exception as exc:
            cause = _cause(exc)
            if cause is not exc:
                raise cause from None
            raise
        finally:
            if started:
                ray.shutdown()


def encode(batch: pa.RecordBatch) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue().to_pybytes()


def decode(data: bytes) -> pa.RecordBatch:
    return pa.ipc.open_stream(data).read_next_batch()


def _table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def read_files(tasks: pa.Table, config: JobConfig, files: list[readers.InputFile]) -> Iterator[pa.Table]:
    """Ray task: the record batches of the input files named in `tasks`, from each one's `skip` row on,
    then one end-of-file row per file. Batches that end before `skip` (done before a checkpoint) are
    read but not passed on; the batch that holds it is passed on whole (see `checkpoint.py`)."""
    for task in tasks.to_pylist():
        index, skip = task["file"], task["skip"]
        item = files[index]
        reader = readers.open_reader(item, config.input.batch_size, config.input.text_column, None,
                                     config.input.id_column, config.input.max_record_bytes)
        clock: Counter = Counter()
        for first, batch in reader.batches_from(skip, clock):
            # The read time since the previous batch went out (batches before `skip` included).
            yield _table([{"file": index, "first": first, "batch": encode(batch), "stats": None,
                           "timings": json.dumps({"read": clock.pop("read", 0.0)})}])
        stats = {"rows": reader.stats.rows, "size": reader.stats.size, "sha256": reader.stats.sha256}
        yield _table([{"file": index, "first": reader.stats.rows, "batch": None, "stats": json.dumps(stats),
                       "timings": None}])


class _StepsActor:
    """An actor that runs some of a run's steps on each record batch row it is handed."""

    steps: list

    def __call__(self, table: pa.Table) -> pa.Table:
        rows = table.to_pylist()
        for row in rows:
            if row["batch"] is None:
                continue
            clock: Counter = Counter(json.loads(row["timings"] or "{}"))
            self.process(row, decode(row["batch"]), clock)
            row["timings"] = json.dumps(clock)
        memory.release()
        return _table(rows)

    def process(self, row: dict[str, Any], batch: pa.RecordBatch, clock: Counter) -> None:
        raise NotImplementedError

    @staticmethod
    def _check(found: dict[str, str | None], expected: dict[str, str | None]) -> None:
        for name, sha256 in found.items():
            if expected.get(name) != sha256:
                raise ModelError(f"{name} on {os.uname().nodename}: content hash {sha256} differs from the run's "
                                 f"{expected.get(name)} (the nodes of a cluster must see the same model files)")


class ScoreActor(_StepsActor):
    """prepare, (prefilter), classify, policy: the classifier loads once per actor. With a state
    store (`carry`: the driver's `CarryOver` settings and the look-up actor), posts an earlier run
    decided are set aside after prepare and skip the classifier."""

    def __init__(self, config: JobConfig, model_ids: dict[str, str | None],
                 carry: dict[str, Any] | None = None) -> None:
        models = load_models(config, rewriter=False)
        self._check({"classifier": models.classifier.model_ref.sha256}, model_ids)
        self.steps = scoring_steps(config, models)
        self.carry = None if carry is None else CarryOver(
            _LookupClient(carry["lookup"]), carry["fingerprint"], carry["run_id"], models.classifier.labels,
            carry["force"])

    def process(self, row: dict[str, Any], batch: pa.RecordBatch, clock: Counter) -> None:
        batch, carried = score_batch(self.steps, self.carry, batch, clock)
        row["batch"] = encode(batch)
        if carried is not None:
            rows, scored_at, carried_at = carried
            row["carried"], row["positions"] = encode(rows), json.dumps([scored_at, carried_at])


class RewriteActor(_StepsActor):
    """rewrite, verify: one engine (vLLM or transformers) per actor, on the actor's GPU when it has one."""

    def __init__(self, config: JobConfig, model_ids: dict[str, str | None]) -> None:
        models = load_models(config)
        self._check(hashes_of(models.refs()), model_ids)
        self.steps = rewriting_steps(config, models)

    def process(self, row: dict[str, Any], batch: pa.RecordBatch, clock: Counter) -> None:
        row["batch"] = encode(rewrite_batch(self.steps, batch, clock))


class StateLookup:
    """Ray actor on the driver's node: the run's state store, read for the score actors."""

    def __init__(self, path: str) -> None:
        from moderator.state import StateStore

        self.store = StateStore(Path(path))

    def lookup(self, ids: list[str]) -> dict[str, tuple[str, str, str, str]]:
        return self.store.lookup(ids)


class _LookupClient:
    """The store a score actor's `CarryOver` sees: look-ups go to the `StateLookup` actor; decisions
    are stored by the driver only."""

    def __init__(self, actor: Any) -> None:
        self.actor = actor

    def lookup(self, ids: list[str]) -> dict[str, tuple[str, str, str, str]]:
        import ray

        return ray.get(self.actor.lookup.remote(ids))

    def store(self, rows: list) -> None:
        raise RuntimeError("score actors never store decisions: the driver does, when it merges a batch")


def connect(config: JobConfig, **init_args: Any) -> bool:
    """Join the configured cluster, or start a local Ray (`init_args`: more `ray.init` arguments);
    False when this process was connected already."""
    import ray

    if ray.is_initialized():
        return False
    package = Path(__file__).resolve().parents[1]  # the moderator package
    if config.runtime.ray_address:
        # The cluster's workers get this very moderator (and its bundled models) from the driver; the
        # nodes need its dependencies (torch, transformers, vLLM...) installed.
        runtime_env: dict[str, Any] = {"py_modules": [str(package)]}
    else:
        path = os.pathsep.join(p for p in (str(package.parent), os.environ.get("PYTHONPATH")) if p)
        runtime_env = {"env_vars": {"PYTHONPATH": path}}
    ray.init(address=config.runtime.ray_address, include_dashboard=False, runtime_env=runtime_env,
             logging_level=logging.WARNING, **init_args)
    return True


def _results(work: Work) -> Iterator[dict[str, Any]]:
    """The dataset's rows as they come back to this process, in input order (from the start position on)."""
    import ray

    config, files, start, carry = work.config, work.files, work.start, work.carry
    tasks = [{"file": i, "skip": work.skip(i)} for i in range(start[0], len(files))]
    _configure_ray_data()
    if not tasks:
        return
    runtime = config.runtime
    gpus, scorers, rewriters = _actor_counts(config)
    lookup = None if carry is None else _start_lookup(carry)
    args = {"config": config, "model_ids": work.steps.model_ids()}
    carried = None if carry is None else {"lookup": lookup, "fingerprint": carry.fingerprint,
                                          "run_id": carry.run_id, "force": carry.force}
    ds = ray.data.from_items(tasks, override_num_blocks=len(tasks))
    # Reading is light: it takes no CPU slot, so that the actors may reserve every core.
    ds = ds.map_batches(read_files, fn_kwargs={"config": config, "files": files}, batch_size=1,
                        batch_format="pyarrow", num_cpus=0)
    pool = ray.data.ActorPoolStrategy
    ds = ds.map_batches(ScoreActor, fn_constructor_kwargs={**args, "carry": carried}, batch_size=1,
                        batch_format="pyarrow", compute=pool(size=scorers), num_cpus=runtime.ray_cpus_per_actor)
    if rewriters:
        ds = ds.map_batches(RewriteActor, fn_constructor_kwargs=args, batch_size=1, batch_format="pyarrow",
                            compute=pool(size=rewriters), num_cpus=runtime.ray_cpus_per_actor,
                            num_gpus=1 if gpus else 0)
    log.info("ray: %d score actor(s), %d rewrite actor(s)%s", scorers, rewriters, " with one GPU each" if gpus else "")
    try:
        for table in ds.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=1):
            yield from table.to_pylist()
    finally:
        if lookup is not None and ray.is_initialized():  # a generator left early is closed later
            ray.kill(lookup)


def _configure_ray_data() -> None:
    import ray

    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # rows come back in input order: the audit chain needs it
    context.enable_progress_bars = False
    # One record batch per Ray block: Ray would otherwise pack a read task's rows into blocks of up to
    # 128 MiB, and an actor pool spreads blocks, not rows, over its actors (one file: one actor).
    context.target_max_block_size = 1
    if not log.isEnabledFor(logging.DEBUG):
        logging.getLogger("ray.data").setLevel(logging.WARNING)  # its start and finish lines, per run


def _actor_counts(config: JobConfig) -> tuple[int, int, int]:
    """(GPUs used, score actors, rewrite actors) on the cluster this process is connected to."""
    import ray

    runtime = config.runtime
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0)) if runtime.device != "cpu" else 0
    rewriters = (runtime.ray_rewrite_actors or max(gpus, 1)) if config.rewriter.enabled else 0
    free = resources.get("CPU", 1) - rewriters * runtime.ray_cpus_per_actor
    scorers = runtime.ray_score_actors or max(1, int(free // runtime.ray_cpus_per_actor))
    return gpus, scorers, rewriters


def _start_lookup(carry: CarryOver) -> Any:
    """The `StateLookup` actor, on this process's node (where the state store's file is)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(), soft=False)
    return ray.remote(num_cpus=0, scheduling_strategy=here)(StateLookup).remote(str(carry.store.path))


def _cause(exc: BaseException) -> BaseException:
    """The moderator error inside Ray's wrappers (a task's InputError, an actor's ModelError), if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        inner = getattr(current, "cause", None)  # RayTaskError: the exception the task raised
        if isinstance(current, ModeratorError) and not isinstance(inner, BaseException):
            return current
        current = inner if isinstance(inner, BaseException) else current.__cause__ or current.__context__
    return exc
