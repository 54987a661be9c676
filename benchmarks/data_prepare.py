"""Benchmark data preparation at scale: cleaning words/s, tokenizer training time, encoding tokens/s,
peak RSS.

    python benchmarks/data_prepare.py --repeat 10 --work /tmp/babylike_100M   # 100M words
    python benchmarks/data_prepare.py --repeat 1                              # 10M words

Builds a corpus of babylike_10M's training files repeated `--repeat` times (concatenated into
`--work`, outside the repo; dev files linked once), prepares it with the Stream Mixer recipe
(`--recipe`), and prints one JSON line of figures taken from the manifest's stage timings.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO.parent / "shared" / "corpora" / "babylike_10M"


def build_corpus(src: Path, work: Path, repeat: int) -> Path:
    corpus = work / f"corpus_x{repeat}"
    if corpus.is_dir():
        return corpus
    tmp = work / "corpus.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for path in sorted(src.glob("*.train")):
        with open(tmp / path.name, "wb") as out:
            for _ in range(repeat):
                with open(path, "rb") as f:
                    shutil.copyfileobj(f, out, 1 << 22)
    for path in sorted(src.glob("*.dev")):
        (tmp / path.name).symlink_to(path)
    tmp.rename(corpus)
    return corpus


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=1, help="copies of babylike_10M's training text")
    ap.add_argument("--work", default="/tmp/babble_bench_data", help="scratch folder (never the repo)")
    ap.add_argument("--recipe", default=str(REPO / "configs" / "data-streammixer.yaml"))
    ap.add_argument("--vocab", type=int, default=16000)
    args = ap.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    from babblelm.config import load_config
    from babblelm.data.prepare import prepare_data

    work = Path(args.work)
    corpus = build_corpus(SOURCE, work, args.repeat)
    out = work / f"prepared_x{args.repeat}"
    shutil.rmtree(out, ignore_errors=True)
    cfg = load_config(args.recipe, [f"data.corpus={corpus}", "data.track=none", f"tokenizer.vocab_size={args.vocab}"])
    start = time.perf_counter()
    m = prepare_data(cfg.data, cfg.tokenizer, out, progress=False)
    total = time.perf_counter() - start
    t = m["timings_s"]
    words_raw = sum(r["words_raw"] for r in m["inputs"]["train"] + m["inputs"]["dev"])
    tokens = m["splits"]["train"]["tokens"] + m["splits"]["dev"]["tokens"]
    print(json.dumps({
        "repeat": args.repeat, "words_raw": words_raw, "words_train": m["splits"]["train"]["words"],
        "clean_s": t["clean"], "clean_words_per_s": round(words_raw / t["clean"]),
        "allocate_s": t["allocate"], "tokenizer_train_s": t["tokenizer"],
        "encode_s": t["blocks_train"] + t["blocks_dev"],
        "encode_tokens_per_s": round(tokens / (t["blocks_train"] + t["blocks_dev"])),
        "hash_outputs_s": t["hash_outputs"], "total_s": round(total, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }))


if __name__ == "__main__":
    main()
