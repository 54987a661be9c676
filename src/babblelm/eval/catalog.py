"""The evaluation tasks by name: the one list that config validation (`eval.tasks`), the command line's
help and choices, and the scorers read. Plain data, no torch: the config imports it.

Adding a zero-shot task: a `Task` line here (its folders, the loader in eval/tasks.py that reads one
folder, metric, whether options share their context) and, for a new data format, that loader
(docs/evaluation.md, "Adding an evaluation task").
"""

from __future__ import annotations

from dataclasses import dataclass

from .rules import rules_of

OFFICIAL = "official"  # in a task list: the chosen rules' official tasks
READING = "reading"  # the reading-time regression (eval/reading.py), not a choice task


@dataclass(frozen=True)
class Task:
    name: str
    folders: tuple[str, ...]  # its sub-folders of the official `evaluation_data/full_eval`
    loader: str  # the function of eval/tasks.py that reads one folder's items
    metric: str  # "accuracy" or "spearman"
    shared_prefix: bool  # do the options share their context (run it once)?
    about: str = ""  # only for a task that is not an official BabyLM task: what it is (said beside its scores)


TASKS = {
    task.name: task
    for task in (
        Task("blimp", ("blimp_filtered",), "load_minimal_pairs", "accuracy", False),
        Task("supplement", ("supplement_filtered",), "load_minimal_pairs", "accuracy", False),
        Task("multiblimp", ("multiblimp",), "load_multilingual_pairs", "accuracy", False),
        Task("ewok", ("ewok_filtered",), "load_ewok", "accuracy", True),
        Task("entity_tracking", ("entity_tracking",), "load_entity_tracking", "accuracy", True),
        Task("comps", ("comps",), "load_comps", "accuracy", False),
        Task("global_piqa", ("global_piqa_parallel", "global_piqa_nonparallel"), "load_global_piqa", "accuracy", True),
        Task("wug_adj", ("wug_adj_nominalization",), "load_wug", "spearman", True),
        Task("wug_past", ("wug_past_tense",), "load_wug", "spearman", True),
        Task("demo_pairs", ("demo_pairs",), "load_minimal_pairs", "accuracy", False,
             about="held-out minimal pairs generated from babble demo's grammar (synthetic; not BLiMP)"),
    )
}
ALL_TASKS = [*TASKS, READING]  # every zero-shot task `babble eval` scores

# GLUE fine-tuning (eval/finetune.py): name -> (record fields, how a record becomes a text pair, labels)
GLUE_TASKS = {
    "boolq": (("question", "passage"), lambda r: (r["question"], r["passage"]), 2),
    "multirc": (("question", "answer", "paragraph"),
                lambda r: (f"Question: {r['question']} Answer: {r['answer']}", r["paragraph"]), 2),
    "rte": (("sentence1", "sentence2"), lambda r: (r["sentence1"], r["sentence2"]), 2),
    "mrpc": (("sentence1", "sentence2"), lambda r: (r["sentence1"], r["sentence2"]), 2),
    "qqp": (("question1", "question2"), lambda r: (r["question1"], r["question2"]), 2),
    "mnli": (("premise", "hypothesis"), lambda r: (r["premise"], r["hypothesis"]), 3),
    "wsc": (("span1_text", "span2_text", "text"),
            lambda r: (f'Does "{r["span2_text"]}" refer to "{r["span1_text"]}" in this passage?', r["text"]), 2),
}


def known_tasks() -> str:
    """The task names a task list takes, for help texts and errors."""
    return f"{', '.join(ALL_TASKS)} or {OFFICIAL}"


def unknown_tasks(names: list[str]) -> list[str]:
    """The names of a task list that are no task (and not `official`)."""
    return [name for name in names if name not in ALL_TASKS and name != OFFICIAL]


def parse_task_list(spec: str, rules=None) -> list[str]:
    """Task names from "a,b,c" (each once, in order; "official": the rules' official tasks); an error
    naming any unknown one."""
    names = [name.strip() for name in spec.split(",") if name.strip()]
    unknown = unknown_tasks(names)
    if unknown or not names:
        raise ValueError(f"unknown task(s) {', '.join(unknown) or '(none given)'}; known: {known_tasks()}")
    return list(dict.fromkeys(t for name in names for t in
                              (rules_of(rules).official_tasks if name == OFFICIAL else (name,))))
