"""Load exported folders the way their users do, in an environment without babblelm.

Run as `python check_exports.py SPEC.json OUT_DIR` by tests/test_contract.py inside the official
BabyLM pipeline's pinned environment and inside the newest transformers. It imports only torch and
transformers. For every folder listed in SPEC it writes what it saw to OUT_DIR/<name>.pt:

- zero_shot: the official strict-track loader (AutoProcessor with right padding and offsets,
  AutoModelForCausalLM with trust_remote_code, a right-padded batch of `input_ids`/`attention_mask`,
  logits read as out[0] or out["logits"]), the logits of each sentence's real positions;
- reading: `model(**tokenizer(sentence, return_tensors="pt"))` as the reading task calls it;
- finetune: the official GLUE classifier's base model: AutoConfig's hidden_size, AutoModel, a deep
  copy (its EMA), padded sentence pairs truncated at 512 tokens, the hidden states it pools (the
  output's `last_hidden_state`, since it has no `logits`), and a gradient through a linear head;
  with the 2026 options `--padding_side left --take_final`: the state it reads, `last_hidden_state[:, -1]`
  of the left-padded pairs;
- generate: greedy continuations of a prompt and of a left-padded batch;
- long: a text longer than max_position_embeddings: the logits' shape, or the error message.
"""

import copy
import json
import sys
from pathlib import Path

import torch
import transformers
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoProcessor, AutoTokenizer


def zero_shot(path: str, sentences: list[str], trust_remote_code: bool) -> list[torch.Tensor]:
    processor = AutoProcessor.from_pretrained(path, padding_side="right", revision=None, trust_remote_code=True)
    tokenizer = getattr(processor, "tokenizer", processor)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    encoded = [processor(text=s, return_offsets_mapping=True) for s in sentences]
    ids = [torch.tensor(e["input_ids"]) for e in encoded]
    tokens = torch.nn.utils.rnn.pad_sequence(ids, batch_first=True, padding_value=pad)
    mask = torch.nn.utils.rnn.pad_sequence([torch.ones_like(i) for i in ids], batch_first=True)
    model = AutoModelForCausalLM.from_pretrained(path, trust_remote_code=trust_remote_code, revision=None).eval()
    with torch.no_grad():
        out = model(input_ids=tokens[:, :-1], attention_mask=mask[:, :-1])
    logits = out[0] if isinstance(out, tuple) else out["logits"]
    return [logits[row, : len(i) - 1] for row, i in enumerate(ids)], type(model).__name__


def reading(path: str, sentence: str) -> dict:
    tokenizer = AutoProcessor.from_pretrained(path, trust_remote_code=True)
    model = AutoModelForCausalLM.from_pretrained(path, trust_remote_code=True).eval()
    inputs = tokenizer(sentence, return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits
    return {"keys": sorted(inputs.keys()), "last": logits[0, -1]}


def finetune(path: str, pairs: list[tuple[str, str]]) -> dict:
    hidden_size = AutoConfig.from_pretrained(path, trust_remote_code=True).hidden_size
    model = AutoModel.from_pretrained(path, trust_remote_code=True, revision=None)
    ema = copy.deepcopy(model)
    tokenizer = AutoProcessor.from_pretrained(path, trust_remote_code=True, padding_side="right")
    enc = tokenizer([a for a, _ in pairs], [b for _, b in pairs], return_tensors="pt", padding=True, truncation=True,
                    max_length=512)
    model.train()
    out = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
    has_logits = not isinstance(out, tuple) and getattr(out, "logits", None) is not None
    encoding = out[0] if isinstance(out, tuple) else out.last_hidden_state
    head = torch.nn.Linear(hidden_size, 3)
    head(encoding[:, 0]).sum().backward()
    grads = sum(p.grad.abs().sum().item() for p in model.parameters() if p.grad is not None)
    model.eval()
    left = AutoProcessor.from_pretrained(path, trust_remote_code=True, padding_side="left")
    enc_left = left([a for a, _ in pairs], [b for _, b in pairs], return_tensors="pt", padding=True, truncation=True,
                    max_length=512)
    with torch.no_grad():
        hidden = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
        take_final = model(input_ids=enc_left["input_ids"], attention_mask=enc_left["attention_mask"]).last_hidden_state[:, -1]
    return {"class": type(model).__name__, "ema_class": type(ema).__name__, "hidden_size": hidden_size,
            "has_logits": has_logits, "shape": list(encoding.shape), "grad_sum": grads, "hidden": hidden,
            "mask": enc["attention_mask"], "input_ids": enc["input_ids"], "take_final": take_final}


def generate(path: str, prompts: list[str]) -> dict:
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=True, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(path, trust_remote_code=True).eval()
    with torch.no_grad():
        single = model.generate(**tokenizer(prompts[0], return_tensors="pt"), max_new_tokens=8, do_sample=False)
        batch = model.generate(**tokenizer(prompts, return_tensors="pt", padding=True), max_new_tokens=8,
                               do_sample=False)
    return {"single": single[0].tolist(), "batch_new": batch[:, -8:].tolist()}


def long_input(path: str) -> dict:
    model = AutoModelForCausalLM.from_pretrained(path, trust_remote_code=True).eval()
    length = getattr(model.config, "max_position_embeddings", 64) + 16
    ids = torch.arange(length)[None] % (model.config.vocab_size - 3) + 3
    try:
        with torch.no_grad():
            return {"shape": list(model(ids).logits.shape)}
    except Exception as err:  # noqa: BLE001 (the message is the result)
        return {"error": f"{type(err).__name__}: {err}"}


def main(spec_file: str, out_dir: str) -> None:
    spec = json.loads(Path(spec_file).read_text())
    summary = {"transformers": transformers.__version__, "torch": torch.__version__}
    for name, folder in spec["folders"].items():
        native = "auto_map" not in json.loads((Path(folder) / "config.json").read_text())
        logits, cls = zero_shot(folder, spec["sentences"], trust_remote_code=not native)
        result = {"class": cls, "zero_shot": logits, "reading": reading(folder, spec["sentences"][0]),
                  "finetune": finetune(folder, spec["pairs"]), "generate": generate(folder, spec["prompts"]),
                  "long": long_input(folder)}
        torch.save(result, Path(out_dir) / f"{name}.pt")
        summary[name] = cls
    print("RESULT " + json.dumps(summary))


if __name__ == "__main__":
    main(*sys.argv[1:3])
