import pytest

from moderator.config import JobConfig, describe, read_toml
from moderator.errors import ConfigError


def test_defaults_are_valid_and_round_trip_through_describe(tmp_path):
    config = JobConfig()
    assert config.policy.remove_threshold is None  # removal by confidence is opt-in
    assert 0 < config.policy.rewrite_threshold < 1
    text = describe(config)
    path = tmp_path / "job.toml"
    path.write_text(text)
    assert read_toml(path)["policy"]["rewrite_threshold"] == config.policy.rewrite_threshold
    assert JobConfig.load(path) == config  # unset settings are commented out, so defaults stay


def test_file_then_flags_precedence(tmp_path):
    path = tmp_path / "job.toml"
    path.write_text('[policy]\nrewrite_threshold = 0.3\nremove_threshold = 0.9\n[input]\ntext_column = "body"\n')
    config = JobConfig.load(path, {"policy": {"rewrite_threshold": 0.4}})
    assert config.policy.rewrite_threshold == 0.4  # the flag wins
    assert config.policy.remove_threshold == 0.9  # the file beats the default
    assert config.input.text_column == "body"
    assert config.input.id_column == "id"  # untouched default


def test_ints_are_accepted_for_floats_and_lists_become_tuples(tmp_path):
    path = tmp_path / "job.toml"
    path.write_text('[policy]\nremove_threshold = 1\n[classifier]\ntoxic_labels = ["toxic", "insult"]\n')
    config = JobConfig.load(path)
    assert config.policy.remove_threshold == 1.0 and isinstance(config.policy.remove_threshold, float)
    assert config.classifier.toxic_labels == ("toxic", "insult")


@pytest.mark.parametrize(
    "toml, message",
    [
        ("[polcy]\nx = 1\n", "unknown section [polcy] (did you mean 'policy'?)"),
        ("[policy]\nrewrite_treshold = 0.2\n", "unknown setting 'rewrite_treshold' (did you mean 'rewrite_threshold'?)"),
        ("[policy]\nrewrite_threshold = 'high'\n", "rewrite_threshold must be float, not str"),
        ("[policy]\nrewrite_threshold = 0.9\nremove_threshold = 0.5\n", "is above remove_threshold"),
        ("[policy]\nremove_threshold = 1.5\n", "must be between 0.0 and 1.0"),
        ("[rewriter]\nengine = 'tgi'\n", "engine = 'tgi' is not one of: auto, vllm, hf"),
        ("[rewriter]\nenabled = 1\n", "enabled must be bool, not int"),
        ("[rewriter]\nlora_serving = 'fused'\n", "lora_serving = 'fused' is not one of: auto, request, merged"),
        ("[rewriter]\ncompile = 'yes'\n", "compile = 'yes' is not one of: auto, on, off"),
        ("[rewriter]\nsample_when = 'never'\n", "sample_when = 'never' is not one of: greedy_fails, always"),
        ("[input]\nbatch_size = 0\n", "batch_size = 0 must be greater than 0"),
        ("[rewriter]\nmax_new_tokens = 2000\n", "leaves no room for the prompt"),
        ("policy = 3\n", "[policy] must be a table"),
        ("[policy\n", "is not valid TOML"),
        ("[output]\nfile_mode = 'rw-------'\n", "file_mode = 'rw-------' is not an octal mode"),
        ("[output]\nfile_mode = '0044'\n", "must let the owner read and write"),
        ("[output]\nfile_mode = '0777'\n", "sets execute bits"),
        ("[output]\nfile_mode = '0700'\n", "sets execute bits"),
        ("[output]\nfile_mode = '0666'\n", "lets any user write"),
        ("[output]\naudit_text = 'yes'\n", "audit_text must be bool, not str"),
        ("[policy]\nunrewritable_categories = ['threat', 'hate']\n",
         "[policy] unrewritable_categories = 'hate' is not one of: insult, threat, identity_attack, obscene, sexual"),
        ("[policy]\nunrewritable_categories = 'threat'\n", "unrewritable_categories must be a list of strings"),
        ("[policy]\ncategory_threshold = 1.5\n", "category_threshold = 1.5 must be between 0.0 and 1.0"),
    ],
)
def test_bad_settings_name_the_file_and_the_fix(tmp_path, toml, message):
    path = tmp_path / "job.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as error:
        JobConfig.load(path)
    assert message in str(error.value)
    assert str(path) in str(error.value)


def test_unrewritable_categories_from_a_file_and_as_moderate_config_prints_them(tmp_path):
    config = JobConfig()
    assert config.policy.unrewritable_categories == ("threat", "identity_attack")
    assert config.policy.category_threshold == 0.7 and config.policy.thresholds["category_threshold"] == 0.7
    assert 'unrewritable_categories = ["threat", "identity_attack"]' in describe(config)
    path = tmp_path / "job.toml"
    path.write_text('[policy]\nunrewritable_categories = ["threat", "sexual"]\ncategory_threshold = 1\n')
    loaded = JobConfig.load(path)
    assert loaded.policy.unrewritable_categories == ("threat", "sexual")
    assert loaded.policy.category_threshold == 1.0
    path.write_text(describe(loaded))
    assert JobConfig.load(path) == loaded
    path.write_text("[policy]\nunrewritable_categories = []\n")  # every category is tried
    assert JobConfig.load(path).policy.unrewritable_categories == ()


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        JobConfig.load(tmp_path / "nope.toml")
