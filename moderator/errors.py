"""Errors the library raises on purpose. Each kind maps to one documented exit code of the CLI.

Library code raises these with a one-line message that names the file or setting and the problem;
`cli.py` prints the message and exits with the code. Anything else is a bug (exit code 1).
"""

from __future__ import annotations


class ModeratorError(Exception):
    """Base class: a failure we expected and can explain in one line."""

    exit_code = 1


class ConfigError(ModeratorError):
    """A setting is missing, unknown or impossible (exit code 2, like a usage error)."""

    exit_code = 2


class InputError(ModeratorError):
    """An input file cannot be found, read or used (exit code 3)."""

    exit_code = 3


class OutputError(ModeratorError):
    """The output folder cannot be created or written (exit code 4)."""

    exit_code = 4


class ModelError(ModeratorError):
    """A model, tokenizer or adapter cannot be found or loaded (exit code 5)."""

    exit_code = 5


class AuditChainError(ModeratorError):
    """An audit log fails verification: a line was edited, deleted, inserted or reordered after the
    run wrote it, or the log no longer matches its manifest (exit code 6). Distinct from an input
    error so that a nightly check can tell "the log was changed" from "the log is not there"."""

    exit_code = 6


PARTIAL_EXIT_CODE = 7  # not an error: the run finished, but quarantined more than [output] max_quarantine_share

EXIT_CODES = {
    0: "success (also: the output was already complete and was left untouched)",
    1: "internal error (a bug: please report it with the traceback shown by --debug)",
    2: "usage or configuration error",
    3: "input error: an input file is missing, unreadable or lacks the text column",
    4: "output error: the output folder cannot be created or written",
    5: "model error: a model, tokenizer or adapter cannot be loaded",
    6: "audit log tampered: `moderate audit verify` found a line edited, deleted, inserted or reordered",
    PARTIAL_EXIT_CODE: "partial: the run finished and its output is complete, but more records were quarantined "
                       "than [output] max_quarantine_share allows (default 1%)",
}
