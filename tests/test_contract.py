"""The architecture contract (tests/contract.py) over every registered architecture plus a minimal
extra one added the documented way, and every export checked where users load it: the official
BabyLM pipeline's pinned environment (transformers 4.51.3), the newest transformers, and
lm-evaluation-harness, none of them with babblelm installed."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

import babblelm.models
import contract
import envs
from babblelm.data.tokenizer import train_tokenizer
from babblelm.export import export_model
from babblelm.models import registry
from babblelm.models.native import NATIVE
from babblelm.models.registry import Spec, get, names

TESTS = Path(__file__).resolve().parent
ARCHS = [*names(), "minimal"]
SENTENCES = ["the dog sees the ball .", "where is the little dog ?", "Anna says she likes the cat ."]
PAIRS = [("the dog runs .", "does the cat run ?"), ("a cat is on the mat .", "it is red .")]
PROMPTS = ["the little dog", "where is the red ball on the"]


@pytest.fixture(scope="module", autouse=True)
def minimal_arch(tmp_path_factory):
    """tests/minimal_arch.py dropped next to layers.py as `babblelm.models.minimal`, plus its registry line."""
    folder = tmp_path_factory.mktemp("plugin")
    models_dir = Path(babblelm.models.__file__).parent
    shutil.copy(models_dir / "layers.py", folder / "layers.py")  # export copies the module's relative imports
    shutil.copy(TESTS / "minimal_arch.py", folder / "minimal.py")
    babblelm.models.__path__.append(str(folder))
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(registry._SPECS, "minimal", Spec("babblelm.models.minimal", "MinimalConfig", "MinimalForCausalLM",
                                                    tiny=dict(hidden_size=32, num_hidden_layers=2, intermediate_size=64),
                                                    state="constant"))
        yield
    babblelm.models.__path__.remove(str(folder))


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from babblelm.data.synthetic import Grammar
    import random

    grammar = Grammar(random.Random(0))
    lines = [" ".join(grammar.utterance()) for _ in range(2000)] + SENTENCES + [p for pair in PAIRS for p in pair]
    folder = tmp_path_factory.mktemp("tokenizer")
    train_tokenizer(lines, vocab_size=400, min_frequency=2, out_dir=folder)
    return AutoTokenizer.from_pretrained(folder)


@pytest.mark.parametrize("arch", ARCHS)
def test_causal(arch):
    contract.check_causal(arch)


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("arch", ARCHS)
def test_padding_side_changes_nothing(arch, side):
    contract.check_padding(arch, side)


@pytest.mark.parametrize("arch", ARCHS)
def test_cached_chunks_equal_the_full_text(arch):
    contract.check_cached_chunks(arch)


@pytest.mark.parametrize("arch", ARCHS)
def test_cached_generation_equals_recomputation(arch):
    contract.check_generate(arch)


@pytest.mark.parametrize("arch", ARCHS)
def test_left_padded_batch_generates_as_single_prompts(arch):
    contract.check_left_padded_generate(arch)


@pytest.mark.parametrize("arch", ARCHS)
def test_beam_search(arch):
    contract.check_beam_search(arch)


@pytest.mark.parametrize("arch", ARCHS)
def test_shared_prefix_scoring_equals_whole_text_scoring(arch, tokenizer):
    contract.check_shared_prefix_scoring(arch, tokenizer)


@pytest.mark.parametrize("arch", ARCHS)
def test_slot_decoding_equals_each_sequence_alone(arch):
    contract.check_slot_decoding(arch)


@pytest.mark.parametrize("arch", ARCHS)
def test_served_together_equals_served_alone(arch, tokenizer):
    contract.check_served_alone_and_together(arch, tokenizer)


@pytest.mark.parametrize("arch", ARCHS)
def test_decoding_state_size(arch):
    contract.check_state_size(arch)


@pytest.mark.parametrize("arch", ARCHS)
def test_long_inputs(arch, caplog):
    contract.check_long_inputs(arch, caplog)


@pytest.mark.parametrize("arch", ARCHS)
def test_gradient_checkpointing(arch):
    contract.check_gradient_checkpointing(arch)


@pytest.mark.parametrize("arch", ARCHS)
def test_outputs_and_loss(arch):
    contract.check_outputs(arch)


@pytest.mark.parametrize("arch", ARCHS)
def test_bad_inputs(arch):
    contract.check_bad_inputs(arch)


@pytest.mark.parametrize("arch", ARCHS)
def test_tied_embeddings(arch):
    contract.check_tied_embeddings(arch)


@pytest.mark.parametrize("arch", ARCHS)
def test_training_step_and_exact_resume(arch, small_corpus, tmp_path):
    contract.check_training_and_resume(arch, small_corpus, tmp_path)


# --- exports, loaded where users load them -------------------------------------------------------


def reference(model, tokenizer) -> dict:
    """What babblelm's own model gives for the inputs tests/foreign/check_exports.py feeds the export; the
    GLUE states `babble finetune` pools under each rule set, from its own tokenizer and classifier."""
    from babblelm.eval.finetune import POOLING, SequenceClassifier

    pooled = {}
    for rules, (side, position) in POOLING.items():
        padded = AutoTokenizer.from_pretrained(tokenizer.name_or_path, padding_side=side)
        enc = padded([a for a, _ in PAIRS], [b for _, b in PAIRS], return_tensors="pt", padding=True)
        with torch.no_grad():
            pooled[rules] = SequenceClassifier(model.model, 2, position).pooled(enc["input_ids"], enc["attention_mask"])
    with torch.no_grad():
        zero_shot = []
        for sentence in SENTENCES:
            ids = torch.tensor([tokenizer(sentence)["input_ids"]])
            zero_shot.append(model(ids[:, :-1]).logits[0])
        reading_last = model(torch.tensor([tokenizer(SENTENCES[0])["input_ids"]])).logits[0, -1]
        enc = tokenizer([a for a, _ in PAIRS], [b for _, b in PAIRS], return_tensors="pt", padding=True)
        hidden = model.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
        left = AutoTokenizer.from_pretrained(tokenizer.name_or_path, padding_side="left")
        single = model.generate(**left(PROMPTS[0], return_tensors="pt"), max_new_tokens=8, do_sample=False)
        batch = model.generate(**left(PROMPTS, return_tensors="pt", padding=True), max_new_tokens=8, do_sample=False)
    return {"zero_shot": zero_shot, "reading_last": reading_last, "hidden": hidden, "mask": enc["attention_mask"], "single": single[0].tolist(),
            "batch_new": batch[:, -8:].tolist(), "pooled": pooled}


@pytest.fixture(scope="module")
def exported(tokenizer, tmp_path_factory):
    """{arch: (exported folder, reference results)} for a tiny model of every architecture."""
    root = tmp_path_factory.mktemp("exports")
    out = {}
    for arch in ARCHS:
        spec = get(arch)
        model = contract.tiny_model(arch, vocab=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                                    eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
        checkpoint = root / f"checkpoint-{arch}"
        spec.config_class.register_for_auto_class()
        spec.model_class.register_for_auto_class("AutoModelForCausalLM")
        model.save_pretrained(checkpoint)
        tokenizer.save_pretrained(checkpoint)
        out[arch] = (export_model(checkpoint, root / arch, log=lambda msg: pytest.fail(msg)), reference(model, tokenizer))
    return out


_FOREIGN: dict[str, dict] = {}


def foreign(env: str, exported, tmp_path_factory) -> dict:
    """Run tests/foreign/check_exports.py on every export in environment `env` (once per module)."""
    if env not in _FOREIGN:
        envs.assert_no_babblelm(env)
        work = tmp_path_factory.mktemp(f"foreign-{env}")
        spec = {"folders": {arch: str(folder) for arch, (folder, _) in exported.items()}, "sentences": SENTENCES,
                "pairs": PAIRS, "prompts": PROMPTS}
        (work / "spec.json").write_text(json.dumps(spec))
        proc = envs.run(env, ["python", TESTS / "foreign" / "check_exports.py", work / "spec.json", work], cwd=work)
        summary = json.loads(proc.stdout.split("RESULT ", 1)[1])
        _FOREIGN[env] = {"summary": summary, **{arch: torch.load(work / f"{arch}.pt") for arch in exported}}
    return _FOREIGN[env]


@pytest.mark.parametrize("env", ["official", "lm-eval"])
@pytest.mark.parametrize("arch", ARCHS)
def test_export_loads_scores_finetunes_and_generates_without_babblelm(arch, env, exported, tmp_path_factory):
    results = foreign(env, exported, tmp_path_factory)
    if env == "official":
        assert results["summary"]["transformers"] == "4.51.3"
    got, (_, ref) = results[arch], exported[arch]
    for theirs, mine in zip(got["zero_shot"], ref["zero_shot"], strict=True):
        torch.testing.assert_close(theirs, mine, atol=1e-4, rtol=0)
    assert got["reading"]["keys"] == ["attention_mask", "input_ids"]
    torch.testing.assert_close(got["reading"]["last"], ref["reading_last"], atol=1e-4, rtol=0)
    tune = got["finetune"]
    assert not tune["has_logits"] and tune["class"] == tune["ema_class"] and tune["grad_sum"] > 0
    assert tune["shape"][-1] == tune["hidden_size"]
    real = ref["mask"].bool()
    torch.testing.assert_close(tune["hidden"][real], ref["hidden"][real], atol=1e-4, rtol=0)
    torch.testing.assert_close(tune["take_final"], ref["pooled"]["2026"], atol=1e-4, rtol=0)  # left padding, [:, -1]
    torch.testing.assert_close(tune["hidden"][:, 0], ref["pooled"]["2025"], atol=1e-4, rtol=0)  # right padding, [:, 0]
    assert got["generate"] == {"single": ref["single"], "batch_new": ref["batch_new"]}
    if get(arch).spec.positions == "learned":  # transformers' own GPT-2 fails with its own message
        assert "exceeds max_position_embeddings" in got["long"]["error"] or (arch in NATIVE and "error" in got["long"])
    else:
        assert "error" not in got["long"], got["long"]


def test_transformer_exports_as_native_llama(exported, tmp_path_factory):
    folder, _ = exported["transformer"]
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "llama" and config["architectures"] == ["LlamaForCausalLM"]
    assert "auto_map" not in config and not list(folder.glob("*.py"))
    for env in ("official", "lm-eval"):  # loaded there with trust_remote_code=False
        assert foreign(env, exported, tmp_path_factory)["transformer"]["class"] == "LlamaForCausalLM"


def test_gpt2_exports_as_native_gpt2(exported, tmp_path_factory):
    folder, _ = exported["gpt2"]
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "gpt2" and config["architectures"] == ["GPT2LMHeadModel"]
    assert "auto_map" not in config and not list(folder.glob("*.py"))
    for env in ("official", "lm-eval"):  # loaded there with trust_remote_code=False
        assert foreign(env, exported, tmp_path_factory)["gpt2"]["class"] == "GPT2LMHeadModel"


def test_remote_code_exports_name_the_base_model_for_automodel(exported):
    for arch in ARCHS:
        if arch in NATIVE:
            continue
        folder, _ = exported[arch]
        auto_map = json.loads((folder / "config.json").read_text())["auto_map"]
        assert set(auto_map) == {"AutoConfig", "AutoModel", "AutoModelForCausalLM"}
        assert "layers.py" in {p.name for p in folder.glob("*.py")}


LM_EVAL_TASK = """task: babble_pairs
dataset_path: json
dataset_name: null
dataset_kwargs:
  data_files: {data}
test_split: train
output_type: multiple_choice
doc_to_text: ""
doc_to_choice: "{{{{[sentence_good, sentence_bad]}}}}"
doc_to_target: 0
target_delimiter: ""
metric_list:
  - metric: acc
"""


@pytest.mark.parametrize("arch", ARCHS)
def test_lm_eval_scores_the_export_as_babblelm_scores_minimal_pairs(arch, exported, tokenizer, tmp_path):
    """`lm_eval --model hf` (the 2026 multilingual track's evaluator) on a local multiple-choice task
    of minimal pairs: its log-likelihoods are babblelm's sentence scores, so its accuracy is ours."""
    from babblelm.data import synthetic
    from babblelm.eval.scoring import sentence_logprobs
    from babblelm.eval.tasks import evaluate_task

    synthetic.write_minimal_pairs(tmp_path / "pairs", pairs_per_phenomenon=4, seed=1)
    records = [json.loads(line) for f in sorted((tmp_path / "pairs").glob("*.jsonl")) for line in f.read_text().splitlines()]
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (tmp_path / "tasks" / "babble_pairs.yaml").write_text(LM_EVAL_TASK.format(data=tmp_path / "tasks" / "pairs.jsonl"))
    folder, _ = exported[arch]
    envs.run("lm-eval", ["lm_eval", "--model", "hf", "--model_args", f"pretrained={folder},trust_remote_code=True",
                         "--tasks", "babble_pairs", "--include_path", tmp_path / "tasks", "--device", "cpu",
                         "--batch_size", "8", "--output_path", tmp_path / "results", "--log_samples"], cwd=tmp_path)
    results = json.loads(next((tmp_path / "results").rglob("results*.json")).read_text())
    samples = [json.loads(line) for line in next((tmp_path / "results").rglob("samples*.jsonl")).read_text().splitlines()]
    samples.sort(key=lambda sample: sample["doc_id"])
    theirs = [float(option[0]) for sample in samples for option in sample["filtered_resps"]]

    model = contract.tiny_model(arch, vocab=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                                eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    good = sentence_logprobs(model, tokenizer, [r["sentence_good"] for r in records])
    bad = sentence_logprobs(model, tokenizer, [r["sentence_bad"] for r in records])
    assert theirs == pytest.approx([score for pair in zip(good, bad) for score in pair], abs=1e-4)
    ours = evaluate_task(model, tokenizer, "blimp", tmp_path / "pairs", rules="2025")  # macro over UIDs = micro
    assert ours["n_items"] == len(records) == 4 * len(ours["by_uid"])
    decided = [abs(g - b) > 1e-4 for g, b in zip(good, bad)]  # float noise may flip an exact tie, nothing else
    agree = [(s["acc"] == 1.0) == (g >= b) for s, g, b in zip(samples, good, bad)]
    assert all(a for a, d in zip(agree, decided) if d)
    if all(decided):
        assert 100 * results["results"]["babble_pairs"]["acc,none"] == pytest.approx(ours["scores"]["blimp"], abs=1e-9)
