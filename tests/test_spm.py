"""SentencePiece BPE (`tokenizer.kind: sentencepiece`): its fast tokenizer encodes English, Dutch and
Mandarin exactly as the SentencePiece model does (unknown characters and whitespace included), the
training sample is byte-equalized across languages, the unknown rate is checked per language, and a
trained GPT-2 run's export loads with `AutoTokenizer` in the official pipeline's environment
(transformers 4.51.3, no sentencepiece) and in the newest transformers, encoding the same."""

import json
import random

import pytest
import sentencepiece as spm
import torch

import envs
from babblelm.config import TokenizerSection, load_config
from babblelm.data.corpus import DataError
from babblelm.data.languages import premium_table, prepare_multilingual
from babblelm.data.prepare import prepare_data
from babblelm.data.spm import MODEL_FILE, train_model
from babblelm.data.tokenizer import fit_tokenizer
from babblelm.export import export_model
from babblelm.train.launch import train
from conftest import DATA, tiny_raw
from multilingual_corpus import dutch_sentence, mandarin_sentence, write_corpus

ENG = ["The little dog ran to the park, didn't it?", 'Mummy said: "Put your shoes on, Tom!"',
       "We saw 3 ducks and a swan at 10 o'clock.", "Where's the BIG red ball?", "I don't know... maybe later."]
NLD = ["De kleine hond rent naar het park.", "Ik heb een ijsje gegeten; het was heerlijk!",
       "Café, ruïne, coördinatie en één euro.", "IJsland ligt ver weg, zei oma.", "Zij zagen 's avonds de sterren."]
ZHO = ["小狗跑到公园去了。", "妈妈说：“穿上你的鞋子！”", "我们在十点钟看见了三只鸭子。", "你今天想吃什么？",
       "他的名字叫李明，住在北京。"]
EDGES = ["", " ", "   ", "\t", "\n", "a  b", "  leading and trailing  ", "tab\there", "line\nbreak", "crlf\r\nend",
         "full\u3000width\u3000space", "nbsp\u00a0here", "zero\u200bwidth", "▁", "a▁b", "▁a", "a ▁b", "x▁▁y", " ▁a",
         "a▁ ▁", "ＦＵＬＬ ｗｉｄｔｈ １２３",
         "ÉÉN IJSJE, ĲSJE", "e\u0301 decomposed, CAFE\u0301, Cafe\u0301", "ǆ ŉ ß ﬁ ①②", "“quotes” ‘single’ — dash … end",
         "👍🏽 and 👨‍👩‍👧 and 🇳🇱", "龘 and 𠀀 are rare", "control \x00\x01\x7f chars", "ＡＢＣ：（中文）！？",
         "mixed English, Nederlands en 中文 in één zin."]
# Characters of the random texts; a combining mark or emoji modifier follows only a plain letter or a
# CJK character (after a precomposed accent or a fullwidth letter the two tokenizers differ, see data/spm.py).
PLAIN = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,;:!?'\"-()éèëïöüÉÖĳĲç  \t\n\r\u3000\u00a0"
OTHER = "的一是不了在人有我他这个们中来上大为和国地到以说时要就出会龘𠀀ｱＡ１﹏…—–€😀ñß™½ŉǆ\x00\x01\x7f▁"
MARKS = ["\u0301", "\u0308", "\u0327", "\u0323", "🏽", "\u200d", "\ufe0f"]
VARIANTS = [dict(), dict(byte_fallback=False), dict(normalization="identity"),
            dict(byte_fallback=False, normalization="nmt_nfkc")]


def lines(lang: str, n: int, seed: int = 0) -> list[str]:
    from babblelm.data.synthetic import Grammar

    rng = random.Random(seed)
    grammar = Grammar(rng)
    make = {"eng": lambda: " ".join(grammar.utterance()).capitalize(), "nld": lambda: dutch_sentence(rng)[0],
            "zho": lambda: mandarin_sentence(rng)}[lang]
    return [make() for _ in range(n)] + {"eng": ENG, "nld": NLD, "zho": ZHO}[lang]


def random_texts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    units = list(PLAIN + OTHER) + [rng.choice(PLAIN[:62] + "的人中大") + m for m in MARKS * 4]
    return ["".join(rng.choices(units, k=rng.randint(1, 30))) for _ in range(n)]


def corpus_streams(n: int = 1500) -> dict:
    return {lang: (lambda lang=lang: iter(lines(lang, n))) for lang in ("eng", "nld", "zho")}


PREMIUMS = {"eng": 1.0, "nld": 1.051606, "zho": 0.935966}


@pytest.fixture(scope="module", params=range(len(VARIANTS)), ids=["nmt_nfkc_cf", "no_byte_fallback", "identity", "nmt_nfkc"])
def trained(request, tmp_path_factory):
    out = tmp_path_factory.mktemp("spm")
    cfg = TokenizerSection(kind="sentencepiece", vocab_size=500, sample_bytes=40_000,
                           unk_rate_limits={"default": 1.0}, **VARIANTS[request.param])
    tokenizer, report = fit_tokenizer(cfg, corpus_streams(), out, PREMIUMS)
    return tokenizer, spm.SentencePieceProcessor(model_file=str(out / MODEL_FILE)), report, cfg


def test_fast_tokenizer_encodes_as_sentencepiece(trained):
    tokenizer, sp, _, cfg = trained
    texts = ENG + NLD + ZHO + EDGES + random_texts(3000, seed=1)
    for text in texts:
        assert tokenizer(text, add_special_tokens=False)["input_ids"] == sp.encode(text), repr(text)
        ids = sp.encode(text)
        assert tokenizer.decode(ids) == sp.decode(ids), repr(text)
    if cfg.byte_fallback:
        assert "<0xE9><0xBE><0x98>" in "".join(tokenizer.tokenize("龘"))  # an unknown character, as its bytes
    else:
        assert tokenizer("龘𠀀 x", add_special_tokens=False)["input_ids"].count(0) == 1  # a run of unknowns: one <unk>


def test_training_settings_are_the_references(tmp_path):
    """On the text the TAAM reference's tokenizer script trained on, babblelm's SentencePiece training
    gives the reference's vocabulary, piece for piece (tests/data/spm_reference.json)."""
    reference = json.loads((DATA / "spm_reference.json").read_text(encoding="utf-8"))
    write_corpus(tmp_path / "corpus")
    with open(tmp_path / "text.txt", "w", encoding="utf-8") as handle:
        for lang in ("eng", "nld", "zho"):
            text = (tmp_path / "corpus" / lang / f"{lang}.train").read_text(encoding="utf-8").splitlines()
            handle.writelines(line + "\n" for line in text[: -max(1, int(0.05 * len(text)))])
    cfg = TokenizerSection(kind="sentencepiece", vocab_size=reference["vocab_size"])
    sp = spm.SentencePieceProcessor(model_file=str(train_model(tmp_path / "text.txt", cfg, tmp_path)))
    assert [sp.id_to_piece(i) for i in range(sp.get_piece_size())] == reference["pieces"]


def test_special_tokens_are_the_references(trained):
    tokenizer, sp, _, _ = trained
    assert (tokenizer.unk_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) == \
           (sp.unk_id(), sp.bos_id(), sp.eos_id(), sp.pad_id()) == (0, 1, 2, 3)
    assert len(tokenizer) == sp.get_piece_size() == 500
    assert tokenizer("het park")["input_ids"] == [1, *sp.encode("het park")]  # BOS prepended, as byte-level BPE


def test_sample_is_byte_equalized(trained):
    _, _, report, cfg = trained
    for lang, info in report["languages"].items():
        assert info["target_bytes"] == round(cfg.sample_bytes * PREMIUMS[lang])
        assert info["bytes"] == pytest.approx(info["target_bytes"], rel=0.1)  # a random sample of whole lines
        assert info["held_out_lines"] == info["lines"] // 20


def test_short_language_shrinks_every_sample_equally(tmp_path):
    streams = corpus_streams(400)
    available = {lang: sum(len(line.encode()) + 1 for line in s()) for lang, s in streams.items()}
    cfg = TokenizerSection(kind="sentencepiece", vocab_size=500, sample_bytes=10**9, unk_rate_limits={"default": 1.0})
    _, report = fit_tokenizer(cfg, streams, tmp_path, PREMIUMS)
    shortest = min(available, key=lambda lang: available[lang] / PREMIUMS[lang])
    info = report["languages"]
    assert info[shortest]["bytes"] == available[shortest]  # all of it
    adjusted = {lang: info[lang]["bytes"] / PREMIUMS[lang] for lang in info}
    for lang in info:
        assert adjusted[lang] == pytest.approx(adjusted[shortest], rel=0.1)
    assert "bytes x premium, x 0." in report["text"] and "to fit the shortest language" in report["text"]


def rare_chinese(n: int, seed: int) -> list[str]:
    """Lines of Chinese characters drawn from 3,000 with Zipf weights: the rare ones miss a 0.99 coverage."""
    rng = random.Random(seed)
    chars = [chr(0x4E00 + i) for i in range(3000)]
    weights = [1 / (i + 1) for i in range(3000)]
    return ["".join(rng.choices(chars, weights, k=20)) for _ in range(n)]


def test_unknown_rate_over_the_limit_names_the_language(tmp_path):
    streams = {"eng": lambda: iter(lines("eng", 800)), "zho": lambda: iter(rare_chinese(800, seed=2))}
    cfg = TokenizerSection(kind="sentencepiece", vocab_size=1600, byte_fallback=False, character_coverage=0.99)
    with pytest.raises(DataError, match=r"^tokenizer\.unk_rate_limits\.zho: [\d.]+% of zho's held-out pieces are "
                                        r"<unk>, over the limit 0\.1000%"):
        fit_tokenizer(cfg, streams, tmp_path / "strict", {"eng": 1.0, "zho": 0.936})
    relaxed = TokenizerSection(kind="sentencepiece", vocab_size=1600, byte_fallback=False, character_coverage=0.99,
                               unk_rate_limits={"eng": 1e-4, "zho": 0.5})
    _, report = fit_tokenizer(relaxed, streams, tmp_path / "relaxed", {"eng": 1.0, "zho": 0.936})
    assert report["languages"]["zho"]["unk_rate"] > 1e-3 and report["languages"]["zho"]["unk_rate_limit"] == 0.5
    assert report["languages"]["eng"]["unk_rate"] <= 1e-4


def test_vocabulary_too_large_for_the_sample_is_one_line(tmp_path):
    cfg = TokenizerSection(kind="sentencepiece", vocab_size=50_000)
    with pytest.raises(DataError, match=r"^tokenizer\.vocab_size: SentencePiece could not train on the sample: .*"
                                        r"Vocabulary size too high"):
        fit_tokenizer(cfg, {"corpus": lambda: iter(lines("eng", 200))}, tmp_path)


def test_config_keys_belong_to_their_kind():
    from babblelm.configbase import ConfigError

    with pytest.raises(ConfigError, match="tokenizer.character_coverage: only used by tokenizer.kind: sentencepiece"):
        load_config(raw={"data": {"corpus": "x"}, "tokenizer": {"character_coverage": 0.99}})
    with pytest.raises(ConfigError, match="tokenizer.min_frequency: only used by tokenizer.kind: byte_bpe"):
        load_config(raw={"data": {"corpus": "x"}, "tokenizer": {"kind": "sentencepiece", "min_frequency": 3}})
    with pytest.raises(ConfigError, match=r"tokenizer.unk_rate_limits.zho: must be a share between 0 and 1"):
        load_config(raw={"data": {"corpus": "x"}, "tokenizer": {"kind": "sentencepiece", "unk_rate_limits": {"zho": 2}}})
    assert load_config(raw={"data": {"corpus": "x"}}).tokenizer.kind == "byte_bpe"


def test_single_corpus_prepare_records_the_check(small_corpus, tmp_path):
    cfg = load_config(raw=tiny_raw(small_corpus, tmp_path / "run", tokenizer={"kind": "sentencepiece", "vocab_size": 400,
                                                                              "sample_bytes": 20_000}))
    manifest = prepare_data(cfg.data, cfg.tokenizer, tmp_path / "data", progress=False)
    assert manifest["specials"] == {"<s>": 1, "</s>": 2, "<unk>": 0, "<pad>": 3}
    check = manifest["tokenizer"]["languages"]["corpus"]
    assert check["unk_rate"] == 0.0 and check["unk_rate_limit"] == 1e-3  # byte fallback; the `default` limit
    assert manifest["budget"]["tokenizer_words"] == manifest["tokenizer"]["words"] < manifest["budget"]["words_used"]
    assert manifest["tokenizer_text"].startswith("a random 20,000-byte sample of the selected training lines; every")
    assert (tmp_path / "data" / "tokenizer" / MODEL_FILE).is_file()


def test_multilingual_prepare_trains_one_equalized_sentencepiece(tmp_path):
    write_corpus(tmp_path / "corpus")
    raw = {"data": {"corpus": str(tmp_path / "corpus"), "seq_len": 32, "track": "none", "filters": []},
           "tokenizer": {"kind": "sentencepiece", "vocab_size": 500, "sample_bytes": 8_000},
           "mixing": {"languages": {"eng": {}, "nld": {}, "zho": {}}, "budget": 60_000, "policy": "uniform"}}
    cfg = load_config(raw=raw)
    manifest = prepare_multilingual(cfg.mixing, cfg.data, cfg.tokenizer, tmp_path / "data")
    checks, premiums = manifest["tokenizer"]["languages"], premium_table(cfg.mixing)
    assert set(checks) == {"eng", "nld", "zho"} and manifest["vocab_size"] == 500
    for lang, check in checks.items():
        assert check["target_bytes"] == round(8_000 * premiums[lang]) and check["unk_rate"] == 0.0
        assert check["unk_rate_limit"] == {"eng": 1e-4, "nld": 5e-4, "zho": 1e-3}[lang]


LOAD = r"""
import importlib.util, json, sys
import transformers
from transformers import AutoTokenizer
folder, texts = sys.argv[1], json.load(open(sys.argv[2], encoding="utf-8"))
tok = AutoTokenizer.from_pretrained(folder)
print("RESULT " + json.dumps({
    "transformers": transformers.__version__, "sentencepiece": importlib.util.find_spec("sentencepiece") is not None,
    "class": type(tok).__name__, "plain": [tok(t, add_special_tokens=False)["input_ids"] for t in texts],
    "with_bos": [tok(t)["input_ids"] for t in texts],
    "decoded": [tok.decode(tok(t)["input_ids"], skip_special_tokens=True) for t in texts],
    "specials": [tok.bos_token_id, tok.eos_token_id, tok.pad_token_id, tok.unk_token_id]}))
"""


@pytest.fixture(scope="module")
def gpt2_export(tmp_path_factory):
    """A tiny multilingual GPT-2 run with a SentencePiece tokenizer, trained and exported."""
    work = tmp_path_factory.mktemp("spm-run")
    write_corpus(work / "corpus")
    raw = tiny_raw(work / "corpus", work / "run", data={"track": "none", "filters": []},
                   tokenizer={"kind": "sentencepiece", "vocab_size": 500, "sample_bytes": 8_000},
                   train={"batch_size": 8, "grad_accum": 1})
    raw["model"] = {"arch": "gpt2", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                    "intermediate_size": 64, "max_position_embeddings": 32}
    raw["mixing"] = {"languages": {"eng": {}, "nld": {}, "zho": {}}, "budget": 60_000, "tokens": 4_000,
                     "policy": "uniform", "eval_every": 10, "reward_dev_tokens": 160, "final_dev_tokens": 320}
    train(load_config(raw=raw), progress=False)
    sp = spm.SentencePieceProcessor(model_file=str(work / "run" / "data" / "tokenizer" / MODEL_FILE))
    return export_model(work / "run", work / "hf"), sp


@pytest.mark.parametrize("env", ["official", "lm-eval"])
def test_export_tokenizer_loads_without_sentencepiece_and_encodes_the_same(env, gpt2_export, tmp_path):
    folder, sp = gpt2_export
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "gpt2" and config["vocab_size"] == 500
    texts = ENG + NLD + ZHO + EDGES + random_texts(300, seed=3)
    (tmp_path / "texts.json").write_text(json.dumps(texts), encoding="utf-8")
    (tmp_path / "load.py").write_text(LOAD)
    proc = envs.run(env, ["python", tmp_path / "load.py", folder, tmp_path / "texts.json"], cwd=tmp_path)
    got = json.loads(proc.stdout.split("RESULT ", 1)[1])
    if env == "official":
        assert got["transformers"] == "4.51.3" and not got["sentencepiece"]
    assert got["specials"] == [1, 2, 3, 0]
    for text, plain, with_bos, decoded in zip(texts, got["plain"], got["with_bos"], got["decoded"], strict=True):
        assert plain == sp.encode(text), repr(text)
        assert with_bos == [1, *plain]
        assert decoded == sp.decode(plain), repr(text)


def test_exported_gpt2_generates_with_its_tokenizer(gpt2_export):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, _ = gpt2_export
    model, tok = AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    assert type(model).__name__ == "GPT2LMHeadModel"
    with torch.no_grad():
        out = model.generate(**tok(["de kleine hond", "小狗"], return_tensors="pt", padding=True, padding_side="left"),
                             max_new_tokens=5, do_sample=False)
    assert out.shape == (2, out.shape[1]) and (folder / "README.md").read_text().count("SentencePiece BPE") == 1
