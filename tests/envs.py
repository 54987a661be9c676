"""The real environments that exported folders are checked in, not imitations of them.

- `official`: the official BabyLM evaluation pipeline's pins (babylm/evaluation-pipeline-2025
  requirements.txt, identical in the 2026 strict track): transformers 4.51.3, huggingface-hub
  0.31.0, tokenizers 0.21; torch CPU. No babblelm.
- `lm-eval`: lm-evaluation-harness with its Hugging Face backend and the newest transformers, as
  the 2026 multilingual track installs it. No babblelm.
- `floor`: babblelm itself (editable) on the oldest transformers pyproject admits (5.17, also the
  version on the GPU machines babblelm's acceptance run uses).

Each is a virtualenv under `.venvs/<name>` in the checkout, built with pip the first time a test
needs it (a minute or two; package registries only) and reused while its requirements are
unchanged. The torch pin is the version of the running interpreter's torch, so pip reuses the
wheel it already has.
"""

from __future__ import annotations

import json
import os
import subprocess
import venv
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
ROOT = Path(os.environ.get("BABBLE_TEST_ENVS", REPO / ".venvs"))
TORCH = f"torch=={torch.__version__.split('+')[0]}"

REQUIREMENTS = {
    "official": [TORCH, "transformers==4.51.3", "huggingface-hub==0.31.0", "tokenizers>=0.21,<0.22", "numpy"],
    "lm-eval": [TORCH, "lm-eval[hf]==0.4.13", "transformers"],
    "floor": [TORCH, "transformers==5.17.0", "pytest", "-e", str(REPO)],
}


def python(name: str) -> Path:
    """The interpreter of environment `name`, built (or rebuilt) when missing or out of date."""
    home = ROOT / name
    exe = home / "bin" / "python"
    stamp = home / "requirements.json"
    wanted = json.dumps(REQUIREMENTS[name])
    if exe.exists() and stamp.exists() and stamp.read_text() == wanted:
        return exe
    venv.EnvBuilder(clear=True, with_pip=True).create(home)
    proc = subprocess.run([str(exe), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                           *REQUIREMENTS[name]], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise RuntimeError(f"building the {name} environment in {home} failed:\n{proc.stderr[-3000:]}")
    stamp.write_text(wanted)
    return exe


def run(name: str, argv: list, cwd: Path, timeout: int = 3600, hf_home: Path | None = None) -> subprocess.CompletedProcess:
    """Run `argv` (its first item a program of the environment: python, lm_eval, ...) in environment
    `name`, offline, with nothing from this interpreter on the path; assert it succeeds. The timeout only
    stops a hung program: a busy machine is slower, not wrong."""
    bin_dir = python(name).parent
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_HOME=str(hf_home or cwd / "hf_home"),
               TOKENIZERS_PARALLELISM="false", PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}")
    proc = subprocess.run([str(bin_dir / argv[0]), *map(str, argv[1:])], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=timeout, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"{name} environment: {proc.stderr[-4000:]}"
    return proc


def versions(name: str) -> dict:
    """Versions of the packages that matter in environment `name`."""
    code = ("import json, importlib.metadata as m; print(json.dumps({p: m.version(p) for p in "
            "('torch', 'transformers', 'tokenizers', 'huggingface-hub')}))")
    return json.loads(subprocess.run([str(python(name)), "-c", code], capture_output=True, text=True,
                                     check=True).stdout)


def assert_no_babblelm(name: str) -> None:
    proc = subprocess.run([str(python(name)), "-c", "import babblelm"], capture_output=True, text=True,
                          env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, cwd=ROOT)
    assert proc.returncode != 0, f"babblelm is importable in the {name} environment"


