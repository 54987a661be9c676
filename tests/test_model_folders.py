"""Model folders are checked when they are loaded (eval, generate, serve, export, fine-tuning): damaged weights,
configs and tokenizers are one-line errors naming the file and tensor, exit 1, with nothing written; a folder's own
code runs only with --trust-remote-code unless babblelm or transformers implements its architecture. The kinds of
damage are benchmarks/damaged_models.py's (which also tries held-out kinds on a llama-26m-sized export)."""

import json
import re
import shutil
import sys
from pathlib import Path

import pytest
import torch

from babblelm.cli import main
from babblelm.data.tokenizer import train_tokenizer
from babblelm.export import export_model
from babblelm.models.registry import get, parse_model_section
from eval_fixtures import write_eval_data

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from damaged_models import DAMAGE, damage  # noqa: E402  (the kinds of damage, shared with the benchmark)

LINES = ["the dog sees the ball .", "a cat is on the mat .", "where is the little dog ?", "she likes the red ball ."] * 50


def checkpoint(arch_name: str, tokenizer_dir, out):
    """A random model of `arch_name` saved as training saves a checkpoint (modeling code, auto_map, tokenizer)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    arch, args = parse_model_section({"arch": arch_name, **get(arch_name).spec.tiny})
    arch.config_class.register_for_auto_class()
    arch.model_class.register_for_auto_class("AutoModelForCausalLM")
    torch.manual_seed(0)
    model = arch.model_class(arch.make_config(args, len(tok), tok.bos_token_id, tok.eos_token_id, tok.pad_token_id))
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A native Llama export, a BLaLM export (babblelm's code, auto_map), eval data, a second (larger) tokenizer."""
    root = tmp_path_factory.mktemp("folders")
    train_tokenizer(LINES, vocab_size=300, min_frequency=1, out_dir=root / "tok")
    train_tokenizer(LINES * 3 + [f"word{i} other{i}" for i in range(400)], vocab_size=600, min_frequency=1,
                    out_dir=root / "big")
    llama = export_model(checkpoint("transformer", root / "tok", root / "ckpt"), root / "llama", log=pytest.fail)
    blalm = export_model(checkpoint("blalm", root / "tok", root / "blalm-ckpt"), root / "blalm")
    assert json.loads((llama / "config.json").read_text())["model_type"] == "llama"
    return {"llama": llama, "blalm": blalm, "ckpt": root / "ckpt", "data": write_eval_data(root / "eval"),
            "big": root / "big"}


def config(folder) -> dict:
    return json.loads((folder / "config.json").read_text())


@pytest.mark.parametrize("kind", DAMAGE)
def test_a_damaged_export_is_refused_by_eval_and_generate(folders, tmp_path, capsys, kind):
    folder = shutil.copytree(folders["llama"], tmp_path / "model")
    named = damage(folder, kind, folders["big"])
    out = tmp_path / "results"
    assert main(["eval", str(folder), "--tasks", "blimp", "--data", str(folders["data"]), "--out", str(out),
                 "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and named in err, err
    assert not out.exists()  # no result written
    assert main(["generate", str(folder), "the dog", "--max-new-tokens", "3", "--device", "cpu"]) == 1
    assert named in capsys.readouterr().err


def test_a_damaged_export_is_refused_by_finetune_and_serve(folders, tmp_path, capsys):
    import os
    import socket
    import subprocess

    from eval_fixtures import write_jsonl

    folder = shutil.copytree(folders["llama"], tmp_path / "model")
    named = damage(folder, "NaN weights", folders["big"])
    records = [{"sentence1": "The cat sat.", "sentence2": "A cat sat.", "label": 0}] * 4
    write_jsonl(tmp_path / "glue" / "rte.train.jsonl", records)
    write_jsonl(tmp_path / "glue" / "rte.valid.jsonl", records)
    assert main(["finetune", str(folder), "--tasks", "rte", "--data", str(tmp_path / "glue"), "--epochs", "1",
                 "--device", "cpu", "--out", str(tmp_path / "ft")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and named in err and not (tmp_path / "ft").exists()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    src = Path(__file__).resolve().parents[1] / "src"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "babblelm.cli", "serve", str(folder), "--port", str(port), "--device",
                           "cpu"], capture_output=True, text=True, env=env, timeout=120)  # never starts serving
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and named in proc.stderr, proc.stderr


@pytest.mark.parametrize("kind", ["renamed weights", "NaN weights", "one more layer in config.json", "truncated weights"])
def test_a_damaged_checkpoint_is_refused_by_export(folders, tmp_path, kind):
    folder = shutil.copytree(folders["ckpt"], tmp_path / "ckpt")
    named = damage(folder, kind, folders["big"])
    with pytest.raises(ValueError, match=re.escape(named)):  # modelfolder.ModelFolderError
        export_model(folder, tmp_path / "hf")
    assert not (tmp_path / "hf").exists() and not list(tmp_path.glob(".*"))


def test_heads_that_do_not_divide_the_width_in_a_babblelm_config(folders, tmp_path, capsys):
    folder = shutil.copytree(folders["blalm"], tmp_path / "model")
    (folder / "config.json").write_text(json.dumps({**config(folder), "num_attention_heads": 3}))
    assert main(["generate", str(folder), "the dog", "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{folder / 'config.json'}: not a usable blalm config" in err


def test_a_folders_own_code_runs_only_when_trusted(folders, tmp_path, capsys):
    """A folder of an architecture nobody implements runs its auto_map module only with --trust-remote-code; a
    babblelm export (babblelm's own architecture) loads with the installed code, whatever its *.py files say."""
    marker = tmp_path / "ran"
    foreign = shutil.copytree(folders["llama"], tmp_path / "foreign")
    (foreign / "evil.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n"
        "from transformers import LlamaConfig, LlamaForCausalLM\n"
        "class EvilConfig(LlamaConfig):\n    model_type = 'evil'\n"
        "class EvilForCausalLM(LlamaForCausalLM):\n    config_class = EvilConfig\n")
    (foreign / "config.json").write_text(json.dumps({**config(foreign), "model_type": "evil", "auto_map": {
        "AutoConfig": "evil.EvilConfig", "AutoModelForCausalLM": "evil.EvilForCausalLM"}}))
    assert main(["generate", str(foreign), "the dog", "--max-new-tokens", "3", "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "would run the folder's own code (evil.py)" in err and "--trust-remote-code" in err
    assert not marker.exists()
    assert main(["generate", str(foreign), "the dog", "--max-new-tokens", "3", "--device", "cpu",
                 "--trust-remote-code"]) == 0
    assert marker.read_text() == "ran"

    marker.unlink()
    ours = shutil.copytree(folders["blalm"], tmp_path / "ours")
    assert config(ours)["auto_map"]  # an export that carries babblelm's modeling code
    for module in ours.glob("*.py"):
        module.write_text(f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n" + module.read_text())
    assert main(["generate", str(ours), "the dog", "--max-new-tokens", "3", "--device", "cpu"]) == 0
    assert not marker.exists()  # babblelm's installed code ran, not the folder's
