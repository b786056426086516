"""The chain's format, and how a run writes it: each line numbered and linked to the one before.

`encode_line` gives a line's bytes (the same object always the same bytes), `line_sha256` its hash;
`ChainWriter` writes the audit log, starting from `chain_start`: GENESIS, or the head of the
previous run of the same job (`--audit-chain-from`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moderator.errors import ConfigError
from moderator.rundir import MANIFEST, RunDir
from moderator.files import PRIVATE
from moderator.writers import JsonLinesWriter, json_default


GENESIS = "0" * 64
HASH_DEFINITION = (
    "sha256 (hex) of each line's bytes without its newline; line N's prev_sha256 is line N-1's sha256, "
    "line 1's is chain_from; head_sha256 is the last line's sha256 (chain_from when there are no lines)"
)
_HEX = frozenset("0123456789abcdef")


def line_sha256(line: bytes) -> str:
    """The hash of one audit line: sha256 of its exact bytes, without the trailing newline."""
    return hashlib.sha256(line).hexdigest()


def encode_line(obj: dict[str, Any]) -> bytes:
    """One audit line's bytes, without the newline. The same object always gives the same bytes.

    UTF-8 as is, except a line whose strings hold lone surrogates (only JSONL input escaped as
    "\\ud800" can produce them), which is written with \\u escapes instead, so that every line
    stays valid UTF-8.
    """
    try:
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=json_default).encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(obj, ensure_ascii=True, separators=(",", ":"), default=json_default).encode("ascii")


def is_sha256(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and set(value) <= _HEX


@dataclass(frozen=True)
class ChainStart:
    """Where a run's chain starts: GENESIS, or the head of the previous run of the same job."""

    sha256: str = GENESIS
    previous_run: dict[str, Any] | None = None  # run_id, path and head_sha256 of that run


def chain_start(previous: str | None, out: Path) -> ChainStart:
    """The chain start for a run into `out` that continues the run in folder `previous` (if any).

    Only the previous run's manifest is read; `moderate audit verify PREVIOUS RUN` checks both logs
    and the link between them.
    """
    if not previous:
        return ChainStart()
    where = f"[output] audit_chain_from / --audit-chain-from {previous}"
    path = Path(previous).expanduser()
    if path.resolve() == Path(out).resolve():
        raise ConfigError(f"{where}: a run cannot continue its own chain; name the previous run's folder")
    manifest = RunDir(path).finished()
    if manifest is None:
        raise ConfigError(f"{where}: no finished run there ({MANIFEST} missing or incomplete)")
    head = (manifest.get("audit") or {}).get("head_sha256")
    if not is_sha256(head):
        raise ConfigError(f"{where}: that run's manifest records no audit chain head (written by an older "
                          "moderator?); leave audit_chain_from unset to start a new chain")
    return ChainStart(head, {"run_id": manifest.get("run_id"), "path": str(path.resolve()), "head_sha256": head})


class ChainWriter(JsonLinesWriter):
    """Writes audit lines, each carrying its number and the sha256 of the line before it."""

    def __init__(self, path: Path, start: ChainStart | None = None, file_mode: int = PRIVATE,
                 resume_at: tuple[int, int, str] | None = None) -> None:
        """`resume_at` = (bytes, lines, head) from a checkpoint: continue the log after its first
        `bytes` bytes, numbering and linking the next line to the checkpoint's last one."""
        super().__init__(path, file_mode, None if resume_at is None else resume_at[:2])
        self.start = start or ChainStart()
        self.head = self.start.sha256 if resume_at is None else resume_at[2]

    def write(self, objects: Iterable[dict[str, Any]]) -> None:
        chunks = []
        for obj in objects:
            line = encode_line({"seq": self.rows + 1, "prev_sha256": self.head, **obj})
            self.head = line_sha256(line)
            self.rows += 1
            chunks.append(line + b"\n")
        self._write_bytes(b"".join(chunks))

    def sync(self) -> tuple[int, int, str]:  # type: ignore[override]
        """Make what was written durable: (bytes, lines, head) for a checkpoint."""
        return (*super().sync(), self.head)

    def summary(self) -> dict[str, Any]:
        """The manifest's `audit` section: what `moderate audit verify` checks the log against."""
        return {
            "file": self.path.name,
            "lines": self.rows,
            "head_sha256": self.head,
            "chain_from": self.start.sha256,
            "previous_run": self.start.previous_run,
            "hash": HASH_DEFINITION,
        }
