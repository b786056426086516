"""moderator: batch content moderation: toxicity scoring, LoRA detox rewriting, audit logs.

    from moderator.config import JobConfig
    from moderator.pipeline import run

    result = run(JobConfig.load("job.toml"), ["dump.parquet"])
"""

__version__ = "0.1.0"
