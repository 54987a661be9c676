"""Prepare, on the CPU, everything the GPU acceptance run (benchmarks/gpu_run.py) needs that the GPU
machine cannot make or fetch, in one git-ignored folder `.travel/` that travels with the working tree
(name it in the device call's `carry`; at most 64 MiB with the tree):

- corpus.tar.xz: the strict-small corpus's train and dev files (babylike_10M, ~13 MB compressed);
- runs.tar.xz: `runs/llama-26m/data/`, that corpus prepared with llama-26m's settings (tokenizer,
  token blocks with word counts, cleaned text, manifest), so the run starts training at once;
  BLaLM's run reuses it;
- blimp.tar.xz: the 67 original BLiMP files;
- wheels/: the packages the GPU machine lacks (mlstm_kernels, for BLaLM's Triton kernels).

    python benchmarks/gpu_prepare.py --corpus ../shared/corpora/babylike_10M --blimp ../shared/eval/blimp

The archives hold paths relative to `.travel/`, so the prepared data's recorded inputs
(`.travel/corpus/...`) match on both machines once benchmarks/gpu_run.sh unpacks them.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TRAVEL = REPO / ".travel"
LIMIT = 64 * 2**20
WHEELS = ["mlstm_kernels==2.0.6"]
PIP_PLATFORM = ["--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp", "--platform",
                "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64"]


def pack(source: Path, names: list[str], archive: Path, arcdir: str) -> None:
    with tarfile.open(archive, "w:xz", preset=6) as tar:
        for name in names:
            tar.add(source / name, arcname=f"{arcdir}/{name}")


def tree_size() -> int:
    """Bytes of what travels: tracked and untracked-not-ignored files, plus .travel."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True,
                           check=True).stdout.decode().split("\0")
    tracked = sum((REPO / f).stat().st_size for f in files if f and (REPO / f).is_file())
    return tracked + sum(p.stat().st_size for p in TRAVEL.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=REPO.parent / "shared" / "corpora" / "babylike_10M")
    parser.add_argument("--blimp", type=Path, default=REPO.parent / "shared" / "eval" / "blimp")
    args = parser.parse_args()
    TRAVEL.mkdir(exist_ok=True)
    names = sorted(p.name for p in args.corpus.iterdir() if p.suffix in (".train", ".dev"))
    corpus = TRAVEL / "corpus"
    if not corpus.is_dir():
        corpus.mkdir()
        for name in names:
            shutil.copyfile(args.corpus / name, corpus / name)
    pack(corpus, names, TRAVEL / "corpus.tar.xz", "corpus")
    pack(args.blimp, sorted(p.name for p in args.blimp.glob("*.jsonl")), TRAVEL / "blimp.tar.xz", "blimp")
    subprocess.run([sys.executable, "-m", "babblelm.cli", "data", "prepare", str(REPO / "configs" / "llama-26m.yaml"),
                    "--set", "data.corpus=.travel/corpus", "--out", ".travel/runs/llama-26m/data"], cwd=REPO, check=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", *PIP_PLATFORM, "-d", str(TRAVEL / "wheels"),
                    *WHEELS], check=True)
    pack(TRAVEL, ["runs"], TRAVEL / "runs.tar.xz", ".")
    shutil.rmtree(corpus)  # these travel as archives; gpu_run.sh unpacks them at the same paths
    shutil.rmtree(TRAVEL / "runs")
    size = tree_size()
    print(f".travel ready; the working tree that travels is {size / 2**20:.1f} MiB of the 64 MiB allowed")
    if size > LIMIT:
        raise SystemExit("too large to travel: drop something from .travel")


if __name__ == "__main__":
    main()
