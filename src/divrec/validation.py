"""Typed validation of the composed config, before any data is prepared: one declarative rule per settable key.

``validate(cfg)`` reads every key of ``RULES`` that the config has (a key it lacks, like ``k`` in ``train``, is
skipped) and raises ``ConfigError`` with one line naming the key, the value as given, the allowed range, why, and
an example fix::

    data.batch_size=0: out of range; allowed: an integer >= 1 (windows per training step); e.g. data.batch_size=128

``trainer.accelerator`` and ``trainer.devices`` are checked against this machine's real facts (``Machine.current()``:
``torch.cuda.is_available()``, ``os.cpu_count()``). ``pipeline.check_config`` calls ``validate`` first, so train,
eval, recommend and the feedback loop refuse a bad value before anything is loaded or written. Model keys are not
here: ``divrec.models.check_model_config`` checks them against each model's own ``Config``.
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from divrec.errors import UserError
from divrec.recipes import CHOICES as RECIPE_CHOICES


class ConfigError(UserError):
    """A config value of the wrong type or outside its allowed range (one line: key, value, range, fix)."""


@dataclass(frozen=True)
class Machine:
    """The facts ``trainer.accelerator`` / ``trainer.devices`` are checked against."""

    cuda_devices: int  # 0 when torch.cuda.is_available() is False
    cpu_cores: int  # os.cpu_count()
    mps: bool = False  # Apple-silicon GPU
    tpu: bool = False  # torch_xla importable
    elastic: bool = False  # started by torchrun: one visible GPU per process is enough (as Lightning accepts)

    @classmethod
    def current(cls) -> Machine:
        cuda = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return cls(
            cuda_devices=cuda,
            cpu_cores=os.cpu_count() or 1,
            mps=bool(torch.backends.mps.is_available()),
            tpu=importlib.util.find_spec("torch_xla") is not None,
            elastic=bool(torch.distributed.is_available() and torch.distributed.is_torchelastic_launched()),
        )

    def describe(self) -> str:
        """``no CUDA GPU (torch.cuda.is_available() is False), 2 CPU core(s) (os.cpu_count())``."""
        none = "no CUDA GPU (torch.cuda.is_available() is False)"
        gpus = f"{self.cuda_devices} CUDA GPU(s) (torch.cuda.device_count())" if self.cuda_devices else none
        return f"{gpus}, {self.cpu_cores} CPU core(s) (os.cpu_count())"


@dataclass(frozen=True)
class Context:
    """What a rule may look at besides its own value: the whole config (devices read the accelerator) and the
    machine."""

    cfg: DictConfig
    machine: Machine


class Kind(Protocol):
    """What a key's value must be: ``problem`` says why a value is refused (None = accepted), ``allowed`` the range."""

    def problem(self, value: Any, ctx: Context) -> str | None: ...

    def allowed(self, ctx: Context) -> str: ...


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _bounds(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    """``in [0, 1)``, ``>= 1``, ``> 0`` or ``(any value)``."""
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low}"
    if high is not None:
        return f"{'<' if high_open else '<='} {high}"
    return "(any value)"


@dataclass(frozen=True)
class Number:
    """A finite real number (an int is fine) within the bounds; ``*_open`` excludes that bound."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def problem(self, value: Any, ctx: Context) -> str | None:
        if not _is_number(value):
            return "not a number"
        if isinstance(value, float) and not math.isfinite(value):
            return "not a finite number"
        too_low = self.low is not None and (value <= self.low if self.low_open else value < self.low)
        too_high = self.high is not None and (value >= self.high if self.high_open else value > self.high)
        return "out of range" if too_low or too_high else None

    def allowed(self, ctx: Context) -> str:
        return f"a number {_bounds(self.low, self.high, self.low_open, self.high_open)}"


@dataclass(frozen=True)
class Integer:
    """A whole number (not a bool, not 2.0) within [low, high], or the ``special`` value (e.g. -1 = no limit)."""

    low: int | None = None
    high: int | None = None
    special: int | None = None

    def problem(self, value: Any, ctx: Context) -> str | None:
        if not _is_int(value):
            return "not an integer"
        if self.special is not None and value == self.special:
            return None
        too_low, too_high = self.low is not None and value < self.low, self.high is not None and value > self.high
        return "out of range" if too_low or too_high else None

    def allowed(self, ctx: Context) -> str:
        special = f" or {self.special}" if self.special is not None else ""
        return f"an integer {_bounds(self.low, self.high, False, False)}{special}"


@dataclass(frozen=True)
class Flag:
    """true or false (Hydra parses them; 1, "yes" or "false" in quotes are refused)."""

    def problem(self, value: Any, ctx: Context) -> str | None:
        return None if isinstance(value, bool) else "not true/false"

    def allowed(self, ctx: Context) -> str:
        return "true or false"


@dataclass(frozen=True)
class OneOf:
    """One of the listed names; an int matches its decimal spelling (``trainer.precision=32`` = ``"32"``)."""

    options: tuple[str, ...]

    def problem(self, value: Any, ctx: Context) -> str | None:
        ok = isinstance(value, str) or _is_int(value)
        return None if ok and str(value) in self.options else "not one of the allowed names"

    def allowed(self, ctx: Context) -> str:
        return "one of " + "|".join(self.options)


@dataclass(frozen=True)
class ListOf:
    """A list of at least ``min_len`` (exactly ``length``, when set) items, each of ``item``."""

    item: Number | Integer
    min_len: int = 1
    length: int | None = None

    def problem(self, value: Any, ctx: Context) -> str | None:
        if not isinstance(value, list):
            return "not a list"
        if (self.length is not None and len(value) != self.length) or len(value) < self.min_len:
            return "empty" if not value else f"{len(value)} item(s)"
        bad = next((v for v in value if self.item.problem(v, ctx) is not None), None)
        return None if bad is None else f"item {show(bad)} is {self.item.problem(bad, ctx)}"

    def allowed(self, ctx: Context) -> str:
        size = f"{self.length}" if self.length is not None else f"at least {self.min_len}"
        return f"a list of {size} item(s), each {self.item.allowed(ctx)}"


ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")


def device_type(accelerator: Any, machine: Machine) -> str | None:
    """What ``trainer.accelerator`` runs on here: cpu | cuda | mps | tpu; None for a custom accelerator object."""
    name = str(accelerator).lower() if isinstance(accelerator, str) else None
    if name == "auto":  # Lightning's order of preference
        return "tpu" if machine.tpu else "cuda" if machine.cuda_devices else "mps" if machine.mps else "cpu"
    if name == "gpu":  # Lightning: CUDA, else Apple's MPS
        return "mps" if machine.mps and not machine.cuda_devices else "cuda"
    return name


@dataclass(frozen=True)
class Accelerator:
    """``trainer.accelerator``: a Lightning accelerator name this machine has (or a custom accelerator object)."""

    def problem(self, value: Any, ctx: Context) -> str | None:
        if isinstance(value, dict):  # an Accelerator built from a _target_ node: Lightning checks it
            return None
        if not isinstance(value, str) or value.lower() not in ACCELERATORS:
            return "not an accelerator name"
        missing = {"cuda": not ctx.machine.cuda_devices, "mps": not ctx.machine.mps, "tpu": not ctx.machine.tpu}
        kind = device_type(value, ctx.machine) or ""
        wanted = {"cuda": "a CUDA GPU", "mps": "an MPS device", "tpu": "a TPU (torch_xla)"}.get(kind)
        return f"needs {wanted}, but this machine has {ctx.machine.describe()}" if missing.get(kind) else None

    def allowed(self, ctx: Context) -> str:
        m = ctx.machine
        here = ["auto", "cpu", *(["gpu", "cuda"] if m.cuda_devices else []), *(["mps"] if m.mps else [])]
        here += ["gpu"] if m.mps and not m.cuda_devices else []
        return "one of " + "|".join(here + (["tpu"] if m.tpu else [])) + " on this machine"


def parse_devices(value: Any) -> str | int | list[int] | None:
    """``trainer.devices`` as Lightning reads it: "auto", an int (-1 = all), or a list of device indices (also
    given as "0,1"); None when it is none of these."""
    if isinstance(value, str):
        text = value.strip()
        if text == "auto":
            return text
        if "," in text:
            parts = [p.strip() for p in text.split(",") if p.strip()]
            return [int(p) for p in parts] if parts and all(p.isdigit() for p in parts) else None
        return int(text) if re.fullmatch(r"-?\d+", text) else None
    if _is_int(value):
        return int(value)
    if isinstance(value, list) and value and all(_is_int(i) for i in value):
        return [int(i) for i in value]
    return None


def _device_problem(kind: str, wanted: int | list[int], available: int) -> str | None:
    """Why ``wanted`` devices cannot run on ``available`` devices of ``kind`` (cpu | cuda | mps); None = they can."""
    unit = {"cpu": "CPU processes", "cuda": "GPUs", "mps": "MPS devices"}[kind]
    if isinstance(wanted, list):
        outside = sorted({i for i in wanted if not 0 <= i < available})
        if kind == "cpu" or outside:
            return "device lists are for GPUs" if kind == "cpu" else f"device index(es) {outside} not on this machine"
        return "a device index is repeated" if len(set(wanted)) < len(wanted) else None
    if wanted == -1:
        return "-1 (every device) is for GPUs" if kind == "cpu" else None
    if wanted < -1:
        return "not a device count"
    return f"more {unit} than this machine has" if wanted > available else None


@dataclass(frozen=True)
class Devices:
    """``trainer.devices``: what the accelerator it goes with can run here (CPU processes up to the cores, GPUs up
    to the visible ones)."""

    def problem(self, value: Any, ctx: Context) -> str | None:
        accelerator = OmegaConf.select(ctx.cfg, "trainer.accelerator", default="auto")
        kind = device_type(accelerator, ctx.machine)
        wanted = parse_devices(value)
        if wanted is None:
            return "not a device count, -1, auto or a list of device indices"
        if kind not in ("cpu", "cuda", "mps") or wanted == "auto":  # tpu / custom accelerators: Lightning checks
            return None
        if wanted == 0 or wanted == []:
            return "0 devices run nothing"
        if kind == "cuda" and ctx.machine.elastic and ctx.machine.cuda_devices == 1:
            return None  # torchrun with one visible GPU per process, as Lightning accepts
        available = {"cpu": ctx.machine.cpu_cores, "cuda": ctx.machine.cuda_devices, "mps": 1}[kind]
        reason = _device_problem(kind, wanted, available)  # type: ignore[arg-type]
        on = f"trainer.accelerator={show(accelerator)} runs on {kind} here; this machine has {ctx.machine.describe()}"
        return None if reason is None else f"{reason} ({on})"

    def allowed(self, ctx: Context) -> str:
        kind = device_type(OmegaConf.select(ctx.cfg, "trainer.accelerator", default="auto"), ctx.machine)
        if kind == "cpu":
            return f"an integer in [1, {ctx.machine.cpu_cores}] (CPU processes) or auto"
        if kind == "cuda":
            n = ctx.machine.cuda_devices
            return f"an integer in [1, {n}], -1 (all {n} GPUs), auto, or a list of distinct indices in [0, {n - 1}]"
        return "1, -1 or auto" if kind == "mps" else "what the accelerator accepts"


@dataclass(frozen=True)
class Rule:
    """``key`` (``*`` = every child of that node) must be ``kind``; ``nullable``: null is allowed (and means
    ``why`` says what); ``only``: the rule applies when the key's node has one of these ``_target_`` class names."""

    key: str
    kind: Kind
    why: str
    example: str
    nullable: bool = False
    only: tuple[str, ...] = ()


SAMPLED = ("NextItemBCE", "NextItemSampledSoftmax", "GBCE")
RERANK_ORDER = OneOf(("greedy", "score"))
PRECISIONS = ("auto", "64-true", "32-true", "16-true", "bf16-true", "16-mixed", "bf16-mixed", "transformer-engine",
              "transformer-engine-float16", "64", "32", "16", "bf16")  # Lightning 2.x's precision flags

RULES: tuple[Rule, ...] = (
    Rule("seed", Integer(0, 2**32 - 1), "numpy and torch seeds are unsigned 32-bit", "seed=42"),
    Rule("compile", Flag(), "torch.compile the backbone", "compile=false"),
    Rule("recipe", OneOf(RECIPE_CHOICES), "auto = the data's size class (divrec.recipes); none = no recipe",
         "recipe=auto"),
    Rule("k", Integer(1), "recommendation list length", "k=10"),
    Rule("explain_top", Integer(1), "history items per recommended item", "explain_top=3"),
    Rule("explain", Flag(), "add explanations to the lists", "explain=false"),
    # --- data ----------------------------------------------------------------------------------------------------
    Rule("data.batch_size", Integer(1), "windows per training step", "data.batch_size=128"),
    Rule("data.eval_batch_size", Integer(1), "users per evaluation step", "data.eval_batch_size=1024"),
    Rule("data.max_len", Integer(1), "the most recent items the model reads", "data.max_len=50"),
    Rule("data.stride", Integer(1), "step between training windows; null = max_len", "data.stride=null", True),
    Rule("data.num_workers", Integer(0), "data-loader worker processes", "data.num_workers=0"),
    Rule("data.group_batches", Integer(1), "batches per length-sorted chunk; 1 = plain shuffle",
         "data.group_batches=32"),
    Rule("data.train_users_fraction", Number(0, 1, low_open=True), "share of users trained on",
         "data.train_users_fraction=1.0"),
    Rule("data.download", Flag(), "fetch missing files from the official source", "data.download=true"),
    Rule("data.shuffle_sequences", Flag(), "train on shuffled sequences (a control)", "data.shuffle_sequences=false"),
    Rule("data.split.val_items", Integer(1), "validation targets per user", "data.split.val_items=1"),
    Rule("data.preprocessing.rating_threshold", Number(), "keep ratings >= this; null = keep all",
         "data.preprocessing.rating_threshold=null", True),
    Rule("data.preprocessing.user_core", Integer(0), "k-core on users; 0 = off", "data.preprocessing.user_core=0"),
    Rule("data.preprocessing.item_core", Integer(0), "k-core on items; 0 = off", "data.preprocessing.item_core=0"),
    Rule("data.preprocessing.drop_duplicates", Flag(), "keep each pair's first interaction",
         "data.preprocessing.drop_duplicates=true"),
    # --- task ----------------------------------------------------------------------------------------------------
    Rule("task.n_negatives", Integer(1), "sampled negatives per positive", "task.n_negatives=256", only=SAMPLED),
    Rule("task.n_negatives", Integer(0), "sampled negatives per interaction", "task.n_negatives=4",
         only=("PointwiseCTR",)),
    Rule("task.eval_negatives", Integer(0), "sampled negatives per held-out interaction", "task.eval_negatives=99"),
    Rule("task.t", Number(0, 1), "gBCE calibration: 0 = plain BCE, 1 = fully calibrated", "task.t=0.75"),
    Rule("task.label_smoothing", Number(0, 1, high_open=True), "cross-entropy label smoothing",
         "task.label_smoothing=0.0"),
    Rule("task.chunk_size", Integer(1), "items scored per chunk; null = all at once", "task.chunk_size=null", True),
    Rule("task.fused", Flag(), "fused output layer (loss + gradients per block of positions)", "task.fused=true"),
    Rule("task.compile_output", Flag(), "torch.compile the fused output layer", "task.compile_output=false"),
    Rule("task.mask_prob", Number(0, 1, True, True), "share of masked items", "task.mask_prob=0.2"),
    Rule("task.positions", OneOf(("all", "last")), "which positions are trained", "task.positions=all"),
    Rule("task.logq_correction", Flag(), "log-Q correction of sampled logits", "task.logq_correction=true"),
    Rule("task.share", OneOf(("batch", "position")), "negatives shared per batch or drawn per position",
         "task.share=batch"),
    Rule("task.positive_rating", Number(), "ratings >= this are clicks", "task.positive_rating=4.0"),
    Rule("task.freeze_blocks", Integer(0), "leading Transformer blocks kept as loaded", "task.freeze_blocks=0"),
    Rule("task.freeze_embeddings", Flag(), "keep the loaded embeddings", "task.freeze_embeddings=false"),
    Rule("task.layer_decay", Number(0, 1, low_open=True), "layer-wise lr decay; 1 = off", "task.layer_decay=1.0"),
    Rule("task.sampler.alpha", Number(0), "popularity exponent of the negative sampler", "task.sampler.alpha=0.75"),
    Rule("task.parts.*.weight", Number(0), "loss weight of a pretraining part; 0 or null = off",
         "task.parts.*.weight=1.0", True),
    Rule("task.parts.*.objective.mask_prob", Number(0, 1, True, True), "share of masked items",
         "task.parts.*.objective.mask_prob=0.2"),
    # --- optimizer and scheduler ---------------------------------------------------------------------------------
    Rule("optim.lr", Number(0, low_open=True), "the learning rate", "optim.lr=0.001"),
    Rule("optim.weight_decay", Number(0), "L2 / decoupled weight decay", "optim.weight_decay=0.0"),
    Rule("optim.betas", ListOf(Number(0, 1, high_open=True), length=2), "Adam's moment decay rates",
         "optim.betas=[0.9,0.98]"),
    Rule("scheduler.warmup_ratio", Number(0, 1, high_open=True), "share of steps spent warming up",
         "scheduler.warmup_ratio=0.05"),
    Rule("scheduler.min_lr_ratio", Number(0, 1), "final lr as a share of optim.lr", "scheduler.min_lr_ratio=0.0"),
    # --- metrics and re-ranking ----------------------------------------------------------------------------------
    Rule("metrics.ks", ListOf(Integer(1)), "cut-offs of every metric", "metrics.ks=[5,10,20]"),
    Rule("metrics.rerank_candidates", Integer(1), "top items a re-ranker reorders", "metrics.rerank_candidates=200"),
    Rule("metrics.tail_head_share", Number(0, 1), "share of items in the popular head",
         "metrics.tail_head_share=0.2"),
    Rule("metrics.calibration_alpha", Number(0, 1), "miscalibration mixing weight", "metrics.calibration_alpha=0.01"),
    Rule("metrics.eval_chunk_size", Integer(1), "items ranked per chunk; null = all at once",
         "metrics.eval_chunk_size=null", True),
    Rule("metrics.diversity", Flag(), "beyond-accuracy metrics of the final lists", "metrics.diversity=true"),
    Rule("metrics.diversity_during_fit", Flag(), "diversity metrics at every validation",
         "metrics.diversity_during_fit=false"),
    Rule("rerank.lambda_", Number(0, 1), "relevance/diversity trade-off", "rerank.lambda_=0.5"),
    Rule("rerank.alpha", Number(0, 1), "calibration mixing weight", "rerank.alpha=0.01"),
    Rule("rerank.temperature", Number(0, low_open=True), "DPP relevance temperature", "rerank.temperature=0.2"),
    Rule("rerank.window", Integer(1), "DPP sliding window; null = whole list", "rerank.window=null", True),
    Rule("rerank.identity_mix", Number(0, 1, high_open=True), "DPP identity share of the kernel",
         "rerank.identity_mix=0.0"),
    Rule("rerank.order", RERANK_ORDER, "final order of the chosen items", "rerank.order=greedy"),
    Rule("rerank.similarity", OneOf(("categories", "jaccard", "embeddings")), "item similarity",
         "rerank.similarity=categories"),
    Rule("rerank.relevance", OneOf(("minmax", "softmax")), "relevance normalisation", "rerank.relevance=minmax"),
    Rule("rerank.aggregate", OneOf(("max", "sum")), "MMR penalty over chosen items", "rerank.aggregate=max"),
    Rule("rerank.aspects", OneOf(("candidates", "history")), "xQuAD aspect distribution", "rerank.aspects=candidates"),
    # --- trainer (accelerator before devices: devices are checked against what it runs on) -----------------------
    Rule("trainer.accelerator", Accelerator(), "what the trainer runs on", "trainer=cpu"),
    Rule("trainer.devices", Devices(), "processes or GPUs the trainer runs on", "trainer.devices=1"),
    Rule("trainer.num_nodes", Integer(1), "machines", "trainer.num_nodes=1"),
    Rule("trainer.max_epochs", Integer(1, special=-1), "training epochs at most; -1 = no limit, as in Lightning",
         "trainer.max_epochs=200"),
    Rule("trainer.precision", OneOf(PRECISIONS), "Lightning precision; auto = bf16-mixed where the hardware has "
         "native bf16 (divrec.precision), else 32-true", "trainer.precision=auto"),
    Rule("trainer.accumulate_grad_batches", Integer(1), "batches per optimizer step",
         "trainer.accumulate_grad_batches=1"),
    Rule("trainer.check_val_every_n_epoch", Integer(1), "epochs between validations",
         "trainer.check_val_every_n_epoch=1", True),
    Rule("trainer.log_every_n_steps", Integer(1), "steps between logged losses", "trainer.log_every_n_steps=1"),
    Rule("trainer.gradient_clip_val", Number(0), "gradient norm clip; null = off", "trainer.gradient_clip_val=null",
         True),
    Rule("trainer.num_sanity_val_steps", Integer(-1), "sanity validation batches; -1 = all",
         "trainer.num_sanity_val_steps=0"),
    # --- feedback loop -------------------------------------------------------------------------------------------
    Rule("feedback.start_quantile", Number(0, 1, True, True), "share of interactions before t_0",
         "feedback.start_quantile=0.7"),
    Rule("feedback.n_windows", Integer(1), "later time windows", "feedback.n_windows=4"),
    Rule("feedback.min_history", Integer(0), "earlier interactions a user needs to be evaluated",
         "feedback.min_history=1"),
    Rule("feedback.initial_epochs", Integer(1), "epochs of the initial model", "feedback.initial_epochs=30"),
    Rule("feedback.strategies.incremental.epochs", Integer(1), "epochs per window",
         "feedback.strategies.incremental.epochs=3"),
    Rule("feedback.strategies.incremental.context", Integer(0), "older items kept as input context",
         "feedback.strategies.incremental.context=50"),
    Rule("feedback.strategies.full_retrain.epochs", Integer(1), "epochs per retrain; null = initial_epochs",
         "feedback.strategies.full_retrain.epochs=null", True),
)


def show(value: Any) -> str:
    """A value the way one types it in an override: null, true, abc, 0.001, [5,10]."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return value if value.strip() else repr(value)
    if isinstance(value, list):
        return "[" + ",".join(show(v) for v in value) + "]"
    return str(value)


def _get(parent: DictConfig, name: str, key: str, example: str) -> Any:
    """``parent[name]`` with interpolations resolved; an unreadable value is the user's to fix."""
    try:
        return parent[name]
    except OmegaConfBaseException as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(f"{key}: its value cannot be read ({reason}); give a plain value, e.g. {example}") from None


def _plain(value: Any, key: str, example: str) -> Any:
    """A value as plain Python (lists and dicts instead of OmegaConf containers)."""
    if not isinstance(value, DictConfig | ListConfig):
        return value
    try:
        return OmegaConf.to_container(value, resolve=True)
    except OmegaConfBaseException as err:
        raise ConfigError(f"{key}: its value cannot be read ({str(err).splitlines()[0]}); e.g. {example}") from None


def _entries(node: Any, parts: list[str], prefix: str, example: str) -> Iterator[tuple[str, DictConfig, str]]:
    """(full key, parent node, last key) of every concrete key matching ``parts`` (``*``: each child) in ``node``."""
    if not isinstance(node, DictConfig):
        return
    head, rest = parts[0], parts[1:]
    present = head in node or OmegaConf.is_missing(node, head)  # `in` is False for a ??? value
    names = [str(k) for k in node] if head == "*" else [head] if present else []
    for name in names:
        key = f"{prefix}{name}"
        if not rest:
            yield key, node, name
        elif not OmegaConf.is_missing(node, name):
            yield from _entries(_get(node, name, key, example), rest, f"{key}.", example)


def _applies(rule: Rule, parent: DictConfig) -> bool:
    if not rule.only:
        return True
    target = parent.get("_target_") if "_target_" in parent else None
    return isinstance(target, str) and target.rsplit(".", 1)[-1] in rule.only


def check_rule(rule: Rule, ctx: Context) -> None:
    """Raise ``ConfigError`` for the first value of ``rule.key`` in ``ctx.cfg`` that its kind refuses."""
    for key, parent, name in _entries(ctx.cfg, rule.key.split("."), "", rule.example):
        if not _applies(rule, parent):
            continue
        example = key + rule.example[len(rule.key):] if rule.example.startswith(f"{rule.key}=") else rule.example
        missing = OmegaConf.is_missing(parent, name)  # ??? left unset
        value = "???" if missing else _plain(_get(parent, name, key, example), key, example)
        if value is None and rule.nullable:
            continue
        problem = "no value given" if missing else "null is not allowed" if value is None else None
        problem = problem or rule.kind.problem(value, ctx)
        if problem is not None:
            allowed = rule.kind.allowed(ctx) + (" or null" if rule.nullable else "")
            raise ConfigError(f"{key}={show(value)}: {problem}; allowed: {allowed} ({rule.why}); e.g. {example}")


def validate(cfg: DictConfig, machine: Machine | None = None) -> None:
    """Check every ``RULES`` key the config has (``machine``: the facts trainer settings must fit; default this
    machine's); raise ``ConfigError`` with one line for the first bad value."""
    ctx = Context(cfg, machine if machine is not None else Machine.current())
    for rule in RULES:
        check_rule(rule, ctx)
