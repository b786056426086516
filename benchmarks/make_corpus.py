"""A synthetic but realistic forum dump for benchmarks, written as Parquet without holding it in memory.

    python benchmarks/make_corpus.py --posts 1000000 --out runs/bench/posts-1m.parquet
    python benchmarks/make_corpus.py --posts 100000 --toxic-share 0.02 --out runs/bench/posts-100k-2pct.parquet

Posts are built from the real, human-labelled sentences of ../shared/data (Jigsaw sentences,
Davidson tweets, ParaDetox; see its README): 1 to 6 sentences per post (1 most often, an
exponential tail, as in benchmarks/classify_throughput.py, whose posts are the same for the same
seed), and in a share of the posts (`--toxic-share`, default 0.1) one sentence is a toxic one.
Columns: id, text, forum, created (a timestamp). Rows are written in row groups of `--chunk` posts,
so a corpus of any size is built in constant memory. The data are not copied into the repository:
write corpora under runs/ (ignored by git).
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data"
FORUMS = ("cooking", "cycling", "gaming", "politics", "programming", "music", "parenting", "travel")


def sentence_pools(data: Path = DATA) -> tuple[list[str], list[str]]:
    """(clean sentences, toxic sentences) from ../shared/data, deduplicated by train.data."""
    from train import data as train_data

    examples = train_data.toxicity_examples(str(data))
    return [e.text for e in examples if e.label == 0], [e.text for e in examples if e.label == 1]


def posts(n: int, seed: int = 0, toxic_share: float = 0.1, pools: tuple[list[str], list[str]] | None = None
          ) -> Iterator[str]:
    """`n` posts, one at a time; the same seed and share always give the same posts."""
    clean, toxic = pools or sentence_pools()
    rng = random.Random(seed)
    for _ in range(n):
        k = min(6, 1 + int(rng.expovariate(0.6)))  # 1 sentence most often, a tail up to 6
        sentences = [rng.choice(clean) for _ in range(k)]
        if rng.random() < toxic_share:
            sentences[rng.randrange(k)] = rng.choice(toxic)
        yield " ".join(sentences)


def write_corpus(out: Path, n: int, seed: int = 0, toxic_share: float = 0.1, chunk: int = 50_000) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    out.parent.mkdir(parents=True, exist_ok=True)
    schema = pa.schema([("id", pa.string()), ("text", pa.string()), ("forum", pa.string()),
                        ("created", pa.timestamp("s", tz="UTC"))])
    rng = random.Random(seed + 1)
    start = dt.datetime(2026, 11, 24, tzinfo=dt.timezone.utc)
    tmp = out.with_name(out.name + ".tmp")
    texts = posts(n, seed, toxic_share)
    with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
        for first in range(0, n, chunk):
            size = min(chunk, n - first)
            writer.write_table(pa.table({
                "id": [f"t{first + i}" for i in range(size)],
                "text": [next(texts) for _ in range(size)],
                "forum": [rng.choice(FORUMS) for _ in range(size)],
                "created": [start + dt.timedelta(seconds=int((first + i) * 86400 / max(n, 1))) for i in range(size)],
            }, schema=schema))
    tmp.replace(out)
    return out


def corpus(folder: Path, n: int, toxic_share: float, seed: int = 0) -> Path:
    """The corpus of this size and share under `folder`, written once and reused."""
    path = folder / f"posts-{n}-{round(toxic_share * 100, 2):g}pct-s{seed}.parquet"
    return path if path.exists() else write_corpus(path, n, seed, toxic_share)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posts", type=int, default=100_000)
    parser.add_argument("--toxic-share", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chunk", type=int, default=50_000, help="posts per Parquet row group")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    t = time.perf_counter()
    write_corpus(args.out, args.posts, args.seed, args.toxic_share, args.chunk)
    size = args.out.stat().st_size
    print(f"{args.out}: {args.posts} posts, {size / 1e6:.1f} MB, {time.perf_counter() - t:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
