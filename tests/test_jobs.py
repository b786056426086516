"""`moderate run JOB.toml --date D`: job files, per-date run folders, one audit chain, incremental state."""

import json
from pathlib import Path

from click.testing import CliRunner
from conftest import POSTS, write_jsonl

from moderator.cli import cli
from moderator.config import load_job

ROOT = Path(__file__).resolve().parents[1]


def job_file(tmp_path, tiny, extra: str = "") -> Path:
    job = tmp_path / "jobs" / "nightly.toml"
    job.parent.mkdir(parents=True, exist_ok=True)
    job.write_text(f'''[job]
inputs = ["../dumps/{{date}}/*.jsonl"]
output_root = "../runs"
{extra}
[classifier]
model = "{tiny.classifier}"
[rewriter]
enabled = false
[input]
batch_size = 4
''')
    return job


def dump(tmp_path, date: str, texts: list[str]) -> None:
    write_jsonl(tmp_path / "dumps" / date / "comments.jsonl", [{"id": f"c{i}", "text": t} for i, t in enumerate(texts)])


def moderate_run(*args):
    return CliRunner().invoke(cli, ["run", *map(str, args)], catch_exceptions=False)


def test_nights_get_their_own_folders_one_chain_and_carry_over(tiny, tmp_path):
    job = job_file(tmp_path, tiny)
    dump(tmp_path, "2026-11-24", POSTS)
    dump(tmp_path, "2026-11-25", POSTS[:4] + ["a new comment tonight"])
    first = moderate_run(job, "--date", "2026-11-24")
    assert first.exit_code == 0, first.output
    second = moderate_run(job, "--date", "2026-11-25")
    assert second.exit_code == 0, second.output
    runs = tmp_path / "runs"
    assert {"2026-11-24", "2026-11-25", "state.sqlite"} <= {p.name for p in runs.iterdir()}
    m1, m2 = (json.loads((runs / d / "manifest.json").read_text()) for d in ("2026-11-24", "2026-11-25"))
    assert m1["inputs"][0]["path"] == str((tmp_path / "dumps" / "2026-11-24" / "comments.jsonl").resolve())
    assert m1["audit"]["previous_run"] is None
    assert m2["audit"]["chain_from"] == m1["audit"]["head_sha256"]
    assert m2["audit"]["previous_run"]["run_id"] == m1["run_id"]
    assert m2["counts"]["carried_over"] == 4 and m2["state"]["path"] == str(runs / "state.sqlite")
    verified = CliRunner().invoke(cli, ["audit", "verify", str(runs / "2026-11-24"), str(runs / "2026-11-25")])
    assert verified.exit_code == 0, verified.output
    # The same date again: finished, left untouched; --force with --overwrite scores everything again.
    again = moderate_run(job, "--date", "2026-11-25")
    assert again.exit_code == 0 and "already complete" in again.stderr
    forced = moderate_run(job, "--date", "2026-11-25", "--force", "--overwrite")
    assert forced.exit_code == 0
    assert json.loads((runs / "2026-11-25" / "manifest.json").read_text())["counts"]["carried_over"] == 0


def test_job_errors_are_one_line(tiny, tmp_path):
    job = job_file(tmp_path, tiny)
    missing = moderate_run(job, "--date", "2026-11-26")
    assert missing.exit_code == 3 and "2026-11-26" in missing.stderr and "no files match" in missing.stderr
    bad_date = moderate_run(job, "--date", "26/11/2026")
    assert bad_date.exit_code == 2 and "YYYY-MM-DD" in bad_date.stderr
    assert moderate_run(job, "--date", "2026-02-30").exit_code == 2
    typo = job_file(tmp_path, tiny, 'output_rot = "x"')
    result = moderate_run(typo, "--date", "2026-11-24")
    assert result.exit_code == 2 and "output_rot" in result.stderr and "did you mean" in result.stderr
    no_job = tmp_path / "plain.toml"
    no_job.write_text("[policy]\nrewrite_threshold = 0.4\n")
    result = moderate_run(no_job)
    assert result.exit_code == 2 and "no [job] table" in result.stderr
    for r in (missing, bad_date, result):
        assert "Traceback" not in r.output and len([x for x in r.stderr.splitlines() if x.startswith("Error:")]) == 1


def test_the_example_job_file_is_valid():
    job, config = load_job(ROOT / "jobs" / "nightly.toml")
    assert any("{date}" in spec for spec in job.inputs) and job.output_root and job.chain_audit
    assert config.input.text_column == "body" and config.output.max_quarantine_share == 0.01
    help_text = CliRunner().invoke(cli, ["run", "--help"]).output
    assert "moderate run jobs/nightly.toml --date 2026-11-24" in help_text and "Exit codes:" in help_text
