"""Test hook: stop a real run at an exact place, as a crash would.

`MODERATOR_FAULT=POINT:N` makes the process kill itself with SIGKILL the Nth time it reaches POINT
(`read`: a batch was read; `prepare`, `classify`, `rewrite`...: a step is about to process a batch;
`shard`: an output part was renamed into place, before the checkpoint is written; `checkpoint`:
right after a checkpoint). The fault-injection tests of resuming (`checkpoint.py`) use it; it is not
meant for anything else.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

_seen: Counter = Counter()


def fault(point: str) -> None:
    """SIGKILL this process the Nth time it reaches `point` (MODERATOR_FAULT=POINT:N)."""
    spec = os.environ.get("MODERATOR_FAULT")
    if not spec:
        return
    name, _, nth = spec.partition(":")
    if name != point:
        return
    _seen[point] += 1
    if _seen[point] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
