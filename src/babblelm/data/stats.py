"""Per-source statistics of a prepared data folder: a table and a PNG of line-length distributions.

    table = source_stats("runs/x/data", max_lines=None)   # one row per training source
    print(format_stats(table)); plot_lengths(table, "runs/x/data/lengths.png")

Rows: lines, words and tokens of the selected (allocated) cleaned lines, words per token, and
what each filter removed. Tokens come from the prepared tokenizer's batch encoder (all cores);
`max_lines` caps the lines encoded per source (then tokens and words per token are those of the
first `max_lines` lines, flagged as a sample).
"""

from __future__ import annotations

from itertools import islice
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from .audit import load_manifest
from .blocks import TOKENIZER_DIR
from .corpus import batched
from .prepare import clean_lines


def source_stats(data_dir: str | Path, max_lines: int | None = None) -> list[dict]:
    data_dir = Path(data_dir)
    m = load_manifest(data_dir)
    backend = Tokenizer.from_file(str(data_dir / TOKENIZER_DIR / "tokenizer.json"))
    rows = []
    for name, alloc in m["allocations"].items():
        records = [r for r in m["inputs"]["train"] if r["source"] == name]
        n = alloc["lines"] if max_lines is None else min(alloc["lines"], max_lines)
        lengths, tokens, words = [], 0, 0
        for batch in batched(islice(clean_lines(data_dir, records), n), 4096):
            tokens += sum(len(e.ids) for e in backend.encode_batch(batch, add_special_tokens=False))
            counts = [len(line.split()) for line in batch]
            words += sum(counts)
            lengths.extend(counts)
        src = m["sources"]["train"][name]
        rows.append({
            "source": name, "lines": alloc["lines"], "words": alloc["words"], "tokens": tokens,
            "words_per_token": words / tokens if tokens else 0.0, "sampled": n < alloc["lines"],
            "words_raw": src["words_raw"], "removed": {f: r["words_removed"] for f, r in src["filters"].items()},
            "lines_removed": {f: r["lines_removed"] for f, r in src["filters"].items()},
            "lengths": np.asarray(lengths, dtype=np.int32),
        })  # fmt: skip
    return rows


def format_stats(rows: list[dict]) -> str:
    head = f"{'source':<16}{'lines':>11}{'words':>13}{'tokens':>13}{'words/tok':>10}  filters: words removed (lines dropped)"
    out = [head, "-" * len(head)]
    for r in rows:
        removed = ", ".join(f"{f} {w:,} ({r['lines_removed'][f]:,})" for f, w in r["removed"].items()) or "none"
        tokens = f"{r['tokens']:,}{'*' if r['sampled'] else ''}"
        out.append(f"{r['source']:<16}{r['lines']:>11,}{r['words']:>13,}{tokens:>13}{r['words_per_token']:>10.3f}  {removed}")
    total = {k: sum(r[k] for r in rows) for k in ("lines", "words")}
    out.append(f"{'total':<16}{total['lines']:>11,}{total['words']:>13,}")
    if any(r["sampled"] for r in rows):
        out.append("* tokens of the first --max-lines lines only")
    return "\n".join(out)


def plot_lengths(rows: list[dict], path: str | Path) -> Path:
    """Histograms (log count) of words per line, one line per source, written to `path` as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    top = max((int(np.percentile(r["lengths"], 99)) for r in rows if len(r["lengths"])), default=1)
    bins = np.arange(0, max(top, 1) + 2)
    for r in rows:
        if len(r["lengths"]):
            counts, _ = np.histogram(np.minimum(r["lengths"], top), bins=bins)
            ax.step(bins[:-1], counts, where="post", label=f"{r['source']} (median {int(np.median(r['lengths']))})")
    ax.set(xlabel=f"words per line (clipped at the 99th percentile, {top})", ylabel="lines", yscale="log",
           title="Line lengths of the selected training text")  # fmt: skip
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
