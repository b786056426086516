"""Executors: what moves a run's record batches through its steps into its outputs.

`base.py` holds the interface (`check`, `execute`), what an executor is handed (`Work`) and the
helpers all of them share (`write_batch`, `file_stats`). `local.py` runs the steps in this process
(staged threads); `ray.py` runs the same steps on Ray Data. The run picks one from `EXECUTORS` by
`[runtime] executor`.
"""

from __future__ import annotations

from moderator.executors.base import Executor, Work
from moderator.executors.local import LocalExecutor
from moderator.executors.ray import RayExecutor

EXECUTORS: dict[str, Executor] = {"local": LocalExecutor(), "ray": RayExecutor()}

__all__ = ["EXECUTORS", "Executor", "Work"]
