"""babblelm on the oldest transformers that pyproject.toml admits: the architecture contract, training
and exact resume included, run in a real environment holding that release (tests/envs.py, `floor`)."""

import re
from pathlib import Path

import envs

REPO = Path(__file__).resolve().parents[1]


def test_pyproject_floor_is_the_tested_release():
    floor = re.search(r'"transformers>=([\d.]+)"', (REPO / "pyproject.toml").read_text()).group(1)
    assert f"transformers=={floor}" in envs.REQUIREMENTS["floor"]


def test_the_contract_passes_on_the_oldest_supported_transformers(tmp_path):
    assert envs.versions("floor")["transformers"] == "5.17.0"
    proc = envs.run("floor", ["python", "-m", "pytest", "tests/test_contract.py", "-q", "-p", "no:cacheprovider",
                              "-k", "not export and not lm_eval and not native and not automodel",
                              f"--basetemp={tmp_path / 'pytest'}"], cwd=REPO, hf_home=tmp_path / "hf_home")
    assert re.search(r"\b\d+ passed\b", proc.stdout) and " failed" not in proc.stdout, proc.stdout[-2000:]
