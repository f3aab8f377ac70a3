"""``Ensemble``: several trained runs ranked as one model (``divrec train experiment=ensemble``).

The members are checkpoints of finished ``divrec train`` runs on the same data (``<run>/checkpoints/best.ckpt``:
each one's epoch already chosen on validation). Each member ``m`` is rebuilt from its checkpoint's own config
(model and objective, as ``divrec eval`` does) and scores a history with its own query; the ensemble ranks by the
weighted mean of the members' log-probabilities over the catalogue, i.e. a weighted geometric mean of their softmax
distributions (a product of experts; deep ensembles, Lakshminarayanan et al., NeurIPS 2017, average the
probabilities instead, which favours the most confident member):

    score(u, j) = sum_m w_m * log_softmax_j(s_m(u, ·)),   sum_m w_m = 1   (default w_m = 1 / M)

A per-row constant does not change a row's ranking, so the padding column 0 may stay inside each softmax. Nothing is
trained or selected here (``trainable = False``, ``task=fitted``): the ensemble is validated and tested once by the
same evaluator, in fp32, and its checkpoint holds the members' weights.

``normalize`` says how a member's scores are put on one scale before they are averaged:

- ``log_softmax`` (default): for learned members, whose scores are logits (softmax, sampled-softmax, BCE or gBCE
  objectives); closed-form baselines are refused, their scores are not on a logit scale;
- ``zscore``: every member's row standardised over the items 1..n_items, z_j = (s_j - mean) / std (CombSUM of
  z-scores, Montague & Aslam, CIKM 2001), so closed-form baselines (EASE, item-kNN, popularity) may join: the same
  parameter-free transform for every member, nothing fitted on validation.

``weights``: one value per member (normalised to sum 1), null for equal weights, or ``val``: the weight vector of
the simplex grid with entries in multiples of ``1 / weight_steps`` that maximises validation NDCG@10, searched
exactly in one pass over the validation rows by ``bind(data)`` (``ensemble_weights.py``); test is never read, and
the reported validation metric is then optimistic (the weights were selected on it), as a learned run's epoch is.
The weights are not stored: ``divrec eval`` / ``recommend`` of the checkpoint repeat the (deterministic) search.

The members' own ``data`` configs must agree (checked), and the ensemble run must use that data (its catalogue size
is checked against every member's).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import Tensor, nn

from divrec.checkpointing import load_weights, read_checkpoint, stored_config
from divrec.data.types import ProcessedData
from divrec.models.closed_form import ClosedFormModel
from divrec.models.contract import ModelConfigError, ModelSpec, check_n_items
from divrec.models.ensemble_weights import MAX_CANDIDATES, n_candidates, select_weights

DATA_KEYS = ("source", "preprocessing", "split")  # what makes two runs' data the same data


def log_softmax(scores: Tensor) -> Tensor:
    """(N, V) logits → (N, V) log-probabilities (the padding column inside the softmax: a per-row constant)."""
    return torch.log_softmax(scores, dim=1)


def zscore(scores: Tensor) -> Tensor:
    """(N, V) → (N, V): each row minus its mean, over its standard deviation, both over the items (columns 1..V-1,
    not the padding column 0); a constant row (e.g. an empty history under EASE) becomes 0."""
    items = scores[:, 1:]  # (N, V - 1)
    mean = items.mean(dim=1, keepdim=True)  # (N, 1)
    std = items.std(dim=1, correction=0, keepdim=True)  # (N, 1)
    return (scores - mean) / std.clamp_min(1e-12)


NORMALIZERS = {"log_softmax": log_softmax, "zscore": zscore}  # model.normalize: each member's scores on one scale


def fail(msg: str) -> None:
    raise ModelConfigError(f"invalid model config: {msg}")


@dataclass(frozen=True)
class EnsembleConfig:
    members: Sequence[str] = ()  # checkpoints (<run>/checkpoints/best.ckpt) or run folders of finished runs
    weights: Sequence[float] | str | None = None  # one per member, > 0 (normalised); null = equal; val = searched
    weight_steps: int = 10  # weights=val: the grid's entries are multiples of 1 / weight_steps
    data: Mapping[str, Any] | None = None  # this run's data config (the YAML's ${data}): members must share it
    normalize: str = "log_softmax"  # log_softmax (learned members) | zscore (any member, closed-form ones too)

    def __post_init__(self) -> None:
        if not self.members:
            fail("model.members is empty: list the runs to combine, e.g. model.members=[<run1>,<run2>] "
                 "(run folders or their checkpoints/best.ckpt)")
        for path in self.members:
            if not checkpoint_path(path).is_file():
                fail(f"model.members: {path} is neither a checkpoint nor a run folder with checkpoints/best.ckpt; "
                     "pass finished divrec train runs")
        if isinstance(self.weights, str):
            self._check_search()
        elif self.weights is not None:
            if len(self.weights) != len(self.members):
                fail(f"model.weights has {len(self.weights)} values for {len(self.members)} members; give one per "
                     "member or null (equal weights)")
            if not all(float(w) > 0 for w in self.weights):
                fail(f"model.weights={list(self.weights)} must all be > 0")
        if self.normalize not in NORMALIZERS:
            fail(f"model.normalize={self.normalize!r} is not one of {list(NORMALIZERS)}")
        check_members([str(checkpoint_path(m)) for m in self.members], self.data, self.normalize)

    def _check_search(self) -> None:
        if self.weights != "val":
            fail(f"model.weights={self.weights!r}: give one number per member, null (equal weights) or val "
                 "(chosen on validation NDCG@10)")
        steps = self.weight_steps
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            fail(f"model.weight_steps={steps!r} must be an integer >= 1 (weights in multiples of 1/weight_steps)")
        count = n_candidates(len(self.members), steps)
        if count > MAX_CANDIDATES:
            fail(f"model.weights=val with {len(self.members)} members and model.weight_steps={steps} searches "
                 f"{count} weight vectors (at most {MAX_CANDIDATES}); lower model.weight_steps or list fewer members")


def data_identity(data: Any) -> dict[str, Any]:
    plain = OmegaConf.to_container(data, resolve=True) if OmegaConf.is_config(data) else dict(data or {})
    return {k: plain.get(k) for k in DATA_KEYS}


def check_members(paths: list[str], data: Any, normalize: str = "log_softmax") -> None:
    """From the members' stored configs alone (no weights, no data loaded): each is a non-ensemble model (a learned
    one unless ``normalize="zscore"``), trained on this run's data (``data.source``, ``preprocessing``, ``split``
    equal; e.g. the same ``seed`` where the source is generated)."""
    from divrec.models.contract import model_class

    ours = data_identity(data) if data is not None else None
    for path in paths:
        stored = stored_config(read_checkpoint(path, mmap=True), path)
        cls = model_class(OmegaConf.create(stored["model"]))
        if cls is Ensemble:
            fail(f"model.members: {path} is itself an ensemble; list its members instead")
        if not getattr(cls, "trainable", True) and normalize == "log_softmax":
            fail(f"model.members: {path} is a closed-form baseline ({cls.__name__}), whose scores are not logits; "
                 "combine learned models, or standardise every member's scores with model.normalize=zscore")
        theirs = data_identity(stored.get("data"))
        if ours is None:
            ours = theirs
        elif theirs != ours:
            fail(f"model.members: {path} was trained on other data than this run's "
                 f"({_first_difference(ours, theirs)}); pass the members' data= (and seed= for generated data)")


def checkpoint_path(member: str) -> Path:
    path = Path(str(member))
    return path / "checkpoints" / "best.ckpt" if path.is_dir() else path


class Ensemble(nn.Module):
    Config = EnsembleConfig
    trainable = False
    tower = None  # no item table of its own (``item_table`` concatenates the members')
    mask_token = None

    def __init__(self, n_items: int, **config: Any) -> None:
        super().__init__()
        self.cfg = EnsembleConfig(**config)
        check_n_items(n_items)
        self.n_items = n_items
        given = self.cfg.weights
        equal = given is None or isinstance(given, str)  # a search (weights=val) starts from equal weights
        weights = torch.tensor([1.0] * len(self.cfg.members) if equal else [float(w) for w in given])
        self.register_buffer("member_weights", weights / weights.sum(), persistent=False)  # (M,)
        self.members = nn.ModuleList()  # built by bind(data), from the checkpoints
        self.objectives = nn.ModuleList()  # each member's own objective (its query: e.g. cloze appends [MASK])
        self.fit_seconds = 0.0
        self.fit_summary: dict[str, float] = {}  # metrics.json fitted/<key>: the weights a search chose, its val

    # --- what the model serves ---------------------------------------------------------------------------------
    @classmethod
    def describe(cls, cfg: EnsembleConfig) -> ModelSpec:
        return ModelSpec(cls.__name__, causal=True, mask_token=False, attention_maps=False, trainable=False,
                         dot_scores=False)  # a mean of log-softmaxes: no chunked ranking

    def spec(self) -> ModelSpec:
        return self.describe(self.cfg)

    @property
    def causal(self) -> bool:
        return all(m.causal for m in self.members)

    @property
    def widths(self) -> list[int]:
        return [int(m.hidden_size) for m in self.members]

    @property
    def hidden_size(self) -> int:
        return sum(self.widths)

    @property
    def max_len(self) -> int:
        return max((int(m.max_len) for m in self.members), default=1)

    # --- building the members -----------------------------------------------------------------------------------
    def bind(self, data: ProcessedData) -> None:
        """Rebuild every member from its checkpoint for ``data`` and load its weights (a later call rebuilds them)."""
        self.members, self.objectives = nn.ModuleList(), nn.ModuleList()
        for member in self.cfg.members:
            path = str(checkpoint_path(member))
            checkpoint = read_checkpoint(path)
            backbone, objective = self._rebuild(stored_config(checkpoint, path), checkpoint, path, data)
            self.members.append(backbone)
            self.objectives.append(objective)
        if self.cfg.weights == "val":
            start = time.perf_counter()
            self.member_weights, val_ndcg = select_weights(
                self.member_scores, data.val, self.max_len, len(self.members), self.cfg.weight_steps, data.n_items)
            self.fit_seconds = time.perf_counter() - start
            self.fit_summary = {f"weight_{i}": round(float(w), 6) for i, w in enumerate(self.member_weights, 1)}
            self.fit_summary["val_search_ndcg@10"] = val_ndcg

    def _rebuild(
        self, stored: dict[str, Any], checkpoint: dict[str, Any], path: str, data: ProcessedData
    ) -> tuple[nn.Module, nn.Module]:
        backbone = instantiate(stored["model"], n_items=data.n_items)
        objective = instantiate(stored["task"])
        if not isinstance(backbone, ClosedFormModel):  # a closed form's bind is its fit, which the checkpoint holds
            backbone.bind(data)  # (refitting EASE, an n x n solve, only to overwrite it below)
        objective.bind(backbone, data)
        holder = nn.ModuleDict({"backbone": backbone, "task": objective})  # the run module's key prefixes
        state = {k: v for k, v in checkpoint["state_dict"].items() if k.split(".", 1)[0] in holder}
        load_weights(holder, {"state_dict": state}, path, data.n_items)  # a misfit names both catalog sizes
        return backbone.eval().requires_grad_(False), objective.eval().requires_grad_(False)

    # --- the SequenceEncoder contract ------------------------------------------------------------------------
    def encode_last(self, items: Tensor, users: Tensor | None = None) -> Tensor:
        """(B, L) → (B, sum D_m): each member's own query of the history (its newest max_len items), side by side."""
        queries = [
            task.query(member, items[:, -int(member.max_len):], users)  # (B, D_m)
            for member, task in zip(self.members, self.objectives, strict=True)
        ]
        return torch.cat([q.float() for q in queries], dim=1)

    def forward(self, items: Tensor, users: Tensor | None = None) -> Tensor:
        """(B, L) → (B, L, D): position t holds the query of the prefix ending at t."""
        return torch.stack([self.encode_last(items[:, : t + 1], users) for t in range(items.shape[1])], dim=1)

    def score(self, hidden: Tensor) -> Tensor:
        """(N, sum D_m) → (N, V): the weighted mean of the members' normalised scores over item ids 0..n_items
        (a member of weight 0, which a validation search may give, is still scored: no branch on a weight's value,
        so the graph exports)."""
        parts = hidden.split(self.widths, dim=1)
        total = torch.zeros(hidden.shape[0], self.n_items + 1, device=hidden.device)
        normalized = NORMALIZERS[self.cfg.normalize]
        for weight, member, part in zip(self.member_weights.tolist(), self.members, parts, strict=True):
            total.add_(normalized(member.score(part).float()), alpha=weight)  # (N, V); weight 0 adds 0
        return total

    @torch.no_grad()
    def member_scores(self, history: Tensor, users: Tensor | None = None) -> Tensor:
        """(B, L) histories → (B, M, V): every member's normalised scores, side by side (the weight search's input)."""
        parts = self.encode_last(history, users).split(self.widths, dim=1)
        normalized = NORMALIZERS[self.cfg.normalize]
        return torch.stack([normalized(m.score(p).float()) for m, p in zip(self.members, parts, strict=True)], dim=1)

    def item_logits(self, hidden: Tensor) -> Tensor:
        return self.score(hidden)[:, 1:]

    def item_table(self) -> Tensor:
        """(V, sum D_m): the members' item tables side by side (item-embedding diversity and re-rankers)."""
        return torch.cat([m.item_table().float() for m in self.members], dim=1)

    def item_vectors(self) -> Tensor:
        return torch.cat([m.item_vectors().float() for m in self.members], dim=1)

    def embed_items(self, items: Tensor) -> Tensor:
        return self.item_table()[items]

    def layer_groups(self) -> list[list[nn.Module]]:
        return [[]]


def _first_difference(ours: dict[str, Any], theirs: dict[str, Any], prefix: str = "data") -> str:
    for key in sorted(set(ours) | set(theirs)):
        a, b = ours.get(key), theirs.get(key)
        if a != b:
            if isinstance(a, dict) and isinstance(b, dict):
                return _first_difference(a, b, f"{prefix}.{key}")
            return f"{prefix}.{key}={a} here, {b} in the member"
    return "data differs"
