"""Time to the first training step of `babble run`, and how often it calls `prepare_data` on the way.

    python benchmarks/first_step.py --work /tmp/first_step [--words 3000000 | --corpus ../shared/corpora/babylike_10M]

Runs the stages of `babble run` (run.run_all) on a demo-grammar corpus of --words words (or the
corpus folder --corpus, capped at the strict-small track's 10M words) and a tiny
Transformer, stopping as the training loop is entered (Training.loop), twice: in a fresh run folder
(the data are prepared: read, cleaned, tokenized) and again in that folder after deleting what
training wrote (the prepared data are reused: every input and output file is hashed to show they
still match). Each time it prints the seconds from the start of run_all to the first step and the
number of `prepare_data` calls. Which babblelm it measures is whichever is imported (set PYTHONPATH
to a checkout's src/ to measure that checkout); run it under the CPU lock.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path


class FirstStep(Exception):
    """Raised as the training loop is entered: everything before the first step is done."""


def measure(cfg, log) -> tuple[float, int]:
    """(seconds from run_all to the first step, prepare_data calls) for one `babble run` of `cfg`."""
    import babblelm.train.plan as plan
    from babblelm.run import run_all
    from babblelm.train.engine import Training

    calls, prepare, loop = [], plan.prepare_data, Training.loop

    def counted(*args, **kwargs):
        calls.append(args[2] if len(args) > 2 else kwargs.get("out_dir"))
        return prepare(*args, **kwargs)

    def stop(self, *args, **kwargs):
        raise FirstStep

    plan.prepare_data, Training.loop = counted, stop
    os.environ["BABBLE_DEBUG"] = "1"  # a stage's exception propagates: FirstStep ends run_all
    start = time.perf_counter()
    try:
        run_all(cfg, progress=False, log=log)
    except FirstStep:
        pass
    else:
        raise SystemExit("training never started: is the run folder already finished?")
    finally:
        seconds = time.perf_counter() - start
        plan.prepare_data, Training.loop = prepare, loop
        del os.environ["BABBLE_DEBUG"]
    return seconds, len(calls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="a scratch folder (emptied)")
    parser.add_argument("--words", type=int, default=3_000_000, help="demo corpus words (default: 3,000,000)")
    parser.add_argument("--corpus", type=Path, help="a corpus folder to prepare instead of the demo corpus")
    args = parser.parse_args()

    import babblelm
    from babblelm.config import load_config
    from babblelm.data import synthetic
    from babblelm.rundir import RunDir

    shutil.rmtree(args.work, ignore_errors=True)
    corpus = args.corpus or args.work / "corpus"
    if args.corpus is None:
        synthetic.write_demo_corpus(corpus, words=args.words, seed=0)
    raw = {"run": {"name": "first-step", "out_dir": str(args.work / "run"), "seed": 0, "device": "cpu"},
           "data": {"corpus": str(corpus), "seq_len": 64, "track": "none" if args.corpus is None else "strict-small"},
           "tokenizer": {"vocab_size": 1024},
           "model": {"arch": "transformer", "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                     "intermediate_size": 64, "max_position_embeddings": 64},
           "train": {"epochs": 1, "batch_size": 8, "grad_accum": 1}}
    cfg = load_config(raw=raw)
    what = corpus if args.corpus else f"{args.words:,} words of the demo grammar"
    print(f"babblelm {babblelm.__version__} from {Path(babblelm.__file__).parent}; {what}; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    print("| case | seconds to the first step | prepare_data calls |\n|---|---|---|")
    for case in ("fresh folder (data prepared)", "rerun (prepared data reused, hashed)"):
        seconds, calls = measure(cfg, log=lambda _: None)
        print(f"| {case} | {seconds:.2f} | {calls} |", flush=True)
        run = RunDir(cfg.out_dir)
        run.clear(log=lambda _: None)  # keeps data/: the second case reuses it


if __name__ == "__main__":
    main()
