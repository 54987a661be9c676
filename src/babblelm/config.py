"""The run configuration: one YAML file describes data, tokenizer, model, optimizer, schedule,
training budget, checkpoints and evaluation.

    cfg = load_config("configs/llama-26m.yaml", overrides=["optim.lr=4e-4"])

Every unknown key, wrong type and out-of-range value is reported at once with its key path.
The `model` section holds `arch` plus that architecture's own keys, checked against the
architecture's argument dataclass in the model registry.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import yaml

from .configbase import ConfigError, apply_overrides, from_dict, to_dict
from .models.registry import DEFAULT_ARCH, ModelSection, parse_model_section

MAX_EPOCHS = 10
TRACK_WORDS = {"strict-small": 10_000_000, "strict": 100_000_000}


@dataclass
class RunSection:
    name: str = "run"
    out_dir: str = field(default="runs/{name}", metadata={"help": "run folder; {name} is replaced by run.name"})
    seed: int = field(default=1337, metadata={"min": 0, "fixed": True})
    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda or cuda:N"})
    threads: int | None = field(default=None, metadata={
        "min": 1, "help": "CPU threads (torch); null: the cores other processes leave free (docs/training.md)"})

    def validate(self):
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            yield "device", f"expected auto, cpu, cuda or cuda:N, got {self.device!r}"
        try:
            self.out_dir.format(name=self.name)
        except (KeyError, IndexError, ValueError, AttributeError):
            yield "out_dir", f"may hold {{name}} and no other braces, got {self.out_dir!r}"


@dataclass
class SourceSection:
    """Cleaning and allocation of one source (`data.sources.<name>`); see docs/data.md."""

    filters: list[str] | None = field(default=None, metadata={"help": "filters of this source; default data.filters"})
    min_words: int = field(default=0, metadata={"min": 0, "help": "drop cleaned lines with fewer words; 0 = off"})
    max_per_book: int | None = field(default=None, metadata={"min": 1, "help": "keep at most K lines per *** book ***"})
    words: int | None = field(default=None, metadata={"min": 0, "help": "quota for allocation: listed"})
    weight: float = field(default=1.0, metadata={"min": 0.0, "help": "share for allocation: weighted"})


@dataclass
class DataSection:
    corpus: str = field(default="", metadata={"help": "folder of BabyLM files (*.train, *.dev), .txt, .jsonl, .cha, wiki_NN"})
    filters: list[str] = field(default_factory=lambda: ["childes_speaker_tags"])
    sources: dict[str, SourceSection] = field(default_factory=dict, metadata={"help": "per-source filters and quotas"})
    track: Literal["strict-small", "strict", "none"] = "strict-small"
    max_words: int | None = field(default=None, metadata={"min": 1, "help": "use at most this many training words"})
    max_bytes: int | None = field(default=None, metadata={"min": 1, "help": "or at most this many bytes of cleaned text"})
    allocation: Literal["proportional", "corpus_order", "equal", "weighted", "listed"] = field(
        default="proportional", metadata={"help": "how data.max_words / max_bytes is split between sources"})
    order: Literal["concat", "round_robin"] = field(default="concat", metadata={"help": "how selected sources are mixed"})
    text_field: str = field(default="text", metadata={"help": "the text field of .jsonl records"})
    max_line_bytes: int = field(default=1_000_000, metadata={"min": 1, "help": "longer lines are skipped and counted"})
    seq_len: int = field(default=512, metadata={"min": 8, "max": 1_048_576})

    def validate(self):
        from .data.filters import FILTERS, PARAMETER_FILTERS

        if self.max_words is not None and self.max_bytes is not None:
            yield "max_bytes", "set data.max_words or data.max_bytes, not both"
        if self.allocation in ("equal", "weighted") and self.max_words is None and self.max_bytes is None:
            yield "allocation", f"{self.allocation!r} divides a total: set data.max_words or data.max_bytes"
        if self.allocation == "listed" and self.max_bytes is not None:
            yield "max_bytes", "allocation 'listed' takes words per source (data.sources.<name>.words)"
        known = sorted(set(FILTERS) - PARAMETER_FILTERS)
        lists = [("filters", self.filters)] + [(f"sources.{n}.filters", s.filters) for n, s in self.sources.items()]
        for key, names in lists:
            for i, name in enumerate(names or []):
                if name in PARAMETER_FILTERS:
                    yield f"{key}[{i}]", f"{name!r} is switched on by data.sources.<name>.{name}: N, not listed"
                elif name not in FILTERS:
                    yield f"{key}[{i}]", f"unknown filter {name!r}; known filters: {', '.join(known)}"


# Unknown-piece rate allowed per language on the held-out part of the SentencePiece sample (the TAAM
# reference's limits); `default`: any other language, and a single-corpus run.
UNK_RATE_LIMITS = {"eng": 1e-4, "nld": 5e-4, "zho": 1e-3, "default": 1e-3}


@dataclass
class TokenizerSection:
    """The tokenizer (docs/data.md, "Tokenizers"); a key marked with a `kind` belongs to that kind only."""

    kind: Literal["byte_bpe", "sentencepiece"] = field(
        default="byte_bpe", metadata={"help": "byte_bpe: byte-level BPE (HF tokenizers); sentencepiece: SentencePiece BPE"})
    vocab_size: int = field(default=16_000, metadata={"min": 300, "max": 4_294_967_295})
    min_frequency: int = field(default=2, metadata={"min": 1, "kind": "byte_bpe"})
    character_coverage: float = field(default=0.9995, metadata={
        "min": 0.0, "min_exclusive": True, "max": 1.0, "kind": "sentencepiece",
        "help": "share of the sample's characters the alphabet must cover; the rarest others are unknown"})
    byte_fallback: bool = field(default=True, metadata={
        "kind": "sentencepiece", "help": "unknown characters become their UTF-8 bytes (256 byte tokens), not <unk>"})
    normalization: Literal["nmt_nfkc_cf", "nmt_nfkc", "identity"] = field(default="nmt_nfkc_cf", metadata={
        "kind": "sentencepiece", "help": "SentencePiece's normalization rule; nmt_nfkc_cf also case-folds (lowercases)"})
    sample_bytes: int = field(default=52_428_800, metadata={
        "min": 1, "kind": "sentencepiece",
        "help": "training sample per language: this many UTF-8 bytes x its byte premium, equal across languages"})
    unk_rate_limits: dict[str, float] = field(default_factory=lambda: dict(UNK_RATE_LIMITS), metadata={
        "kind": "sentencepiece", "help": "max <unk> share of the held-out sample per language; `default` for the others"})

    def validate(self):
        for f in dataclasses.fields(self):
            kind = f.metadata.get("kind")
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            if kind is not None and kind != self.kind and getattr(self, f.name) != default:
                yield f.name, f"only used by tokenizer.kind: {kind} (this tokenizer is {self.kind})"
        for lang, limit in self.unk_rate_limits.items():
            if not 0 <= limit <= 1:
                yield f"unk_rate_limits.{lang}", f"must be a share between 0 and 1, got {limit!r}"


@dataclass
class OptimSection:
    name: Literal["adamw", "muon_adamw"] = field(
        default="adamw", metadata={"help": "muon_adamw: Muon on 2-D hidden matrices, AdamW on the rest"})
    lr: float = field(default=3e-4, metadata={"min": 0.0, "min_exclusive": True, "help": "AdamW peak learning rate"})
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    eps: float = field(default=1e-8, metadata={"min": 0.0})
    weight_decay: float = field(default=0.1, metadata={"min": 0.0})
    grad_clip: float = field(default=1.0, metadata={"min": 0.0, "help": "max global grad norm; 0 disables"})
    decay_all: bool = field(default=False, metadata={"help": "weight decay on embeddings, norms and biases too"})
    # Muon (optim.name: muon_adamw) -- see docs/training.md
    muon_lr: float = field(default=5e-3, metadata={"min": 0.0, "min_exclusive": True, "help": "Muon peak learning rate"})
    muon_momentum: float = field(default=0.95, metadata={"min": 0.0, "max": 1.0, "max_exclusive": True})
    muon_weight_decay: float | None = field(default=None, metadata={"min": 0.0, "help": "default: optim.weight_decay"})
    adjust_lr_fn: Literal["original", "match_rms_adamw"] = "original"

    def validate(self):
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            yield "betas", f"expected two numbers in [0, 1), got {self.betas!r}"


@dataclass
class ScheduleSection:
    name: Literal["cosine", "constant", "wsd"] = "cosine"
    warmup_steps: int | None = field(default=None, metadata={"min": 0})
    warmup_fraction: float = field(default=0.0, metadata={"min": 0.0, "max": 1.0})
    min_lr_ratio: float = field(default=0.1, metadata={"min": 0.0, "max": 1.0, "help": "final lr as a fraction of peak"})
    stable_fraction: float = field(default=0.85, metadata={"min": 0.0, "max": 1.0, "help": "wsd: steps before the decay"})
    decay_shape: Literal["linear", "cosine", "1-sqrt"] = "linear"


@dataclass(frozen=True)
class Batch:
    """One optimizer step's sequences: `size` over all processes, `per_rank` in each process, fed as
    `accumulation` forward and backward passes of `micro` sequences whose gradients add up."""

    size: int
    per_rank: int
    micro: int

    @property
    def accumulation(self) -> int:
        """The passes each process takes per optimizer step."""
        return self.per_rank // self.micro


@dataclass
class TrainSection:
    """Budget, batch, precision, logging, dev evaluation and checkpoint cadence. A field marked `fixed`
    decides the data, model or plan of a run and may not change when it is resumed (train/changes.py)."""

    words: int | None = field(default=None, metadata={
        "min": 1, "fixed": True, "help": "words to train on; default epochs x corpus"})
    epochs: float = field(default=1.0, metadata={"min": 0.0, "min_exclusive": True, "max": MAX_EPOCHS, "fixed": True})
    steps: int | None = field(default=None, metadata={
        "min": 1, "fixed": True, "help": "exactly this many optimizer steps, the blocks read in seeded per-epoch "
                                         "orders (then train.epochs is unused); at most 10 epochs"})
    batch_size: int = field(default=16, metadata={
        "min": 1, "fixed": True, "help": "global batch = batch_size x grad_accum sequences per optimizer step; "
                                         "without a memory probe (CPU), also the sequences per forward pass"})
    grad_accum: int = field(default=1, metadata={
        "min": 1, "fixed": True, "help": "multiplies the global batch; the passes actually taken per step follow "
                                         "from micro_batch (announced at the start)"})
    micro_batch: int | None = field(default=None, metadata={
        "min": 1, "help": "sequences per forward pass and process, rounded down to a divisor of the per-process "
                          "batch; null: largest that fits (GPU), batch_size (CPU)"})
    precision: Literal["auto", "fp32", "bf16", "fp16"] = field(
        default="auto", metadata={"help": "auto: bf16 autocast on CUDA, fp32 on CPU; fp16 uses a grad scaler"})
    compile: bool = field(default=False, metadata={"help": "torch.compile the model"})
    gradient_checkpointing: bool = False
    log_every: int = field(default=10, metadata={"min": 1})
    dev_every: int = field(default=200, metadata={"min": 0, "help": "steps between dev evaluations; 0 disables"})
    dev_batches: int = field(default=20, metadata={"min": 1, "help": "the dev loss reads the first dev_batches "
                                                                     "x dev_batch_size dev blocks"})
    dev_batch_size: int | None = field(default=None, metadata={
        "min": 1, "help": "sequences per forward pass of the dev evaluation; null: batch_size"})
    save_every: int = field(default=500, metadata={"min": 0, "help": "steps between resume checkpoints; 0 disables"})

    def validate(self):
        if self.steps is not None and self.words is not None:
            yield "steps", "set train.steps or train.words, not both"

    @property
    def global_batch(self) -> int:
        """Sequences per optimizer step, over all processes."""
        return self.batch_size * self.grad_accum

    def batch(self, processes: int = 1, fits: Callable[[int], bool] | None = None) -> Batch:
        """The step's batch split between `processes` processes. The micro-batch is the largest divisor
        of the per-process batch that is at most `micro_batch` when set, else that `fits` (a device's
        memory probe, tried from the largest down), else at most `batch_size`."""
        if self.global_batch % processes:
            raise ValueError(f"train.batch_size x train.grad_accum = {self.global_batch} sequences must divide "
                             f"evenly between the {processes} processes")
        per_rank = self.global_batch // processes
        if self.micro_batch is not None or fits is None:
            cap = self.micro_batch if self.micro_batch is not None else self.batch_size
            return Batch(self.global_batch, per_rank, _largest_divisor(per_rank, lambda micro: micro <= cap))
        return Batch(self.global_batch, per_rank, _largest_divisor(per_rank, fits))

    @property
    def dev_batch(self) -> int:
        """Sequences per forward pass of the dev evaluation."""
        return self.dev_batch_size if self.dev_batch_size is not None else self.batch_size

    @property
    def dev_blocks(self) -> int:
        """The dev blocks a dev evaluation reads (the first ones: the same subset every time)."""
        return self.dev_batch * self.dev_batches


def _largest_divisor(n: int, ok: Callable[[int], bool]) -> int:
    """The largest divisor d of n with ok(d), trying them from the largest down."""
    for d in range(n, 0, -1):
        if n % d == 0 and ok(d):
            return d
    raise RuntimeError("not even a micro-batch of 1 sequence fits in memory: use a smaller model or data.seq_len")


@dataclass
class CheckpointSection:
    milestones: Literal["babylm", "none"] = "babylm"
    scale: float = field(default=1.0, metadata={"min": 0.0, "min_exclusive": True, "help": "milestone words x scale (tiny runs)"})


@dataclass
class EvalSection:
    tasks: list[str] = field(default_factory=lambda: ["blimp"], metadata={
        "help": "zero-shot tasks (eval/catalog.py); official: the rules' official tasks"})
    data: str | None = None
    batch_size: int = field(default=64, metadata={"min": 1})
    rules: Literal["2026", "2025"] = field(default="2026", metadata={
        "help": "whose official scoring rules (ties, EWoK, entity tracking, tasks, fast subsets): docs/evaluation.md"})

    def validate(self):
        from .eval.catalog import known_tasks, unknown_tasks

        if not self.tasks:
            yield "tasks", f"expected at least one task; known: {known_tasks()}"
        for i, name in enumerate(self.tasks):
            if unknown_tasks([name]):
                yield f"tasks[{i}]", f"unknown task {name!r}; known: {known_tasks()}"


# --- multilingual mixing (TAAM): see docs/multilingual.md ---
@dataclass
class LanguageSection:
    corpus: str | None = field(default=None, metadata={"help": "this language's folder; default data.corpus/<language>"})
    premium: float | None = field(default=None, metadata={"min": 0.0, "min_exclusive": True,
                                                          "help": "byte premium; default from the built-in table"})


@dataclass
class PiFromRuns:
    """`mixing.pi: {from_runs: [RUN, ...]}`: the time-averaged pi of earlier runs (e.g. P* from TAAM-v2)."""

    from_runs: list[str] = field(default_factory=list, metadata={"help": "run folders; each run's pi averaged over "
                                                                          "its evaluations, then over the runs"})

    def validate(self):
        if not self.from_runs:
            yield "from_runs", "expected at least one run folder"


@dataclass
class MixingSection:
    languages: dict[str, LanguageSection] = field(default_factory=dict, metadata={"help": "empty: one-corpus training"})
    zho_variant: Literal["zho_hans", "zho_hant"] = field(default="zho_hans", metadata={"help": "premium 0.9360 or 0.9894"})
    budget: int | None = field(default=None, metadata={"min": 1, "help": "premium-adjusted bytes (sum of bytes/premium), split equally"})
    tokens: int | None = field(default=None, metadata={"min": 1, "help": "token exposures to train; default train.epochs x corpus tokens"})
    policy: Literal["uniform", "static", "taam"] = "taam"
    prior: Literal["uriel", "uriel_reverse", "uniform", "proportional"] = field(
        default="uriel", metadata={"help": "pi0 when mixing.pi is not given: URIEL isolation (or its reverse), 1/K, "
                                           "or proportional to each language's training tokens"})
    features: list[str] = field(default_factory=lambda: ["syntax_knn", "phonology_knn", "inventory_knn"],
                                metadata={"help": "URIEL feature sets of the prior (lang2vec names), concatenated"})
    temperature: float = field(default=0.5, metadata={"min": 0.0, "min_exclusive": True, "help": "prior softmax temperature"})
    prior_floor: float = field(default=0.10, metadata={"min": 0.0, "max": 1.0, "help": "the prior's floor (linear shrinkage)"})
    pi: dict[str, float] | PiFromRuns | None = field(default=None, metadata={
        "help": "a fixed pi (static) or TAAM's start; {from_runs: [RUN, ...]}: earlier runs' time-averaged pi (P*)"})
    eta: float = field(default=0.1, metadata={"min": 0.0, "min_exclusive": True})
    gamma: float = field(default=0.1, metadata={"min": 0.0, "max": 1.0, "max_exclusive": True})
    min_pi: float = field(default=0.05, metadata={"min": 0.0, "max": 1.0, "help": "EXP3's floor on pi (linear shrinkage)"})
    reward: Literal["normalized_excess_loss", "cross_lingual_deficit"] = "normalized_excess_loss"
    granularity: Literal["batch", "rows"] = field(default="batch", metadata={
        "help": "batch: every batch is one language drawn from pi; rows: each batch's rows drawn per language"})
    eval_every: int = field(default=200, metadata={"min": 1, "help": "steps between per-language dev losses (and pi updates)"})
    reward_dev_tokens: int = field(default=5_000, metadata={"min": 1, "help": "per language: the dev slice pi is updated from"})
    final_dev_tokens: int = field(default=50_000, metadata={"min": 0, "help": "per language: a separate dev slice measured "
                                                                              "at the end; 0: none"})

    def validate(self):
        from .train.prior import FEATURE_SETS

        k = len(self.languages)
        for key, floor in (("min_pi", self.min_pi), ("prior_floor", self.prior_floor)):
            if k and floor * k > 1:
                yield key, f"{key} x {k} languages must be <= 1, got {floor}"
        for i, name in enumerate(self.features):
            if name not in FEATURE_SETS:
                yield f"features[{i}]", f"unknown URIEL feature set {name!r}; known: {', '.join(FEATURE_SETS)}"
        if isinstance(self.pi, dict):
            if set(self.pi) != set(self.languages):
                yield "pi", f"expected one value per language {sorted(self.languages)}, got {sorted(self.pi)}"
            elif any(v < 0 for v in self.pi.values()) or sum(self.pi.values()) <= 0:
                yield "pi", "expected non-negative values with a positive sum"
            elif self.policy == "taam" and min(self.pi.values()) <= 0:
                yield "pi", "TAAM starts from log pi: every language needs pi > 0"


FIXED = {"fixed": True}  # a field (or a whole section) that decides the data, model or plan of a run


@dataclass
class RunConfig:
    """A run's configuration; a field whose metadata is `fixed` may not change when the run is resumed."""

    run: RunSection = field(default_factory=RunSection)
    data: DataSection = field(default_factory=DataSection, metadata=FIXED)
    tokenizer: TokenizerSection = field(default_factory=TokenizerSection, metadata=FIXED)
    model: dict[str, Any] = field(default_factory=lambda: {"arch": DEFAULT_ARCH}, metadata=FIXED)
    optim: OptimSection = field(default_factory=OptimSection)
    schedule: ScheduleSection = field(default_factory=ScheduleSection)
    train: TrainSection = field(default_factory=TrainSection)
    checkpoints: CheckpointSection = field(default_factory=CheckpointSection, metadata=FIXED)
    eval: EvalSection = field(default_factory=EvalSection)
    mixing: MixingSection = field(default_factory=MixingSection, metadata=FIXED)

    def validate(self):
        languages = self.mixing.languages.values()
        if not self.data.corpus and not (languages and all(lang.corpus for lang in languages)):
            yield "data.corpus", "required: the folder holding the training files"
        if self.mixing.languages and self.train.steps is not None:
            yield "train.steps", "multilingual runs count their budget in mixing.tokens or train.epochs"

    @property
    def out_dir(self) -> Path:
        return Path(self.run.out_dir.format(name=self.run.name))

    @functools.cached_property
    def model_section(self) -> ModelSection:
        """The `model` section parsed: its architecture and typed arguments (once, when the config loads)."""
        return parse_model_section(self.model)

    @property
    def model_args(self):
        """The architecture's typed arguments."""
        return self.model_section.args


def load_config(path: str | Path | None = None, overrides: list[str] | None = None, raw: dict | None = None) -> RunConfig:
    """Read a YAML run file (or `raw` dict), apply `key.path=value` overrides, validate everything."""
    source = str(path) if path is not None else None
    if raw is None:
        if path is None:
            raise ValueError("load_config needs a path or a raw dict")
        raw = read_yaml(Path(path))
    raw = apply_overrides(raw, list(overrides or []))
    problems: list[tuple[str, str]] = []
    try:
        cfg = from_dict(RunConfig, raw, source)
    except ConfigError as err:
        problems.extend(err.problems)
        cfg = None
    model_raw = raw.get("model", {}) if isinstance(raw, dict) else None
    if isinstance(model_raw, dict):  # its problems beside the others' even when the rest fails
        try:
            section = parse_model_section(model_raw) if cfg is None else cfg.model_section
        except ConfigError as err:
            problems.extend(err.problems)
            section = None
        if cfg is not None and section is not None:
            problems.extend(_cross_checks(cfg, section.args))
    if problems:
        raise ConfigError(problems, source)
    return cfg


def read_yaml(path: Path, including: tuple[Path, ...] = ()) -> dict:
    """A YAML run file as a dict. `include: OTHER.yaml` (relative to the file) reads OTHER first; this
    file's values win, mappings merged key by key (the TAAM conditions include configs/taam/base.yaml)."""
    source = str(including[-1]) if including else str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([("include" if including else "", f"config file not found: {path}")], source) from None
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise ConfigError([("", f"not valid YAML{yaml_place(err)}")], str(path)) from None
    if not isinstance(raw, dict) or "include" not in raw:
        return raw
    target = raw.pop("include")
    if not isinstance(target, str):
        raise ConfigError([("include", f"expected the path of a YAML file, got {target!r}")], str(path))
    target = path.parent / target
    if target.resolve() in [p.resolve() for p in (*including, path)]:
        raise ConfigError([("include", f"{target} includes itself")], str(path))
    return _merge(read_yaml(target, (*including, path)), raw)


def _merge(base: dict, top: dict) -> dict:
    out = dict(base)
    for key, value in top.items():
        out[key] = _merge(out[key], value) if isinstance(out.get(key), dict) and isinstance(value, dict) else value
    return out


def yaml_place(err: yaml.YAMLError) -> str:
    """' at line L, column C: what was wrong' from a YAML error, on one line."""
    mark = getattr(err, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{where}: {getattr(err, 'problem', None) or str(err).splitlines()[0]}"


def _cross_checks(cfg: RunConfig, model_args) -> list[tuple[str, str]]:
    problems = []
    max_pos = getattr(model_args, "max_position_embeddings", None)
    if max_pos is not None and cfg.data.seq_len > max_pos:
        problems.append(("data.seq_len", f"must be <= model.max_position_embeddings ({max_pos}), got {cfg.data.seq_len}"))
    return problems


def save_config(cfg: RunConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False), encoding="utf-8")
