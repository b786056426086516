"""The documented exit codes, in particular 7: finished, but more records quarantined than allowed."""

import json

from click.testing import CliRunner
from conftest import POSTS, read_lines, read_output, write_parquet

from moderator.cli import cli
from moderator.errors import EXIT_CODES, PARTIAL_EXIT_CODE


def moderate(tiny, *args: str):
    argv = ["batch", *args, "--classifier", str(tiny.classifier), "--no-rewrite"]
    return CliRunner().invoke(cli, argv, catch_exceptions=False)


def warning_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("Warning:")]


def test_too_many_quarantined_rows_exit_7_with_the_output_committed(tiny, tmp_path):
    texts = POSTS * 3 + [None, ""]  # 2 of 20 records cannot be moderated: 10%
    posts = write_parquet(tmp_path / "posts.parquet", {"text": texts})
    out = tmp_path / "run"
    result = moderate(tiny, str(posts), "--out", str(out))
    assert PARTIAL_EXIT_CODE == 7 and result.exit_code == 7, result.output
    [warning] = warning_lines(result)
    assert "2 of 20 records (10.0%) were quarantined" in warning and "max_quarantine_share = 0.01" in warning
    assert "Traceback" not in result.output
    manifest = json.loads((out / "manifest.json").read_text())  # committed, complete, and says so
    assert manifest["status"] == "complete" and manifest["quarantine"] == {
        "share": 0.1, "max_share": 0.01, "above_max": True}
    assert read_output(out).num_rows == 18 and len(read_lines(out / "quarantine.jsonl")) == 2
    # Asking again gives the same answer: the output is left untouched, still partial.
    again = moderate(tiny, str(posts), "--out", str(out))
    assert again.exit_code == 7 and "already complete" in again.stderr and len(warning_lines(again)) == 1
    quiet = moderate(tiny, str(posts), "--out", str(out), "-q")
    assert quiet.exit_code == 7 and warning_lines(quiet) == warning_lines(again)


def test_the_share_is_configurable(tiny, tmp_path):
    posts = write_parquet(tmp_path / "posts.parquet", {"text": POSTS * 3 + [None, ""]})
    flag = moderate(tiny, str(posts), "--out", str(tmp_path / "flag"), "--max-quarantine-share", "0.1")
    assert flag.exit_code == 0 and warning_lines(flag) == []  # 10% is not above 10%
    job = tmp_path / "job.toml"
    job.write_text("[output]\nmax_quarantine_share = 0.05\n")
    assert moderate(tiny, str(posts), "--out", str(tmp_path / "file"), "--config", str(job)).exit_code == 7
    job.write_text("[output]\nmax_quarantine_share = 1.5\n")
    bad = moderate(tiny, str(posts), "--out", str(tmp_path / "bad"), "--config", str(job))
    assert bad.exit_code == 2 and "max_quarantine_share = 1.5 must be between 0.0 and 1.0" in bad.stderr
    clean = write_parquet(tmp_path / "clean.parquet", {"text": POSTS})
    assert moderate(tiny, str(clean), "--out", str(tmp_path / "clean"), "--max-quarantine-share", "0").exit_code == 0


def test_every_exit_code_is_documented_in_help_and_readme():
    from pathlib import Path

    help_text = CliRunner().invoke(cli, ["batch", "--help"]).output
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for code in (0, 1, 2, 3, 4, 5, 7):
        assert f"  {code}  " in help_text
    for code in EXIT_CODES:
        assert f"| {code} |" in readme
