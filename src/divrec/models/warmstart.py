"""Backbone checkpoints for warm starts: save (weights + raw item ids + config), load into a new backbone.

A backbone file is a plain dict of tensors, strings and numbers, readable with ``torch.load(weights_only=True)``.
Loading matches items by RAW id, so a backbone pretrained on one dataset (or one preprocessing of it) warm-starts a
model over another item vocabulary: rows of shared items are copied, the others keep their fresh initialisation.
This is a warm start of the weights only; resuming a run's full trainer state is ``ckpt_path=``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from divrec.checkpointing import load_failure
from divrec.errors import UserError
from divrec.models.contract import SequenceEncoder
from divrec.models.encoder import LEGACY_PREFIXES
from divrec.models.tower import ITEM_TABLE

log = logging.getLogger(__name__)

FORMAT = "divrec-backbone/1"
# side features (item attributes, user features): their ids/codes are dataset-specific, never transferred
SIDE_PREFIXES = ("tower.item_side.", "user_side.")
LEGACY_MODEL = "TransformerBackbone"  # backbone files written before they named their model class
SHAPE_FIELDS = ("hidden_size", "n_layers", "ffn_size", "max_len", "norm_first")  # settings that change tensors


class WarmStartError(UserError):
    """A backbone checkpoint that cannot initialise this model (unreadable, or another model shape)."""


@dataclasses.dataclass(frozen=True)
class VocabularyMatch:
    """How checkpoint item rows map onto the dataset's item ids (both count real items only, not padding/mask).

    dst: (M,) dataset item ids that get a checkpoint row; src: (M,) the checkpoint item ids they copy.
    """

    dst: Tensor
    src: Tensor
    n_fresh: int  # dataset items absent from the checkpoint: they keep their fresh initialisation
    n_unused: int  # checkpoint items absent from the dataset
    fresh_side: tuple[str, ...] = ()  # this model's side-feature modules, never loaded (e.g. "user_side")

    @property
    def n_matched(self) -> int:
        return int(self.dst.numel())

    def summary(self) -> str:
        fresh, unused = self.n_fresh, self.n_unused
        text = f"{self.n_matched} items matched by raw id, {fresh} new (fresh embeddings), {unused} unused"
        return text + (f"; side features kept fresh: {', '.join(self.fresh_side)}" if self.fresh_side else "")


def match_items(checkpoint_ids: Sequence[str], dataset_ids: Sequence[str]) -> VocabularyMatch:
    """Match raw item ids; index 0 of both sequences is padding and never matched."""
    row_of = {str(raw): i for i, raw in enumerate(checkpoint_ids) if i > 0}
    pairs = [(j, row_of[str(raw)]) for j, raw in enumerate(dataset_ids) if j > 0 and str(raw) in row_of]
    dst = torch.tensor([j for j, _ in pairs], dtype=torch.long)
    src = torch.tensor([i for _, i in pairs], dtype=torch.long)
    n_data, n_ckpt = len(dataset_ids) - 1, len(checkpoint_ids) - 1
    return VocabularyMatch(dst=dst, src=src, n_fresh=n_data - len(pairs), n_unused=n_ckpt - len(pairs))


def save_backbone(path: str | Path, backbone: SequenceEncoder, item_ids: Sequence[str]) -> Path:
    """Write ``backbone``'s weights, config and the raw item ids (index = internal id, ``item_ids[0]`` = padding)
    atomically to ``path``."""
    if len(item_ids) != backbone.n_items + 1:
        raise ValueError(f"{len(item_ids)} item ids for a backbone over {backbone.n_items} items (+ padding)")
    payload = {
        "format": FORMAT,
        "model": type(backbone).__name__,
        "config": dataclasses.asdict(backbone.cfg),  # type: ignore[attr-defined]
        "n_items": backbone.n_items,
        "item_ids": [str(raw) for raw in item_ids],
        "state_dict": {k: v.detach().cpu().clone() for k, v in backbone.state_dict().items()},
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def read_backbone(path: str | Path) -> dict[str, Any]:
    """A backbone file's payload, read with safe deserialisation; a ``WarmStartError`` if it is not one."""
    hint = "pass init_from=<run folder>/backbone.pt (written by every divrec train run)"
    if not Path(path).is_file():
        raise WarmStartError(f"backbone checkpoint not found: {path}; {hint}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, not a torch file, unsafe content
        reason = f"{err.__class__.__name__}: {load_failure(err)}"  # never torch's "weights_only=False" advice
        raise WarmStartError(f"cannot read backbone checkpoint {path} ({reason}); {hint}") from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise WarmStartError(f"{path} is not a divrec backbone file (format {FORMAT}); {hint}")
    state = payload["state_dict"]
    for key in [k for k in state if k.startswith(LEGACY_PREFIXES)]:  # written before the item tower
        state["tower." + key] = state.pop(key)
    return payload


def _transferable(state: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k: v for k, v in state.items() if not k.startswith(SIDE_PREFIXES)}


def side_modules(backbone: SequenceEncoder) -> tuple[str, ...]:
    """Names of ``backbone``'s side-feature modules (left fresh by a warm start)."""
    names = {"tower.item_side": backbone.tower.item_side, "user_side": getattr(backbone, "user_side", None)}
    return tuple(name.split(".")[-1] for name, module in names.items() if module is not None)


def _settings(cfg: dict[str, Any]) -> str:
    return ", ".join(f"{k}={cfg[k]}" for k in SHAPE_FIELDS if k in cfg)


def check_compatible(backbone: SequenceEncoder, payload: dict[str, Any], path: str | Path) -> None:
    """Raise ``WarmStartError`` naming both shapes when the checkpoint's tensors do not fit ``backbone``."""
    theirs_model, ours_model = payload.get("model", LEGACY_MODEL), type(backbone).__name__
    if theirs_model != ours_model:
        raise WarmStartError(
            f"backbone checkpoint {path} holds a {theirs_model}, this run builds a {ours_model}; choose the "
            f"checkpoint's model= (or pretrain a {ours_model})"
        )
    ours, theirs = _transferable(backbone.state_dict()), _transferable(payload["state_dict"])
    mine = dataclasses.asdict(backbone.cfg)  # type: ignore[attr-defined]
    settings = f"checkpoint model: {_settings(payload['config'])}; this run: {_settings(mine)}"
    fix = "set model.* to the checkpoint's values (or pretrain a backbone of this shape)"
    missing, unexpected = sorted(set(ours) - set(theirs)), sorted(set(theirs) - set(ours))
    if missing or unexpected:
        raise WarmStartError(
            f"backbone checkpoint {path} does not fit this model: tensors missing from it {missing[:3]}, "
            f"extra in it {unexpected[:3]} ({settings}); {fix}"
        )
    for key, tensor in ours.items():
        other = theirs[key]
        fits = other.shape[1:] == tensor.shape[1:] if key == ITEM_TABLE else other.shape == tensor.shape
        if not fits:
            raise WarmStartError(
                f"backbone checkpoint {path} does not fit this model: {key} has shape {tuple(other.shape)} in the "
                f"checkpoint but {tuple(tensor.shape)} in this model ({settings}); {fix}"
            )


@torch.no_grad()
def warm_start(backbone: SequenceEncoder, path: str | Path, item_ids: Sequence[str]) -> VocabularyMatch:
    """Load a backbone file into ``backbone`` (whose items have raw ids ``item_ids``): every tensor is copied
    except the item table, of which only the rows of items present in both vocabularies (and the [MASK] row) are.
    Returns the vocabulary match; the counts are also logged."""
    payload = read_backbone(path)
    check_compatible(backbone, payload, path)
    theirs = payload["state_dict"]
    for key, tensor in _transferable(backbone.state_dict()).items():  # tensors share storage with the parameters
        if key != ITEM_TABLE:
            tensor.copy_(theirs[key])
    match = dataclasses.replace(match_items(payload["item_ids"], item_ids), fresh_side=side_modules(backbone))
    table, source = backbone.tower.item_emb.weight, theirs[ITEM_TABLE]
    table[match.dst] = source[match.src].to(table.dtype)
    table[backbone.tower.mask_row] = source[int(payload["n_items"]) + 1]
    mine = dataclasses.asdict(backbone.cfg)  # type: ignore[attr-defined]
    different = {k: (v, mine[k]) for k, v in payload["config"].items() if k in mine and v != mine[k]}
    log.info("warm start from %s: %s; settings differing from the checkpoint: %s", path, match.summary(), different)
    return match
