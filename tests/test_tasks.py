"""Every official task on small fixtures: each score checked against the rule computed by hand
from one-sequence-at-a-time reference log-probs; bad data names file, line and field."""

import math

import numpy as np
import pytest
import torch
from eval_fixtures import write_eval_data, write_jsonl
from eval_fixtures import make_model
from test_scoring import reference_score

from babblelm.eval import catalog, tasks
from babblelm.eval.metrics import ranks, spearman
from babblelm.eval.reading import evaluate_reading, gain, r_squared, word_steps
from babblelm.eval.records import EvalDataError


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_eval_data(tmp_path_factory.mktemp("eval_data"))


def reference(model, tokenizer, choice):
    return [reference_score(model, tokenizer, context, completion) for context, completion in choice.options]


def test_loaders_follow_the_official_formats(data):
    ewok = tasks.load_ewok(data / "ewok_filtered")
    assert ewok[0].options == (("The cat is on the mat.", " The mat is below the cat."),
                               ("The cat is on the mat.", " The mat is above the cat."))
    assert [c.uid for c in ewok] == ["spatial", "social"]
    swapped = tasks.load_ewok(data / "ewok_filtered", add_swapped=True)[1]
    assert swapped.options[0] == ("The cat is under the mat.", " The mat is above the cat.")
    entity = tasks.load_entity_tracking(data / "entity_tracking")
    assert {c.uid for c in entity} == {"ambiref_0_ops", "regular_0_ops", "regular_1_ops"}
    assert entity[0].options[1] == ("Box A has the cat. Box B has the dog. Box A contains", " the dog.")
    comps = tasks.load_comps(data / "comps")
    assert comps[0].options == (("A cat ", "can run."), ("A mat ", "can run.")) and comps[0].uid == "base"
    wug = tasks.load_wug(data / "wug_past_tense")
    assert wug[0].options == (("", "The cat sat."), ("", "The cat sit.")) and wug[0].ratio == 0.9
    supplement = tasks.load_minimal_pairs(data / "supplement_filtered")
    assert supplement[0].uid == "hypernym" and supplement[0].group == "supplement"


def test_the_2026_loaders(data):
    """EWoK: two context comparisons per row, gold first; entity tracking: items with a "nothing" option
    dropped; Global PIQA: " " + each solution after the prompt, the labelled one first, UID = sub-set."""
    rules = tasks.rules_of("2026")
    ewok, _ = tasks.load_task("ewok", [data / "ewok_filtered"], rules)
    assert ewok[0].options == (("The cat is on the mat.", " The mat is below the cat."),
                               ("The cat is under the mat.", " The mat is below the cat."))
    assert ewok[1].options == (("The cat is under the mat.", " The mat is above the cat."),
                               ("The cat is on the mat.", " The mat is above the cat."))
    assert [c.uid for c in ewok] == ["spatial", "spatial", "social", "social"]
    entity, dropped = tasks.load_task("entity_tracking", tasks.task_folders("entity_tracking", data), rules)
    assert dropped == 3 and len(entity) == 3 and all(c.options[2][1] == " the mat." for c in entity)
    assert tasks.load_task("entity_tracking", [data / "entity_tracking"], tasks.rules_of("2025"))[1] == 0
    piqa, _ = tasks.load_task("global_piqa", tasks.task_folders("global_piqa", data), rules)
    assert [c.uid for c in piqa] == ["global_piqa_parallel"] * 3 + ["global_piqa_nonparallel"] * 3
    assert piqa[1].options == (("To open the house,", " use the key."), ("To open the house,", " sit on the mat."))
    assert piqa[0].key == "global_piqa_parallel_0"


@pytest.mark.parametrize("rules", ["2026", "2025"])
@pytest.mark.parametrize("name", ["blimp", "supplement", "ewok", "entity_tracking", "comps", "global_piqa"])
def test_accuracy_tasks_match_hand_computed_rule(model, tokenizer, data, name, rules):
    choices, _ = tasks.load_task(name, tasks.task_folders(name, data), tasks.rules_of(rules))
    right = {}
    for choice in choices:  # 2025: gold wins ties; accuracy per UID, then the mean over UIDs
        scores = reference(model, tokenizer, choice)
        right.setdefault(choice.uid, []).append(scores[0] >= max(scores[1:]) - 1e-5)
    by_uid = {uid: 100 * sum(v) / len(v) for uid, v in right.items()}
    result = tasks.evaluate_task(model, tokenizer, name, data, rules=rules)
    assert result["n_items"] == len(choices) and result["rules"] == rules
    assert result["by_uid"] == pytest.approx(by_uid)
    if name == "global_piqa":  # one score per sub-set
        assert result["scores"] == pytest.approx(by_uid)
    elif name != "entity_tracking":
        assert result["scores"][name] == pytest.approx(sum(by_uid.values()) / len(by_uid))


def test_ties_count_the_official_draw_in_expectation_and_both_bounds():
    """2026: a tie among k options that include gold counts 1/k (NaN as -inf); 2025: a tie counts as
    right. Both keep the bounds (ties right, ties wrong) and the number of items whose gold option ties."""
    choices = [tasks.Choice((("", "a"), ("", "b"), ("", "c")), uid) for uid in "xxxxy"]
    scores = [[-1.0, -1.0, -2.0], [-1.0, -1.0, -1.0], [-2.0, -1.0, -1.0], [-1.0, -3.0, -2.0],
              [math.nan, math.nan, -1.0]]
    for rules, x in (("2026", (1 / 2 + 1 / 3 + 0 + 1) / 4), ("2025", 3 / 4)):
        result = tasks.summarize("blimp", choices, scores, rules)
        assert result["by_uid"] == pytest.approx({"x": 100 * x, "y": 0.0}) and result["rules"] == rules
        assert result["scores_ties_right"]["blimp"] == pytest.approx((100 * 3 / 4 + 0) / 2)
        assert result["scores_ties_wrong"]["blimp"] == pytest.approx((100 * 1 / 4 + 0) / 2)
        assert result["ties"] == 2 and result["tie_fraction"] == pytest.approx(2 / 5)
    all_nan = [tasks.Choice((("", "a"), ("", "b")), "z")]
    assert tasks.summarize("blimp", all_nan, [[math.nan, math.nan]], "2026")["by_uid"] == {"z": 50.0}


@pytest.mark.parametrize("rules", ["2026", "2025"])
def test_entity_tracking_averages_within_files_then_across(model, tokenizer, data, rules):
    result = tasks.evaluate_task(model, tokenizer, "entity_tracking", data, rules=rules)
    uid = result["by_uid"]
    regular = (uid["regular_0_ops"] + uid["regular_1_ops"]) / 2
    assert result["by_group"] == {"regular": pytest.approx(regular), "ambiref": uid["ambiref_0_ops"]}
    assert result["scores"]["entity_tracking"] == pytest.approx((regular + uid["ambiref_0_ops"]) / 2)
    assert ("dropped" in result) == (rules == "2026")


def test_wug_is_spearman_of_gold_probability_against_ratio(model, tokenizer, data):
    choices = tasks.load_wug(data / "wug_adj_nominalization")
    probability = [torch.softmax(torch.tensor(reference(model, tokenizer, c)), 0)[0].item() for c in choices]
    expected = spearman(probability, [c.ratio for c in choices])
    result = tasks.evaluate_task(model, tokenizer, "wug_adj", data)
    assert result["spearman"] == pytest.approx(expected, abs=1e-6)
    assert result["scores"]["wug_adj"] == pytest.approx(100 * expected, abs=1e-4)


def test_spearman_and_ranks_match_scipy():
    stats = pytest.importorskip("scipy.stats")
    x, y = [3.0, 1.0, 2.0, 2.0, 5.0, 0.5], [0.1, 0.4, 0.4, 0.2, 0.9, 0.3]
    assert list(ranks(x)) == list(stats.rankdata(x))
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y)[0])


def tiny_architecture(arch: str, vocab_size: int):
    """A tiny random babblelm model of `arch`, or the Llama reference ("llama")."""
    from babblelm.models.blalm import BlalmConfig, BlalmForCausalLM
    from babblelm.models.induction import BabbleInductionConfig, BabbleInductionForCausalLM
    from babblelm.models.streammixer import StreamMixerConfig, StreamMixerForCausalLM
    from babblelm.models.transformer import BabbleTransformerConfig, BabbleTransformerForCausalLM

    if arch == "llama":
        return make_model(vocab_size)
    torch.manual_seed(0)
    shape = dict(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, intermediate_size=64, bos_token_id=1,
                 eos_token_id=2, pad_token_id=0)
    heads = dict(num_attention_heads=4, max_position_embeddings=128)
    built = {
        "transformer": lambda: BabbleTransformerForCausalLM(BabbleTransformerConfig(**shape, **heads)),
        "blalm": lambda: BlalmForCausalLM(BlalmConfig(**shape, **heads, chunk_size=8, short_conv=True, swa_window=8)),
        "streammixer": lambda: StreamMixerForCausalLM(StreamMixerConfig(**shape, num_streams=4, stream_dim=8,
                                                                         num_read_heads=2, scan_chunk_size=8)),
        "induction": lambda: BabbleInductionForCausalLM(BabbleInductionConfig(**shape, **heads, induction_memory=3,
                                                                              conv_groups=4)),
    }
    return built[arch]().eval()


@pytest.mark.parametrize("arch", ["llama", "transformer", "blalm", "streammixer", "induction"])
def test_shared_prefix_scores_equal_plain_scores(tokenizer, data, arch, monkeypatch):
    """Every architecture's cache is copied per option; no item falls back to whole-text scoring."""
    from babblelm.eval import scoring

    model = tiny_architecture(arch, len(tokenizer))
    choices = tasks.load_entity_tracking(data / "entity_tracking") + tasks.load_ewok(data / "ewok_filtered")
    plain = tasks.score_choices(model, tokenizer, choices, shared_prefix=False)
    runs, score_shared = [], scoring._score_shared

    def spy(*args):
        try:
            runs.append(score_shared(*args))
        except scoring._NoCache:
            pytest.fail(f"{arch}: the cache could not be copied per option")
        return runs[-1]

    monkeypatch.setattr(scoring, "_score_shared", spy)
    shared = tasks.score_choices(model, tokenizer, choices, shared_prefix=True, batch_size=2)
    assert len(runs) >= 2  # entity tracking and EWoK (identical items are scored once) took the shared path
    assert np.allclose(sum(plain, []), sum(shared, []), atol=1e-4)


def test_reading_word_is_scored_without_leading_space(tokenizer):
    steps = word_steps(tokenizer, "The cat sat on ", "the")
    assert steps[0][-1] == tokenizer("the", add_special_tokens=False)["input_ids"][0]
    assert steps[0][-1] != tokenizer(" the", add_special_tokens=False)["input_ids"][0]
    assert steps[0][:-1] == tokenizer("The cat sat on ")["input_ids"]


def test_ols_r_squared_and_gain():
    x = np.arange(10.0)
    assert r_squared(2 * x + 1, [x]) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    table = {name: rng.normal(size=50) for name in ("a", "b", "pred")}
    table["y"] = table["a"] + 3 * table["pred"] + 0.1 * rng.normal(size=50)
    base = r_squared(table["y"], [table["a"], table["b"], table["a"] * table["b"]])
    full = r_squared(table["y"], [table["a"], table["b"], table["a"] * table["b"], table["pred"]])
    assert gain(table, "y", ("a", "b")) == pytest.approx((full - base) / (1 - base) * 100)
    assert gain(table, "y", ("a", "b")) > 90


def test_reading_scores_follow_the_regressions(model, tokenizer, data):
    result = evaluate_reading(model, tokenizer, data)
    assert set(result["scores"]) == {"reading_et", "reading_spr"}
    eye = [result["by_uid"][m] for m in ("RTfirstfix", "RTfirstpass", "RTgopast", "RTrightbound")]
    assert result["scores"]["reading_et"] == pytest.approx(sum(eye) / 4)
    assert all(math.isfinite(v) for v in result["scores"].values())
    from babblelm.eval.reading import surprisals

    for context, word in (("None", "the"), ("The cat sat on ", "mat")):
        assert surprisals(model, tokenizer, [(context, word)])[0] == pytest.approx(
            official_surprisal(model, tokenizer, context, word), abs=1e-4)


def official_surprisal(model, tokenizer, sentence, word):
    """The official loop, one model call per sub-token: p of each token after the text so far."""
    total = 0.0
    for k, token in enumerate(tokenizer(word, add_special_tokens=False)["input_ids"]):
        text = tokenizer.decode([token])
        target = token if k == 0 else tokenizer(text, add_special_tokens=False)["input_ids"][0]
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([tokenizer(sentence)["input_ids"]])).logits[0, -1].double()
        total -= torch.log_softmax(logits, -1)[target].item()
        sentence += text
    return total


def test_the_fixture_reading_data_fits_both_regressions(model, tokenizer, tmp_path):
    """`write_eval_data`'s own reading CSV (no test rewrites it) has more complete rows than the
    self-paced regression's 17 terms and the eye-tracking regressions' 8, so reading scores it."""
    import csv

    path = write_eval_data(tmp_path) / "reading" / "reading_data.csv"
    rows = list(csv.DictReader(path.open(encoding="utf-8", newline="")))
    spr = ("Subtlex_log10", "length", "context_length", "prev_length", "self_paced_reading_time")
    complete = [row for row in rows if row["prev_item"] and all(row[c] for c in spr)]  # prev surprisal needs prev_item
    assert len(complete) > 17
    result = evaluate_reading(model, tokenizer, tmp_path)
    assert set(result["scores"]) == {"reading_et", "reading_spr"}
    assert all(math.isfinite(v) for v in result["scores"].values())


def test_rerun_gives_identical_numbers(model, tokenizer, data):
    for name in ("ewok", "entity_tracking", "wug_past"):
        assert tasks.evaluate_task(model, tokenizer, name, data)["scores"] == \
            tasks.evaluate_task(model, tokenizer, name, data)["scores"]


@pytest.mark.parametrize(
    ("name", "folder", "line", "expected"),
    [
        ("ewok", "ewok_filtered", '{"Domain": "d", "Context1": "c", "Context2": "c", "Target1": "t"}',
         r"x\.jsonl:2: missing field 'Target2'"),
        ("entity_tracking", "entity_tracking", '{"input_prefix": "p", "options": ["a"], "numops": 0}',
         r"x\.jsonl:2: field 'options' must be a list of at least 2"),
        ("entity_tracking", "entity_tracking", '{"input_prefix": "p", "options": ["a", "b"], "numops": "1"}',
         r"x\.jsonl:2: field 'numops' must be an integer"),
        ("comps", "comps", '{"prefix_acceptable": "a", "prefix_unacceptable": "b"', r"x\.jsonl:2: malformed JSON"),
        ("wug_adj", "wug_adj_nominalization", '{"sentences": "only one", "ratio": 0.5}',
         r"x\.jsonl:2: field 'sentences' must hold at least 2"),
        ("wug_adj", "wug_adj_nominalization", '{"sentences": "a\\tb", "ratio": "high"}',
         r"x\.jsonl:2: field 'ratio' must be a number"),
    ],
)
def test_bad_lines_name_file_line_and_field(tmp_path, name, folder, line, expected):
    good = {"ewok": '{"Domain": "d", "Context1": "c", "Context2": "c", "Target1": "t", "Target2": "u"}',
            "entity_tracking": '{"input_prefix": "p", "options": ["a", "b"], "numops": 0}',
            "comps": '{"prefix_acceptable": "a", "prefix_unacceptable": "b", "property_phrase": "c"}',
            "wug_adj": '{"sentences": "a\\tb", "ratio": 0.5}'}[name]
    write_jsonl(tmp_path / folder / "regular_x.jsonl", [good, line])  # entity tracking names files by split
    with pytest.raises(EvalDataError, match=expected):
        tasks.loader(name)(tasks.task_folder(name, tmp_path))


def test_bad_reading_csv_and_empty_files_are_named(model, tokenizer, tmp_path):
    write_jsonl(tmp_path / "comps" / "empty.jsonl", [""])
    with pytest.raises(EvalDataError, match=r"empty\.jsonl: empty file"):
        tasks.load_comps(tmp_path / "comps")
    path = tmp_path / "reading_data.csv"
    path.write_text("item,word\nThe,cat\n", encoding="utf-8")
    with pytest.raises(EvalDataError, match=r"reading_data\.csv:1: header lacks column\(s\) prev_item"):
        evaluate_reading(model, tokenizer, path)
    from eval_fixtures import write_reading

    write_reading(path, rows=6)
    text = path.read_text(encoding="utf-8").splitlines()
    cells = text[3].split(",")
    cells[4] = "fast"
    path.write_text("\n".join(text[:3] + [",".join(cells)] + text[4:]) + "\n", encoding="utf-8")
    with pytest.raises(EvalDataError, match=r"reading_data\.csv:4: column 'Subtlex_log10' must be a number"):
        evaluate_reading(model, tokenizer, path)
    with pytest.raises(ValueError, match="unknown task"):
        catalog.parse_task_list("blimp,glue")


def test_a_task_folder_must_exist_unless_the_task_is_asked_for_alone(tmp_path, data):
    """DIR itself is a task's folder only when that task is the only one asked for and DIR has none
    of the official sub-folders; otherwise a missing sub-folder is an error, never another task's files."""
    write_jsonl(tmp_path / "full" / "blimp_filtered" / "a.jsonl", ['{"sentence_good": "a", "sentence_bad": "b"}'])
    for alone in (True, False):
        with pytest.raises(EvalDataError, match=r"full: no supplement_filtered/ folder for task 'supplement'"):
            tasks.task_folder("supplement", tmp_path / "full", alone=alone)
    loose = data / "blimp_filtered"
    assert tasks.task_folder("blimp", loose, alone=True) == loose
    with pytest.raises(EvalDataError, match=r"no blimp_filtered/ folder for task 'blimp'.*only one asked for"):
        tasks.task_folder("blimp", loose, alone=False)
    with pytest.raises(EvalDataError, match=r"nowhere: evaluation data folder not found"):
        tasks.task_folder("blimp", tmp_path / "nowhere")


GOOD_LINES = {
    "blimp": '{"sentence_good": "a", "sentence_bad": "b"}',
    "multiblimp": '{"sen": "a", "wrong_sen": "b"}',
    "ewok": '{"Domain": "d", "Context1": "c", "Context2": "c", "Target1": "t", "Target2": "u"}',
    "entity_tracking": '{"input_prefix": "p", "options": ["a", "b"], "numops": 0}',
    "comps": '{"prefix_acceptable": "a", "prefix_unacceptable": "b", "property_phrase": "c"}',
    "wug_adj": '{"sentences": "a\\tb", "ratio": 0.5}',
}


@pytest.mark.parametrize(
    ("name", "line", "expected"),
    [
        ("blimp", '{"sentence_good": "", "sentence_bad": "b"}', r"regular\.jsonl:2: field 'sentence_good' must not be empty"),
        ("blimp", '{"sentence_good": "a", "sentence_bad": "  "}', r"regular\.jsonl:2: field 'sentence_bad' must not be empty"),
        ("blimp", '{"sentence_good": "a", "sentence_bad": "b", "UID": ""}', r"regular\.jsonl:2: field 'UID' must not be empty"),
        ("multiblimp", '{"sen": "a", "wrong_sen": ""}', r"regular\.jsonl:2: field 'wrong_sen' must not be empty"),
        ("ewok", '{"Domain": "d", "Context1": "c", "Context2": "c", "Target1": "", "Target2": "u"}',
         r"regular\.jsonl:2: field 'Target1' must not be empty"),
        ("entity_tracking", '{"input_prefix": "p", "options": ["a", ""], "numops": 0}',
         r"regular\.jsonl:2: field 'options' item 1 must not be empty"),
        ("comps", '{"prefix_acceptable": "a", "prefix_unacceptable": "b", "property_phrase": ""}',
         r"regular\.jsonl:2: field 'property_phrase' must not be empty"),
        ("wug_adj", '{"sentences": "a\\t", "ratio": 0.5}', r"regular\.jsonl:2: field 'sentences' option 1 is empty"),
        ("wug_adj", '{"sentences": "a\\tb", "ratio": NaN}', r"regular\.jsonl:2: field 'ratio' is nan; NaN and infinite"),
        ("wug_adj", '{"sentences": "a\\tb", "ratio": "inf"}', r"regular\.jsonl:2: field 'ratio' must be a finite number"),
        ("wug_adj", '{"sentences": "a\\tb", "ratio": 1e999}', r"regular\.jsonl:2: field 'ratio' is inf"),
        ("comps", '{"prefix_acceptable": "a", "prefix_unacceptable": "b", "property_phrase": "c", "w": [1, -Infinity]}',
         r"regular\.jsonl:2: field 'w\[1\]' is -inf"),
        ("blimp", '{"sentence_good": "a", "sentence_bad": "b", "sentence_good": "c"}',
         r"regular\.jsonl:2: field 'sentence_good' appears twice"),
    ],
)
def test_empty_texts_and_non_finite_numbers_are_data_errors(tmp_path, name, line, expected):
    folder = tmp_path / name
    write_jsonl(folder / "regular.jsonl", [GOOD_LINES[name], line, GOOD_LINES[name].replace('"a', '"z')])
    with pytest.raises(EvalDataError, match=expected):
        tasks.loader(name)(folder)


def test_json_and_upper_case_jsonl_files_are_read_other_data_files_are_named(tmp_path):
    folder = tmp_path / "comps"
    line = GOOD_LINES["comps"]
    write_jsonl(folder / "a.jsonl", [line])
    write_jsonl(folder / "B.JSONL", [line, line])
    write_jsonl(folder / "c.json", [line])  # JSON lines in a .json file
    (folder / "README.md").write_text("notes are not data")
    assert [c.uid for c in tasks.load_comps(folder)] == ["B", "B", "a", "c"]
    (folder / "d.json").write_text('[\n  {"prefix_acceptable": "a"}\n]\n')
    with pytest.raises(EvalDataError, match=r"d\.json: holds one JSON document, not JSON lines"):
        tasks.load_comps(folder)
    (folder / "d.json").unlink()
    (folder / "e.csv").write_text("prefix_acceptable\na\n")
    with pytest.raises(EvalDataError, match=r"e\.csv: looks like data but is not read"):
        tasks.load_comps(folder)
    (folder / "e.csv").unlink()
    write_jsonl(folder / "a.json", [line])
    with pytest.raises(EvalDataError, match=r"a\.json and a\.jsonl hold the same name"):
        tasks.load_comps(folder)


def test_wug_with_equal_ratios_is_an_error_not_a_nan(tmp_path):
    write_jsonl(tmp_path / "wug.jsonl", ['{"sentences": "a\\tb", "ratio": 0.5}'] * 3)
    with pytest.raises(EvalDataError, match=r"wug\.jsonl: .*'ratio'.*all equal"):
        tasks.load_wug(tmp_path)


def test_reading_rows_need_a_word_and_finite_numbers(model, tokenizer, tmp_path):
    from eval_fixtures import write_reading

    path = write_reading(tmp_path / "reading_data.csv", rows=24)
    lines = path.read_text(encoding="utf-8").splitlines()
    for column, value, expected in ((1, "", r"reading_data\.csv:3: column 'word' must not be empty"),
                                    (8, "inf", r"reading_data\.csv:3: column 'RTfirstfix' must be a finite number"),
                                    (8, "1e999", r"reading_data\.csv:3: column 'RTfirstfix' must be a finite number")):
        cells = lines[2].split(",")
        cells[column] = value
        path.write_text("\n".join([*lines[:2], ",".join(cells), *lines[3:]]) + "\n", encoding="utf-8")
        with pytest.raises(EvalDataError, match=expected):
            evaluate_reading(model, tokenizer, path)


def write_2026_layout(root):
    """The official `evaluation_data`: full_eval (the fixtures) and fast_eval, its EWoK data in
    `ewok_fast.zip` under the nested path the official archive uses, password-protected where `zip` is."""
    import json
    import shutil
    import subprocess
    import zipfile

    full = write_eval_data(root / "full_eval")
    fast = root / "fast_eval"
    for source, target in (("blimp_filtered", "blimp_fast"), ("supplement_filtered", "supplement_fast"),
                           ("global_piqa_parallel", "global_piqa_parallel"), ("reading", "reading"),
                           ("global_piqa_nonparallel", "global_piqa_nonparallel")):
        shutil.copytree(full / source, fast / target)
    write_jsonl(fast / "entity_tracking_fast" / "regular.jsonl",
                (full / "entity_tracking" / "regular.jsonl").read_text().splitlines())
    inner = root / "zip" / "evaluation_data" / "fast_eval" / "ewok_fast"
    rows = [json.loads(line) for line in (full / "ewok_filtered" / "spatial.jsonl").read_text().splitlines()]
    write_jsonl(inner / "spatial.jsonl", rows[:1])
    write_jsonl(inner / "social.jsonl", rows[1:])
    if shutil.which("zip"):
        subprocess.run(["zip", "-q", "-r", "-P", "BabyLM2025", fast / "ewok_fast.zip", "evaluation_data"],
                       cwd=root / "zip", check=True)
    else:
        with zipfile.ZipFile(fast / "ewok_fast.zip", "w") as archive:
            for path in sorted(inner.iterdir()):
                archive.write(path, path.relative_to(root / "zip"))
    return full, fast


def test_the_2026_data_layout_reads_full_and_fast_folders_and_the_ewok_zip(model, tokenizer, tmp_path):
    root = tmp_path / "evaluation_data"
    full, fast = write_2026_layout(root)
    assert tasks.data_layout(root) == tasks.data_layout(full) == tasks.data_layout(fast) == (full, fast)
    assert tasks.data_layout(tmp_path / "other") == (tmp_path / "other", None)
    assert tasks.task_folders("blimp", root) == [full / "blimp_filtered"]
    assert tasks.task_folders("blimp", root, fast=True) == [fast / "blimp_fast"]
    assert tasks.task_folders("global_piqa", full, fast=True) == [fast / "global_piqa_parallel",
                                                                 fast / "global_piqa_nonparallel"]
    assert tasks.task_folders("ewok", root, fast=True) == [fast / "ewok_fast"]  # extracted from the zip
    assert sorted(p.name for p in (fast / "ewok_fast").iterdir()) == ["social.jsonl", "spatial.jsonl"]
    result = tasks.evaluate_task(model, tokenizer, "ewok", root, fast=True)
    assert result["n_items"] == 4 and set(result["by_uid"]) == {"spatial", "social"}  # two comparisons per row
    fast_entity = tasks.evaluate_task(model, tokenizer, "entity_tracking", root, fast=True)
    assert fast_entity["n_items"] == 2 and fast_entity["dropped"]["items"] == 2  # regular only, filtered
    assert tasks.evaluate_task(model, tokenizer, "entity_tracking", root)["n_items"] == 3  # full: every file
    with pytest.raises(EvalDataError, match=r"fast_eval: task 'comps' has no fast evaluation data"):
        tasks.task_folders("comps", root, fast=True)
    (fast / "global_piqa_nonparallel" / "eng_latn.jsonl").unlink()
    (fast / "global_piqa_nonparallel").rmdir()
    with pytest.raises(EvalDataError, match=r"fast_eval: no global_piqa_nonparallel/ folder for task 'global_piqa' "
                                            r"\(fast evaluation\)"):
        tasks.task_folders("global_piqa", root, fast=True)


def test_fast_subsets_of_the_full_data_follow_the_rules(model, tokenizer, tmp_path):
    """Without a fast_eval folder the fast items come from the full data: 2026 takes 100 EWoK rows (200
    comparisons) per domain and only the regular entity-tracking file; 2025 takes 100 EWoK items."""
    rows = [{"Domain": "d", "Context1": f"The cat saw {k} dogs.", "Context2": "The cat ran.",
             "Target1": "The dog sat.", "Target2": "The dog ran."} for k in range(120)]
    write_jsonl(tmp_path / "ewok_filtered" / "d.jsonl", rows)
    choices, _ = tasks.load_task("ewok", [tmp_path / "ewok_filtered"], tasks.rules_of("2026"))
    assert len(tasks.fast_subset("ewok", choices, tasks.rules_of("2026"))) == 200
    choices, _ = tasks.load_task("ewok", [tmp_path / "ewok_filtered"], tasks.rules_of("2025"))
    assert len(tasks.fast_subset("ewok", choices, tasks.rules_of("2025"))) == 100
    write_eval_data(tmp_path)
    fast = tasks.evaluate_task(model, tokenizer, "entity_tracking", tmp_path, fast=True)
    assert set(fast["by_group"]) == {"regular"} and fast["n_items"] == 2
    with pytest.raises(ValueError, match=r"task 'wug_adj' has no fast subset under the 2026 rules"):
        tasks.evaluate_task(model, tokenizer, "wug_adj", tmp_path, fast=True)
    assert tasks.evaluate_task(model, tokenizer, "wug_adj", tmp_path, fast=True, rules="2025")["n_items"] == 4


def test_every_task_the_rules_name_is_registered_and_has_fast_data():
    from babblelm.eval.rules import RULES

    for rules in RULES.values():
        assert set(rules.official_tasks) <= set(tasks.ALL_TASKS)
        assert set(rules.fast) <= set(tasks.ALL_TASKS) and set(rules.fast) <= set(tasks.FAST_FOLDERS)
