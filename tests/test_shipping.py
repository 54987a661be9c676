"""Shipping: streamed generation for every architecture, `babble generate`, the Hub-ready repository with chck_*
branches, the model card. The OpenAI-compatible server is tested in test_serve.py."""

import json

import pytest
import torch

from babblelm.cli import main
from babblelm.config import load_config
from babblelm.data.tokenizer import train_tokenizer
from babblelm.generate import load_for_generation, stream_text
from babblelm.serve.engine import Engine, Token, eos_ids
from babblelm.serve.sampling import Sampling
from babblelm.models.native import NATIVE
from babblelm.models.registry import get, names, parse_model_section
from babblelm.train.launch import train
from conftest import tiny_raw
from eval_fixtures import write_full_eval

LINES = ["the dog sees the ball .", "a cat is on the mat .", "where is the little dog ?", "she likes the red ball ."] * 50


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("tok")
    train_tokenizer(LINES, vocab_size=300, min_frequency=1, out_dir=out)
    return out


def random_model_folder(arch_name, tokenizer_dir, out):
    """A randomly initialised model of `arch_name` saved with the tokenizer as a Hugging Face folder."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    arch, args = parse_model_section({"arch": arch_name, **get(arch_name).spec.tiny})
    torch.manual_seed(0)
    model = arch.model_class(arch.make_config(args, len(tok), tok.bos_token_id, tok.eos_token_id, tok.pad_token_id))
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.mark.parametrize("arch_name", names())
def test_generation_engine_matches_hf_generate(arch_name, tokenizer_dir, tmp_path):
    model, tok = load_for_generation(random_model_folder(arch_name, tokenizer_dir, tmp_path), device="cpu")
    prompt = tok("the dog sees").input_ids
    ids = torch.tensor([prompt])
    ref = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=6, do_sample=False,
                         pad_token_id=tok.pad_token_id, eos_token_id=None)[0, len(prompt):].tolist()

    def served(sampling: Sampling, n: int = 1, logprobs: int | None = None) -> dict[int, list[Token]]:
        events = []
        engine = Engine(model, eos_ids(model, tok), max_batch=4)
        engine.submit([prompt], sampling, n, logprobs, deliver=events.extend)
        engine.run()
        rows = {}
        for event in events:
            if isinstance(event, Token):
                rows.setdefault(event.row, []).append(event)
        return rows

    steps = served(Sampling(max_new_tokens=6), logprobs=2)[0]
    got = [t.id for t in steps]
    assert got == ref[: len(got)] and (len(got) == 6 or ref[len(got)] == tok.eos_token_id)
    # logprobs are the model's own distribution at each step (teacher-forced forward pass)
    with torch.inference_mode():
        full = torch.log_softmax(model(torch.tensor([prompt + got])).logits[0].float(), -1)
    for k, token in enumerate(steps):
        expect = full[len(prompt) - 1 + k, token.id].item()
        assert token.logprob == pytest.approx(expect, abs=1e-4)
        assert token.top[0][1] >= token.logprob - 1e-6 and len(token.top) == 2
    # sampling: reproducible with a seed, n rows at once
    sample = Sampling(max_new_tokens=5, temperature=0.9, top_k=20, top_p=0.95, seed=3)
    a = {row: [t.id for t in tokens] for row, tokens in served(sample, n=3).items()}
    b = {row: [t.id for t in tokens] for row, tokens in served(sample, n=3).items()}
    assert a == b and all(len(s) <= 5 for s in a.values())
    text = "".join(stream_text(model, tok, "the dog sees", Sampling(max_new_tokens=5)))
    assert text == tok.decode(ref[:5] if len(got) >= 5 else got, skip_special_tokens=True)


def test_sampling_checks():
    with pytest.raises(ValueError, match="exceeds the model's context of 32 tokens"):
        Sampling(max_new_tokens=30).check(prompt_tokens=5, context=32)
    with pytest.raises(ValueError, match="top_p must be in"):
        Sampling(top_p=1.5).check(1, None)
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        Sampling(temperature=-1).check(1, None)
    Sampling(max_new_tokens=10_000).check(5, None)  # no context limit: recurrent state


@pytest.fixture(scope="module")
def run_dir(small_corpus, tmp_path_factory):
    """A trained run whose final model `babble eval` scored on BLiMP and `babble finetune` fine-tuned on BoolQ,
    each writing where it writes by default."""
    root = tmp_path_factory.mktemp("ship")
    run, data = root / "run", write_full_eval(root / "full_eval")
    train(load_config(raw=tiny_raw(small_corpus, run, train={"epochs": 0.2})), progress=False)
    assert main(["eval", str(run), "--tasks", "blimp", "--data", str(data), "--device", "cpu"]) == 0
    assert main(["finetune", str(run), "--tasks", "boolq", "--data", str(data / "glue_filtered"), "--epochs", "1",
                 "--batch-size", "4", "--max-length", "32", "--device", "cpu"]) == 0
    return run


def test_finetuning_a_run_lands_where_the_card_and_submit_read(run_dir):
    """`babble finetune RUN` writes into the run's results/final/finetune: the folder `babble submit` fine-tunes
    into (and reuses) and the model card reads."""
    from babblelm.rundir import FINAL, RunDir, finetune_folder, model_results

    run = RunDir(run_dir)
    assert (run.finetune_results(FINAL) / "boolq.json").is_file()
    assert finetune_folder(model_results(run.checkpoint(FINAL))) == run.finetune_results(FINAL)  # submit's folder


def test_generate_cli_streams(run_dir, capsys):
    assert main(["generate", str(run_dir), "the dog", "--max-new-tokens", "5", "--temperature", "0.8",
                 "--top-k", "40", "--top-p", "0.9", "--seed", "1", "--device", "cpu"]) == 0
    first = capsys.readouterr().out
    assert first.startswith("the dog") and len(first) > len("the dog\n")
    main(["generate", str(run_dir), "the dog", "--max-new-tokens", "5", "--temperature", "0.8", "--seed", "1",
          "--top-k", "40", "--top-p", "0.9", "--device", "cpu", "--checkpoint", "final"])
    assert capsys.readouterr().out == first  # same seed, same text
    assert main(["generate", str(run_dir), "the dog", "--max-new-tokens", "500"]) == 2
    assert "exceeds the model's context" in capsys.readouterr().err


def test_generate_prompts_file(run_dir, tmp_path, capsys):
    """--prompts FILE: one JSON line per prompt, in order, each equal to that prompt continued alone; errors name
    the file and line."""
    prompts = ["the dog", "a cat is on", "where is the little", "the dog"]
    path, out = tmp_path / "prompts.txt", tmp_path / "out.jsonl"
    path.write_text("\n".join(prompts) + "\n", encoding="utf-8")
    flags = ["--max-new-tokens", "6", "--stop", ".", "--device", "cpu"]
    assert main(["generate", str(run_dir), "--prompts", str(path), "--out", str(out), "--max-batch", "2", *flags]) == 0
    assert f"4 continuations written to {out}" in capsys.readouterr().err
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [(r["index"], r["prompt"]) for r in records] == list(enumerate(prompts))
    for record in records:
        assert record["finish_reason"] in ("stop", "length") and "." not in record["text"]
        assert main(["generate", str(run_dir), record["prompt"], *flags]) == 0
        assert capsys.readouterr().out == record["prompt"] + record["text"] + "\n"
    assert main(["generate", str(run_dir), "--prompts", str(path), *flags]) == 0
    assert capsys.readouterr().out == out.read_text(encoding="utf-8")  # standard output by default

    path.write_text("the dog\n\na cat\n", encoding="utf-8")
    assert main(["generate", str(run_dir), "--prompts", str(path), "--device", "cpu"]) == 2
    assert f"{path}:2: empty line; expected one prompt per line" in capsys.readouterr().err
    path.write_text("a cat\n" + "the dog " * 20 + "\n", encoding="utf-8")
    assert main(["generate", str(run_dir), "--prompts", str(path), *flags]) == 2
    assert f"{path}: line 2: the prompt (" in capsys.readouterr().err
    assert main(["generate", str(run_dir), "the dog", "--prompts", str(path)]) == 2
    assert "a PROMPT or --prompts FILE" in capsys.readouterr().err


@pytest.mark.parametrize("arch_name", sorted(NATIVE))
def test_native_export_loads_back_for_the_engine(arch_name, tokenizer_dir, tmp_path):
    """A native export (LlamaForCausalLM, GPT2LMHeadModel) is generated from as babblelm's own model."""
    from babblelm.export import export_model

    folder = random_model_folder(arch_name, tokenizer_dir, tmp_path / "model")
    exported = export_model(folder, tmp_path / "hf", log=lambda *_: None)
    assert json.loads((exported / "config.json").read_text())["model_type"] == NATIVE[arch_name].model_type
    native, tok = load_for_generation(exported, device="cpu")
    original, _ = load_for_generation(folder, device="cpu")
    assert type(native) is type(original)
    ids = torch.tensor([tok("the dog sees the ball").input_ids])
    with torch.no_grad():
        torch.testing.assert_close(native(ids).logits, original(ids).logits)
    sampling = Sampling(max_new_tokens=8)
    assert "".join(stream_text(native, tok, "the dog", sampling)) == "".join(stream_text(original, tok, "the dog",
                                                                                          sampling))


def test_export_branches(run_dir, tmp_path, monkeypatch):
    from babblelm.hubrepo import branches, checkout
    from babblelm.rundir import RunDir

    out = tmp_path / "repo"
    assert main(["export", str(run_dir), str(out), "--branches"]) == 0
    names_ = [folder.name for folder in RunDir(run_dir).milestones()]
    assert names_ and branches(out) == ["main", *names_]  # main first, then the milestones in order
    card = (out / "README.md").read_text()
    results = RunDir(run_dir).results_of("final")
    blimp = json.loads((results / "blimp.json").read_text())["scores"]["blimp"]
    boolq = json.loads((results / "finetune" / "boolq.json").read_text())["scores"]["boolq"]
    for part in ("## Model details", "## How to use", "## Training details", "| wall-clock | ", "## Data",
                 "childes_speaker_tags", "### Zero-shot", f"| blimp | blimp | {blimp:.2f} |", "### Fine-tuning",
                 f"| boolq | accuracy | {boolq:.2f} |", "## Intermediate checkpoints", f"`{names_[0]}`", "## Limitations"):
        assert part in card, part
    assert "not recorded" not in card  # wall-clock and validation loss come from metrics.jsonl

    from transformers import AutoModelForCausalLM

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def weights(folder):
        return AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True).state_dict()

    final = weights(run_dir / "checkpoints" / "final")
    for name in names_:
        folder = checkout(out, name, tmp_path / name)
        assert json.loads((folder / "hyperparameters.json").read_text())["optim"]["lr"] == 3e-3
        assert f"({name})" in (folder / "README.md").read_text()
        want = weights(run_dir / "checkpoints" / name)
        assert all(torch.equal(v, want[k]) for k, v in weights(folder).items())
        assert not all(torch.equal(v, final[k]) for k, v in want.items())
    # transformers reads a local folder as it is on disk: `revision` does not switch branches locally
    local = AutoModelForCausalLM.from_pretrained(out, revision=names_[0], trust_remote_code=True).state_dict()
    assert all(torch.equal(v, final[k]) for k, v in local.items())
    assert main(["export", str(run_dir), str(out), "--branches"]) == 2  # not empty: refused
