"""Where babblelm exports load: every architecture x transformers release, without babblelm.

For a tiny model of every architecture (the registry's tiny shape, perturbed weights, a BPE
tokenizer trained on the demo grammar), export the folder, then in one virtualenv per release
(built under .venvs/ by tests/envs.py; the first release is the official BabyLM pipeline's pins)
load it the way its users do (tests/foreign/check_exports.py: the official zero-shot loader, the
reading task's call, the GLUE classifier's AutoModel path, greedy and left-padded generation, a
text past max_position_embeddings) and compare with babblelm's own model:

    python benchmarks/compat_matrix.py                      # 4.51.3 (pins), 4.57.6, 5.0.0, 5.17.0, newest
    python benchmarks/compat_matrix.py --versions 4.51.3 5.24.0

Prints one Markdown table: the max |logit difference| over the zero-shot inputs, the max |hidden
state difference| of AutoModel, whether generation matched token for token, and what a long text
gave. Building each environment takes a minute or two the first time.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO / "tests")]

DEFAULT_VERSIONS = ["4.51.3", "4.57.6", "5.0.0", "5.17.0", "newest"]


def env_for(version: str) -> str:
    """The tests/envs.py environment name for a transformers release (4.51.3: the official pins)."""
    import envs

    if version == "4.51.3":
        return "official"
    if version == "newest":
        return "lm-eval"
    name = f"transformers-{version}"
    envs.REQUIREMENTS[name] = [envs.TORCH, f"transformers=={version}", "numpy"]
    return name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--versions", nargs="+", default=DEFAULT_VERSIONS)
    args = parser.parse_args()

    import torch

    import envs
    import test_contract as tc
    from babblelm.data.synthetic import Grammar
    from babblelm.data.tokenizer import train_tokenizer
    from babblelm.export import export_model
    from babblelm.models.registry import get, names
    from contract import tiny_model

    work = Path(tempfile.mkdtemp(prefix="compat-"))
    import random

    grammar = Grammar(random.Random(0))
    lines = [" ".join(grammar.utterance()) for _ in range(2000)] + tc.SENTENCES + [p for pair in tc.PAIRS for p in pair]
    tokenizer = train_tokenizer(lines, vocab_size=400, min_frequency=2, out_dir=work / "tokenizer")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(work / "tokenizer")
    folders, refs = {}, {}
    for arch in names():
        spec = get(arch)
        model = tiny_model(arch, vocab=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                           eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
        spec.config_class.register_for_auto_class()
        spec.model_class.register_for_auto_class("AutoModelForCausalLM")
        model.save_pretrained(work / f"checkpoint-{arch}")
        tokenizer.save_pretrained(work / f"checkpoint-{arch}")
        folders[arch] = str(export_model(work / f"checkpoint-{arch}", work / arch, log=lambda _: None))
        refs[arch] = tc.reference(model, tokenizer)
    spec_file = work / "spec.json"
    spec_file.write_text(json.dumps({"folders": folders, "sentences": tc.SENTENCES, "pairs": tc.PAIRS,
                                     "prompts": tc.PROMPTS}))

    rows = []
    for version in args.versions:
        name = env_for(version)
        out = work / name
        out.mkdir()
        proc = envs.run(name, ["python", REPO / "tests" / "foreign" / "check_exports.py", spec_file, out], cwd=out)
        summary = json.loads(proc.stdout.split("RESULT ", 1)[1])
        for arch in folders:
            got, ref = torch.load(out / f"{arch}.pt"), refs[arch]
            logit_diff = max((a - b).abs().max().item() for a, b in zip(got["zero_shot"], ref["zero_shot"]))
            real = ref["mask"].bool()
            hidden_diff = (got["finetune"]["hidden"][real] - ref["hidden"][real]).abs().max().item()
            generated = got["generate"] == {"single": ref["single"], "batch_new": ref["batch_new"]}
            long = "error: learned table" if "error" in got["long"] else f"ok ({got['long']['shape'][1]} tokens)"
            rows.append((arch, f"transformers {summary['transformers']}", got["class"], f"{logit_diff:.1e}",
                         f"{hidden_diff:.1e}", "yes" if generated else "NO", long))
    print("| architecture | environment | loaded as | max logit diff | AutoModel hidden diff | generation equal | long text |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
