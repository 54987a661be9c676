"""`babble submit`: the files the BabyLM leaderboard takes, from a run (or a model folder).

Everything a submission needs that is not there yet is computed through the evaluation suite
(`eval.suite`, `eval.finetune`, `eval.multilingual`), reusing every result whose inputs match; then
`eval.submission` writes the official layout and checks it with the official size rules.
"""

from __future__ import annotations

import json
from pathlib import Path

from .export import export_model
from .rundir import FINAL, RunDir, resolve_checkpoint

SOURCE_STAMP = "babble_source.json"  # in an exported revision: which checkpoint (and weights) it came from


def _loads_without_babblelm(folder: Path) -> bool:
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    return config.get("model_type") == "llama" or "auto_map" in config


def hf_revisions(model, work_dir: Path, log=print) -> list[tuple[str, Path]]:
    """(revision, Hugging Face folder): `main` (the final model) then every `chck_*` of a run.

    A run's checkpoints are exported into `work_dir/<revision>/` (again only when the checkpoint's
    weights changed); a model folder that loads without babblelm (an export) is used as it is."""
    from .eval.multilingual import MAIN
    from .eval.suite import model_identity

    run = RunDir(model)
    if not run.is_run() and _loads_without_babblelm(resolve_checkpoint(model)):
        return [(MAIN, Path(model))]
    sources = [(MAIN, resolve_checkpoint(model))] + [(folder.name, folder) for folder in run.milestones()]
    revisions = []
    for revision, source in sources:
        out, identity = work_dir / revision, model_identity(source)
        stamp = out / SOURCE_STAMP
        if not (stamp.is_file() and json.loads(stamp.read_text(encoding="utf-8")) == identity):
            log(f"{revision}: exporting {source} to {out}")
            export_model(source, out, log=log)
            stamp.write_text(json.dumps(identity), encoding="utf-8")
        revisions.append((revision, out))
    return revisions


def evaluate_multilingual_model(model, tasks_dir, out_dir=None, **options) -> dict:
    """`eval.multilingual.evaluate_multilingual` over `model`'s revisions (`hf_revisions`); results go to
    `out_dir`, else `<run>/results/multilingual` (or `results/<model folder>/multilingual`)."""
    from .eval.multilingual import evaluate_multilingual

    run = RunDir(model)
    out = Path(out_dir) if out_dir else (run.results if run.is_run() else Path("results") / run.path.name) / "multilingual"
    revisions = hf_revisions(model, out / "models", log=options.get("log", print))
    return evaluate_multilingual(revisions, tasks_dir, out, **options)
