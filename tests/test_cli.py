import json
import re

import pytest
from click.testing import CliRunner
from conftest import POSTS, read_lines, write_jsonl, write_parquet

from moderator.cli import cli


@pytest.fixture
def invoke(tiny):
    def _invoke(*args, env=None, input=None):
        base = ["--classifier", str(tiny.classifier), "--rewriter-base", str(tiny.decoder),
                "--adapter", str(tiny.adapter), "--engine", "hf"]
        argv = list(args)
        if argv and argv[0] == "batch":
            argv = argv + base
        return CliRunner().invoke(cli, argv, env=env, input=input, catch_exceptions=False)

    return _invoke


def assert_one_line_error(result, code, *fragments):
    assert result.exit_code == code, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0]


def test_help_has_examples_and_exit_codes():
    result = CliRunner().invoke(cli, ["batch", "--help"])
    assert result.exit_code == 0
    assert "moderate batch posts.parquet" in result.output and "Exit codes:" in result.output
    assert "--no-rewrite" in result.output
    assert CliRunner().invoke(cli, ["--version"]).output.startswith("moderate, version")


def test_batch_run_then_rerun_then_overwrite(invoke, tmp_path):
    posts = write_parquet(tmp_path / "posts.parquet", {"id": list(range(len(POSTS))), "text": POSTS})
    result = invoke("batch", str(posts))
    assert result.exit_code == 0, result.output
    out = tmp_path / "posts.moderated"
    assert "moderated 6 posts" in result.stderr and str(out) in result.stderr
    assert result.stdout == ""  # data goes to files, messages to stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["command"][:2] == ["moderate", "batch"] or manifest["command"][0] == "moderate"
    again = invoke("batch", str(posts))
    assert again.exit_code == 0 and "already complete" in again.stderr
    assert json.loads((out / "manifest.json").read_text())["run_id"] == manifest["run_id"]
    replaced = invoke("batch", str(posts), "--overwrite", "-q")
    assert replaced.exit_code == 0 and replaced.stderr == ""
    assert json.loads((out / "manifest.json").read_text())["run_id"] != manifest["run_id"]


def test_config_file_and_flags(invoke, tmp_path):
    posts = write_jsonl(tmp_path / "posts.jsonl", [{"body": t, "post_id": f"x{i}"} for i, t in enumerate(POSTS)])
    job = tmp_path / "job.toml"
    job.write_text('[input]\ntext_column = "body"\nid_column = "post_id"\n[policy]\nrewrite_threshold = 0.0\n'
                   'remove_threshold = 0.0\n')
    result = invoke("batch", str(posts), "--config", str(job), "--out", str(tmp_path / "run"), "--remove-threshold", "1")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    policy = manifest["config"]["policy"]
    assert {k: policy[k] for k in ("rewrite_threshold", "remove_threshold", "max_rewrite_toxicity", "min_similarity")} \
        == {"rewrite_threshold": 0.0, "remove_threshold": 1.0, "max_rewrite_toxicity": 0.5, "min_similarity": 0.5}
    assert policy["on_rewrite_failure"] == "review"  # the defaults of the settings neither layer names
    assert [a["id"] for a in read_lines(tmp_path / "run" / "audit.jsonl")] == [f"x{i}" for i in range(6)]


def test_no_rewrite_from_the_command_line(tiny, tmp_path):
    posts = write_parquet(tmp_path / "posts.parquet", {"text": POSTS})
    result = CliRunner().invoke(cli, ["batch", str(posts), "--no-rewrite", "--classifier", str(tiny.classifier),
                                      "--rewrite-threshold", "0", "--remove-threshold", "1"])
    assert result.exit_code == 0, result.output
    audit = read_lines(tmp_path / "posts.moderated" / "audit.jsonl")
    assert {(a["action"], a["reason"]) for a in audit} == {("review", "rewrite_disabled")}
    assert set(audit[0]["models"]) == {"classifier", "rewritability"}  # no decoder, no embedder


def test_environment_variables_set_per_machine_options(tiny, tmp_path):
    posts = write_parquet(tmp_path / "posts.parquet", {"text": POSTS})
    env = {"MODERATOR_CLASSIFIER": str(tiny.classifier), "MODERATOR_REWRITER_BASE": str(tiny.decoder),
           "MODERATOR_ADAPTER": str(tiny.adapter), "MODERATOR_ENGINE": "hf", "MODERATOR_DEVICE": "cpu"}
    result = CliRunner().invoke(cli, ["batch", str(posts)], env=env)
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "posts.moderated" / "manifest.json").read_text())
    assert manifest["config"]["rewriter"]["engine"] == "hf" and manifest["engine"] == "hf"
    assert manifest["models"]["classifier"]["path"] == str(tiny.classifier.resolve())


def test_stdin(invoke, tmp_path):
    data = "".join(json.dumps({"text": t}) + "\n" for t in POSTS) + "broken line\n"
    result = invoke("batch", "-", "--out", str(tmp_path / "run"), input=data)
    assert result.exit_code == 7, result.output  # 1 of 7 records quarantined: above the default 1%, partial
    assert [q["reason"] for q in read_lines(tmp_path / "run" / "quarantine.jsonl")] == ["invalid_json"]
    assert len(read_lines(tmp_path / "run" / "audit.jsonl")) == 7
    assert_one_line_error(invoke("batch", "-", input=data), 2, "--out")


def test_input_errors_exit_3_with_one_line(invoke, tmp_path):
    assert_one_line_error(invoke("batch", str(tmp_path / "nope.parquet")), 3, "nope.parquet", "no such file")
    wrong = write_parquet(tmp_path / "wrong.parquet", {"body": POSTS})
    assert_one_line_error(invoke("batch", str(wrong)), 3, "wrong.parquet", "no column 'text'", "--text-column")
    assert not (tmp_path / "wrong.moderated" / "manifest.json").exists()
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"PAR1 not really")
    assert_one_line_error(invoke("batch", str(garbage)), 3, "garbage.parquet", "cannot read as Parquet")


def test_usage_and_config_errors_exit_2(invoke, tmp_path):
    posts = write_parquet(tmp_path / "posts.parquet", {"text": POSTS})
    bad = tmp_path / "job.toml"
    bad.write_text("[policy]\nrewrite_threshold = 2\n")
    assert_one_line_error(invoke("batch", str(posts), "--config", str(bad)), 2, "job.toml", "rewrite_threshold")
    magic = CliRunner().invoke(cli, ["batch", str(posts), "--engine", "magic"])
    assert magic.exit_code == 2 and "'magic' is not one of" in magic.stderr
    assert invoke("batch").exit_code == 2


def test_output_errors_exit_4(invoke, tmp_path):
    posts = write_parquet(tmp_path / "posts.parquet", {"text": POSTS})
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert_one_line_error(invoke("batch", str(posts), "--out", str(blocker / "run")), 4, "cannot write here")
    assert_one_line_error(invoke("batch", str(posts), "--out", str(blocker)), 4, "is not a folder")


def test_model_errors_exit_5(tmp_path):
    posts = write_parquet(tmp_path / "posts.parquet", {"text": POSTS})
    result = CliRunner().invoke(cli, ["batch", str(posts), "--classifier", str(tmp_path / "no-model")])
    assert_one_line_error(result, 5, "classifier", "no-model", "no such folder")
    assert not (tmp_path / "posts.moderated" / "manifest.json").exists()


def test_config_command_prints_resolvable_toml(tmp_path):
    result = CliRunner().invoke(cli, ["config"])
    assert result.exit_code == 0 and "[policy]" in result.output and "rewrite_threshold = 0.5" in result.output
    job = tmp_path / "job.toml"
    job.write_text(result.output)
    shown = CliRunner().invoke(cli, ["config", "--config", str(job)])
    assert shown.output == result.output


def test_show_prints_decisions_of_a_finished_run(invoke, tmp_path):
    posts = write_parquet(tmp_path / "posts.parquet", {"text": POSTS})
    assert invoke("batch", str(posts), "--rewrite-threshold", "0", "--remove-threshold", "1").exit_code == 0
    result = CliRunner().invoke(cli, ["show", str(tmp_path / "posts.moderated"), "--limit", "2"])
    assert result.exit_code == 0, result.output
    assert "6 posts" in result.output and result.output.count("  post: ") == 2
    assert result.output.count("  rewrite: ") + result.output.count("[review") >= 2
    assert_one_line_error(CliRunner().invoke(cli, ["show", str(tmp_path)]), 3, "no finished run")


def test_an_internal_error_names_the_debug_command_that_works(tiny, tmp_path, monkeypatch):
    """The hint must be a command line that really shows the traceback: --debug belongs to `moderate`,
    before the subcommand (`moderate batch --debug` is a usage error)."""
    import moderator.pipeline

    def broken(*args, **kwargs):
        raise KeyError("bug")

    monkeypatch.setattr(moderator.pipeline, "run", broken)
    posts = write_jsonl(tmp_path / "posts.jsonl", [{"text": t} for t in POSTS])
    args = ["batch", str(posts), "--classifier", str(tiny.classifier), "--no-rewrite"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "run it again as `moderate --debug batch ...`" in result.stderr, result.stderr
    debug = CliRunner().invoke(cli, ["--debug", *args])
    assert isinstance(debug.exception, KeyError)  # the traceback is there


def test_show_and_the_markdown_report_keep_hostile_strings_inert(tiny, tmp_path):
    """Terminal escapes in ids and BEL/backspace/bidi in texts reach `moderate show` as visible escapes,
    and a post's Markdown link or image stays text in the Markdown report."""
    posts = write_jsonl(tmp_path / "posts.jsonl", [
        {"id": "\x1b[2J\x1b]0;owned\x07id", "text": "ring\x07 the bell\x08\x08 and \u202eflip"},
        {"id": "link", "text": "[click me](javascript:alert(1)) ![x](https://tracker.example/p.png)"},
    ])
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["batch", str(posts), "--out", str(out), "--classifier", str(tiny.classifier),
                                      "--no-rewrite", "--rewrite-threshold", "0", "--audit-text"])
    assert result.exit_code == 0, result.output
    shown = CliRunner().invoke(cli, ["show", str(out), "--limit", "5"])
    assert shown.exit_code == 0, shown.output
    assert not any(c in shown.output for c in "\x1b\x07\x08\u202e")
    assert "\\x1b[2J\\x1b]0;owned\\x07id" in shown.output and "ring\\x07 the bell\\x08\\x08 and \\u202eflip" in shown.output

    md = tmp_path / "report.md"
    report = CliRunner().invoke(cli, ["report", str(out), "--markdown", str(md), "--qa-per-stratum", "5"])
    assert report.exit_code == 0, report.output
    text = md.read_text()
    assert not re.search(r"(?<!\\)\]\(", text)  # no link or image: every "](" is escaped
    assert "\\[click me\\](javascript:alert(1))" in text


def test_a_misspelled_id_column_is_refused_before_models_load(tiny, tmp_path):
    """--id-column that no input holds would give every post a derived id (file:row) that changes with
    the dump: refused with one line; a column missing from some inputs only is a warning."""
    posts = write_jsonl(tmp_path / "posts.jsonl", [{"post_id": f"p{i}", "text": t} for i, t in enumerate(POSTS)])
    other = write_parquet(tmp_path / "more.parquet", {"text": POSTS[:2]})
    base = ["--out", str(tmp_path / "run"), "--classifier", str(tiny.classifier), "--no-rewrite"]
    result = CliRunner().invoke(cli, ["batch", str(posts), str(other), "--id-column", "postid", *base])
    assert_one_line_error(result, 3, "no column 'postid'", "in any of the 2 inputs", "--id-column")
    assert not (tmp_path / "run").exists()

    result = CliRunner().invoke(cli, ["batch", str(posts), str(other), "--id-column", "post_id", *base])
    assert result.exit_code == 0, result.output
    assert f"{other}: no column 'post_id'" in result.stderr
    ids = [line["id"] for line in read_lines(tmp_path / "run" / "audit.jsonl")]
    assert ids[: len(POSTS)] == [f"p{i}" for i in range(len(POSTS))] and ids[len(POSTS):] == ["more.parquet:0", "more.parquet:1"]
