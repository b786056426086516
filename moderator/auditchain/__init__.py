"""The audit log's hash chain: how lines are linked when a run writes them, and how a log is checked.

Every line of `audit.jsonl` is one compact JSON object (UTF-8, no spaces, fields in a fixed order)
that starts with two fields:

    "seq": N              the line's number in the file, from 1
    "prev_sha256": HEX    sha256 of the previous line's bytes, without its newline

Line 1's `prev_sha256` is the chain start: GENESIS (64 zeros) for a run that starts a new chain, or
the head of the previous run's log when the run continues it (`--audit-chain-from`). The manifest's
`audit` section records the chain start (`chain_from`), the line count (`lines`) and the head
(`head_sha256`, the sha256 of the last line). Editing, deleting, inserting or reordering a line, or
cutting the file short, therefore breaks a link. Anyone can re-check a log without moderator:

    audit = json.load(open("RUN/manifest.json"))["audit"]
    prev, n = audit["chain_from"], 0
    for n, line in enumerate(open("RUN/audit.jsonl", "rb"), 1):
        line = line.removesuffix(b"\\n")
        assert json.loads(line)["prev_sha256"] == prev, f"broken at line {n}"
        prev = hashlib.sha256(line).hexdigest()
    assert (prev, n) == (audit["head_sha256"], audit["lines"])

`verify_run` does the same in one streaming pass (constant memory, whatever the log's size) and
says which line was changed first and how. `seq` is there for that diagnosis: a line that holds the
wrong number tells a deleted line from an edited one without keeping the log in memory.

The same pass counts the log's lines per action, reason and quarantine reason, and `verify_run`
holds the manifest's `counts` against them (a forged count is a `counts` problem), then re-hashes
and re-counts every output part against the manifest's `output` section (`parts` rows and
`sha256` per part; a part cut, edited, removed or added is an `output` problem). A manifest written
before parts were hashed is checked as far as it goes, with a note saying what was not checkable.
`verify_runs` is the one check behind both `moderate audit verify` and `moderate report`.

A chain proves that a log changed after it was written, not who wrote it: whoever can rewrite both
a log and its manifest can rebuild the chain. Continuing each night's chain from the previous run,
and keeping the heads somewhere else too (the scheduler's log), closes that gap: a rebuilt log no
longer ends at the head the next run started from.

Where each part lives:

    chain.py            the format (`encode_line`, `line_sha256`, GENESIS) and writing it (`ChainWriter`,
                        `chain_start`)
    links.py            one log's chain in one streaming pass (`check_log`), the first change named
                        (`diagnose`)
    manifest_checks.py  the manifest's counts against the log, its output parts against the files
    verify.py           a run and a chain of runs (`verify_run`, `verify_runs`: `moderate audit verify`)
    order.py            runs in chain order (`chain_order`), the runs that continue a run
                        (`continuing_runs`)
"""

from __future__ import annotations

from moderator.auditchain.chain import (GENESIS, HASH_DEFINITION, ChainStart, ChainWriter, chain_start, encode_line,
                                        is_sha256, line_sha256)
from moderator.auditchain.links import Link, Problem, check_log, diagnose
from moderator.auditchain.order import chain_order, continuing_runs
from moderator.auditchain.verify import Verdict, verify_run, verify_runs

__all__ = [
    "GENESIS", "HASH_DEFINITION", "ChainStart", "ChainWriter", "Link", "Problem", "Verdict", "chain_order",
    "chain_start", "check_log", "continuing_runs", "diagnose", "encode_line", "is_sha256", "line_sha256",
    "verify_run", "verify_runs",
]
