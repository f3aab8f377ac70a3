"""``divrec export``: a checkpoint → one ONNX (or TorchScript) file that ranks a batch of histories, plus a JSON
sidecar that tells a server how to feed it and how to map its ids back to raw item ids.

The graph (``TopKScorer``):

    inputs   items    (B, S) int64  left-padded internal item ids, 0 = padding; S is free (any length >= 1)
             lengths  (B,)   int64  how many of the newest columns of each row are real items
    outputs  ids      (B, k) int64  the k best items, best first (ties: lower id first); 0 = an empty slot
             scores   (B, k) float32 their scores (-inf in an empty slot)

Inside it: columns left of the newest ``lengths`` ones, and ids outside 1..n_items, are read as padding; the model
reads the newest ``max_len`` items (left-padded to exactly ``max_len``, the shape it was traced at); every item of
the row (all S columns, so a history longer than ``max_len`` is excluded whole, as ``divrec recommend`` does) and
the padding id 0 get score -inf before the top-k; k is fixed at export time, B and S are dynamic. Every divrec
model reads left-padded ids with 0 = padding, so for a well-formed row ``lengths`` is redundant (it equals the
count of non-zero ids); the graph still takes it and uses it as said, so that a server may reuse a buffer whose
padding columns hold stale ids.

Some models run an export-only but equivalent forward pass (``graph_backbone``, on a copy of the backbone): dense
scores of the closed-form baselines (sparse matmul does not trace), GRU4Rec unpacked on right-shifted rows
(``pack_padded_sequence`` does not trace), BSARec's low-pass filter as a real (N, N) matrix (a sliced complex
spectrum has no ONNX translation), LRURec's complex recurrence in (re, im) pairs (complex ``exp`` has none).
Parity is a property of every export: after writing, the file is run (onnxruntime / ``torch.jit.load``) on dataset
users at batch 1 and at ``parity_users``, and compared with the eager module's ``divrec recommend`` lists; a file
that differs is deleted and the export refused (``ExportError``).
"""

from __future__ import annotations

import copy
import json
import logging
import shutil
import types
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import Tensor, nn

from divrec import names
from divrec.data.types import ProcessedData
from divrec.errors import UserError
from divrec.lit.module import SeqRecModule
from divrec.metrics.ranking import mask_seen, top_k_scored
from divrec.models.bsarec import FrequencyLayer
from divrec.models.closed_form import ClosedFormModel
from divrec.models.gru4rec import GRU4Rec, shift_rows
from divrec.models.lrurec import LinearRecurrence

log = logging.getLogger(__name__)

LENGTHS, IDS, SCORES = "lengths", "ids", "scores"
INPUTS, OUTPUTS = (names.ITEMS, LENGTHS), (IDS, SCORES)
SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt"}
SIDECAR_SUFFIX = ".json"
POPULAR_TOP = 1000  # training-popular items in the sidecar: a server's fallback for a history with no known item
TOLERANCE = 1e-4  # |exported - eager| score gap allowed, plus 1e-5 of the score's size


class ExportError(UserError):
    """A checkpoint that cannot be exported as asked, or an exported file that does not match the eager model."""


# --- the graph ----------------------------------------------------------------------------------------------------
class TopKScorer(nn.Module):
    """(B, S) left-padded ids and (B,) lengths → (B, k) ids and scores, the row's items excluded (module docstring)."""

    def __init__(
        self, backbone: nn.Module, task: nn.Module, k: int, n_items: int, max_len: int, exact_ties: bool = False
    ) -> None:
        """``exact_ties``: break ties toward the lower id in the graph itself (``lowest_id_top_k``), for runtimes
        whose top-k does not promise it (TorchScript's ``torch.topk``); ONNX's TopK does by definition."""
        super().__init__()
        self.backbone, self.task = backbone, task  # not the LightningModule: tracing must not touch its trainer
        self.k, self.n_items, self.max_len, self.exact_ties = k, n_items, max_len, exact_ties

    def forward(self, items: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:  # argument names = INPUTS
        width = items.shape[1]
        cols = torch.arange(width, device=items.device)  # (S,)
        real = (cols[None, :] >= width - lengths[:, None]) & (items > 0) & (items <= self.n_items)  # (B, S)
        items = items * real  # stale columns and unknown ids → padding
        window = F.pad(items, (self.max_len, 0))[:, -self.max_len :]  # (B, max_len) the newest items, left-padded
        scores = self.backbone.score(self.task.query(self.backbone, window, None))  # (B, V)
        scores = scores.scatter(1, F.pad(items, (1, 0)), float("-inf"))  # the whole row and the padding id 0
        best, ids = lowest_id_top_k(scores, self.k) if self.exact_ties else scores.topk(self.k, dim=1)  # (B, k)
        return torch.where(torch.isfinite(best), ids, torch.zeros_like(ids)), best


def lowest_id_top_k(scores: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """(B, V) → the k best (scores, ids), ordered by score descending and then id ascending, without data-dependent
    control flow (what ``divrec.metrics.ranking.top_k_scored`` gives, in a form a tracer records)."""
    boundary = scores.topk(k, dim=1).values[:, -1:]  # (B, 1) the k-th best score, whichever tied item holds it
    above, tied = scores > boundary, scores == boundary  # (B, V)
    room = k - above.sum(dim=1, keepdim=True)  # (B, 1) slots left for the tied items
    chosen = above | (tied & (tied.cumsum(dim=1) <= room))  # (B, V) exactly k per row: the lowest tied ids
    width = scores.shape[1]
    key = torch.where(chosen, width - torch.arange(width, device=scores.device), 0)  # (B, V) larger = lower id
    top = key.topk(k, dim=1).values  # (B, k) distinct keys: the chosen ids in ascending order
    ids = torch.where(top > 0, width - top, 0)
    vals = scores.gather(1, ids)
    order = vals.argsort(dim=1, descending=True, stable=True)  # ties keep the ascending ids
    return vals.gather(1, order), ids.gather(1, order)


def graph_backbone(backbone: nn.Module) -> nn.Module:
    """A copy of ``backbone`` whose forward pass traces (``torch.export`` / ``torch.jit.trace``) and computes the
    same function: the export-only substitutes listed in the module docstring, bound to the copy's instances."""
    graph = copy.deepcopy(backbone).eval()
    for name, layer in graph.named_modules():  # the backbone itself and any models inside it (an ensemble's members)
        if isinstance(layer, ClosedFormModel):
            layer.score = types.MethodType(_dense_score, layer)  # type: ignore[method-assign]
        if isinstance(layer, GRU4Rec):
            layer.forward = types.MethodType(_gru_forward, layer)  # type: ignore[method-assign]
        if isinstance(layer, FrequencyLayer):
            window = _owner_max_len(graph, name)
            layer.register_buffer("low_pass_matrix", _low_pass_matrix(window, layer.bins), persistent=False)
            layer.rescale = types.MethodType(_matrix_rescale, layer)  # type: ignore[method-assign]
        if isinstance(layer, LinearRecurrence):
            layer.forward = types.MethodType(_real_lru_forward, layer)  # type: ignore[method-assign]
    return graph


def _owner_max_len(graph: nn.Module, name: str) -> int:
    """The ``max_len`` of the innermost model (a module with ``spec`` and ``max_len``) that holds submodule ``name``."""
    parts = name.split(".")
    for depth in range(len(parts) - 1, -1, -1):
        owner = graph.get_submodule(".".join(parts[:depth]))
        if hasattr(owner, "spec") and hasattr(owner, "max_len"):
            return int(owner.max_len)
    return int(graph.max_len)


def _dense_score(self: ClosedFormModel, hidden: Tensor) -> Tensor:
    """(N, D) queries → (N, V) = hidden @ weights, dense (the eager model multiplies a sparse query)."""
    return hidden @ self.weights


def _gru_forward(self: GRU4Rec, items: Tensor, users: Tensor | None = None) -> Tensor:
    """GRU4Rec.forward without packing: the GRU runs over the right-shifted rows, whose real items come first, so
    each real position's state is the packed one (what follows a row's items is never read back)."""
    self.check_length(items)
    L = items.shape[1]
    pad = ((items != 0).cumsum(dim=1) == 0).sum(dim=1)  # (B,) leading padding of each row
    h = shift_rows(self.emb_drop(self.add_users(self.embed_items(items), items, users)), pad)  # (B, L, D)
    for gru in self.blocks:
        h, _ = gru(h)  # (B, L, G)
    real = torch.arange(L, device=items.device) >= pad[:, None]  # (B, L)
    return self.proj(shift_rows(h, -pad)) * real[..., None].to(h.dtype)  # (B, L, D)


def _low_pass_matrix(n: int, bins: int) -> Tensor:
    """(N, N) real P with P @ x = irfft(rfft(x, ortho)[:bins], n, ortho) along the sequence axis (float64 math)."""
    spectrum = torch.fft.rfft(torch.eye(n, dtype=torch.float64), dim=0, norm="ortho")[:bins]  # (bins, N)
    return torch.fft.irfft(spectrum, n=n, dim=0, norm="ortho").float()  # (N, N): column j = low-pass of e_j


def _matrix_rescale(self: FrequencyLayer, x: Tensor) -> Tensor:
    """FrequencyLayer.rescale with the low-pass filter as a matrix product over the (B, N, D) sequence axis."""
    low = torch.einsum("nm,bmd->bnd", self.low_pass_matrix, x.float()).to(x.dtype)  # (B, N, D)
    return low + self.sqrt_beta**2 * (x - low)


def _complex_mul(a: Tensor, b: Tensor) -> Tensor:
    """(…, 2) × (…, 2) (re, im) pairs → their complex product (…, 2)."""
    re = a[..., 0] * b[..., 0] - a[..., 1] * b[..., 1]
    im = a[..., 0] * b[..., 1] + a[..., 1] * b[..., 0]
    return torch.stack([re, im], dim=-1)


def _real_lru_forward(self: LinearRecurrence, x: Tensor, real: Tensor) -> Tensor:
    """LinearRecurrence.forward in real arithmetic: the same Hillis-Steele scan (``linear_scan``) on (re, im)
    pairs, which is also the interleaved layout ``out_proj`` reads."""
    B, L, _ = x.shape
    dtype = self.scan_dtype()
    bu = self.in_proj(x).to(dtype) * real[..., None]  # (B, L, 2N)
    u = bu.view(B, L, -1, 2) * self.gamma_log.to(dtype).exp()[:, None]  # (B, L, N, 2)
    nu, theta = self.nu_log.to(dtype).exp(), self.theta_log.to(dtype).exp()  # (N,)
    power = torch.exp(-nu)[:, None] * torch.stack([theta.cos(), theta.sin()], dim=-1)  # (N, 2) λ
    h, k = u, 1
    while k < L:
        h = torch.cat([h[:, :k], h[:, k:] + _complex_mul(power, h[:, :-k])], dim=1)  # (B, L, N, 2)
        power, k = _complex_mul(power, power), 2 * k
    return self.norm(x + self.drop(self.out_proj(h.reshape(B, L, -1))))  # (B, L, D)


# --- writing and running the file ---------------------------------------------------------------------------------
def example_inputs(max_len: int) -> tuple[Tensor, Tensor]:
    """What the graph is traced with: 3 rows (a dynamic batch must not be traced at 1) of max_len + 2 columns."""
    items = torch.arange(1, 3 * (max_len + 2) + 1).view(3, max_len + 2) % 7 + 1  # small ids every catalog has
    return items.long(), torch.tensor([max_len + 2, 5, 1])


def write_onnx(scorer: TopKScorer, path: Path) -> None:
    """torch.export (dynamo) → ONNX, batch and history length dynamic, weights inside the file (separate only for
    a model over 2 GB, which ONNX's protobuf cannot hold)."""
    batch, length = torch.export.Dim("batch", min=1), torch.export.Dim("length", min=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            scorer, example_inputs(scorer.max_len), input_names=list(INPUTS), output_names=list(OUTPUTS),
            dynamic_shapes={names.ITEMS: {0: batch, 1: length}, LENGTHS: {0: batch}}, dynamo=True, verbose=False,
        )
    assert program is not None
    program.save(str(path), external_data=None)


def write_torchscript(scorer: TopKScorer, path: Path) -> None:
    """torch.jit.trace → a TorchScript file (``torch.jit.load``), sizes read from the inputs at run time."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(scorer, example_inputs(scorer.max_len), check_trace=False)
    torch.jit.save(traced, str(path))


WRITERS = {"onnx": write_onnx, "torchscript": write_torchscript}


def runner(path: Path, fmt: str, threads: int | None = None) -> Any:
    """A callable ``(items, lengths) numpy → (ids, scores) numpy`` over the exported file (``threads``: onnxruntime's
    intra-op threads, None = its default; TorchScript uses torch's setting)."""
    if fmt == "onnx":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only (it warns about constant folding it skips)
        if threads is not None:
            options.intra_op_num_threads = threads
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return lambda items, lengths: tuple(session.run(list(OUTPUTS), {names.ITEMS: items, LENGTHS: lengths}))
    loaded = torch.jit.load(str(path), map_location="cpu")

    def run(items: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            ids, scores = loaded(torch.from_numpy(items), torch.from_numpy(lengths))
        return ids.numpy(), scores.numpy()

    return run


# --- parity with the eager module ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Probe:
    """Dataset users' histories in both forms: the graph's input and the eager ``divrec recommend`` inputs."""

    items: Tensor  # (U, S) every known item, left-padded: the graph's input
    lengths: Tensor  # (U,) how many are real
    history: Tensor  # (U, max_len) the newest max_len, left-padded: the eager model's input
    seen: Tensor  # (U, S) right-padded: what recommend excludes


def probe(data: ProcessedData, n_users: int, max_len: int) -> Probe:
    """The first ``n_users`` users of ``data`` (training + held-out items, as ``divrec recommend`` reads them)."""
    from divrec.data.windows import last_items, right_padded

    offsets, items = data.known_sequences()
    sub = offsets[: min(n_users, data.n_users) + 1]  # the first users: a prefix of the CSR offsets
    width = max(int(np.diff(sub).max(initial=0)), 1)
    full = torch.from_numpy(last_items(sub, items, width)).long()
    return Probe(full, (full != 0).sum(dim=1), torch.from_numpy(last_items(sub, items, max_len)).long(),
                 torch.from_numpy(right_padded(sub, items)).long())


@torch.no_grad()
def eager_lists(module: SeqRecModule, history: Tensor, seen: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:
    """The eager module's (U, k) ids and scores (recommend's plain top-k: score descending, lower id first) and
    its (U, V) masked scores."""
    masked = mask_seen(module.scores(history), seen, inplace=True)  # (U, V)
    scores, ids = top_k_scored(masked, k)
    return ids, scores, masked


def mismatched_rows(eager: tuple[Tensor, Tensor, Tensor], ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """(U,) bool: rows whose exported list is not the eager one. Scores must agree within ``TOLERANCE`` at every
    rank; an id may differ only where its eager score ties (within the tolerance) the eager list's at that rank."""
    e_ids, e_scores, masked = (t.numpy() for t in eager)
    got_ids, got = np.asarray(ids, dtype=np.int64), np.asarray(scores, dtype=np.float64)
    if got_ids.shape != e_ids.shape or got.shape != e_scores.shape:
        return np.ones(len(e_ids), dtype=bool)
    tol = TOLERANCE + 1e-5 * np.abs(np.nan_to_num(e_scores, neginf=0.0))
    finite = np.isfinite(e_scores)
    with np.errstate(invalid="ignore"):  # -inf - -inf in empty slots
        bad = (finite != np.isfinite(got)) | (finite & ~(np.abs(got - e_scores) <= tol))
        in_range = (got_ids >= 0) & (got_ids < masked.shape[1])
        their = np.take_along_axis(masked, np.where(in_range, got_ids, 0), axis=1)
        bad |= (got_ids != e_ids) & ~(in_range & (np.abs(their - e_scores) <= tol))
    return bad.any(axis=1)


def score_gap(eager: np.ndarray, got: np.ndarray) -> float:
    """The largest |exported - eager| score over the slots where both are finite (inf for mismatched shapes)."""
    if got.shape != eager.shape:
        return float("inf")
    finite = np.isfinite(eager) & np.isfinite(got)
    return float(np.abs(got.astype(np.float64) - eager)[finite].max(initial=0.0))


def check_parity(module: SeqRecModule, run: Any, sample: Probe, k: int) -> float:
    """Run the exported file on every probe row at once and on the first alone (batch 1); raise ``ExportError``
    if any list differs from the eager one. Returns the largest score gap seen."""
    eager = eager_lists(module, sample.history, sample.seen, k)
    ids, scores = run(sample.items.numpy(), sample.lengths.numpy())
    first_ids, first_scores = run(sample.items[:1].numpy(), sample.lengths[:1].numpy())
    bad = mismatched_rows(eager, ids, scores)
    bad[:1] |= mismatched_rows(tuple(t[:1] for t in eager), first_ids, first_scores)  # type: ignore[arg-type]
    gap = score_gap(eager[1].numpy(), np.asarray(scores))
    if bad.any():
        raise ExportError(
            f"export parity failed: the exported top-{k} differs from the eager model's for {int(bad.sum())} of "
            f"{len(bad)} users (first: row {int(np.argmax(bad))}; largest score gap {gap:.3g}, allowed "
            f"{TOLERANCE}); nothing was written. This is a divrec bug for {type(module.backbone).__name__}: "
            "report it, or try the other format="
        )
    return gap


# --- the command --------------------------------------------------------------------------------------------------
def check_request(cfg: DictConfig) -> tuple[str, int]:
    """``format`` and ``k`` of ``divrec export``, refused before the checkpoint is read."""
    fmt = str(cfg.format)
    if fmt not in WRITERS:
        raise ExportError(f"format={fmt}: unknown export format; use one of {sorted(WRITERS)}")
    if not isinstance(cfg.k, int) or isinstance(cfg.k, bool) or cfg.k < 1:
        raise ExportError(f"k={cfg.k}: the list length fixed in the exported graph must be an integer >= 1")
    if not isinstance(cfg.parity_users, int) or cfg.parity_users < 1:
        raise ExportError(f"parity_users={cfg.parity_users}: the exported file is checked on at least one dataset "
                          "user; give an integer >= 1")
    return fmt, int(cfg.k)


def check_servable(cfg: DictConfig) -> None:
    """What the graph cannot carry, refused from the checkpoint's config before any data is loaded."""
    if cfg.get("rerank"):
        raise ExportError(f"rerank={cfg.rerank.get('_target_', cfg.rerank)}: the exported graph ranks by the model's "
                          "scores only; drop rerank= (a server may re-rank the exported top-k itself)")
    if cfg.model.get("user_features"):
        raise ExportError(f"model.user_features={cfg.model.user_features}: the exported graph takes item histories "
                          "only (items, lengths), not user features; export a model trained without them")


def output_path(cfg: DictConfig, fmt: str) -> Path:
    output = Path(cfg.output) if cfg.get("output") else Path(cfg.paths.output_dir) / f"model{SUFFIXES[fmt]}"
    if output.is_dir():
        raise ExportError(f"output={output} is a folder; give the file to write (e.g. {output / 'model'}"
                          f"{SUFFIXES[fmt]})")
    return output


def sidecar_of(output: Path) -> Path:
    """``<output>.json``: where the sidecar of an exported file lies."""
    return output.with_name(output.name + SIDECAR_SUFFIX)


def exporter_failure(err: Exception, fmt: str, model: str) -> ExportError:
    """The exporter's (multi-line) error as one line naming the model and the operation that did not export."""
    text = str(err)
    summary = text.split("## Exception summary", 1)[-1].strip().splitlines()
    reason = next((line for line in summary if line.strip()), type(err).__name__)[:300]
    return ExportError(f"model {model} cannot be exported to {fmt}: {reason}; nothing was written (try format="
                       f"{'torchscript' if fmt == 'onnx' else 'onnx'}, or report the model)")


def version() -> str:
    try:
        return metadata.version("divrec")
    except metadata.PackageNotFoundError:
        return "unknown"


def sidecar(cfg: DictConfig, fmt: str, scorer: TopKScorer, data: ProcessedData, files: Sequence[str]) -> dict:
    """What a server needs next to the file: the interface, the shapes, and the internal id → raw id map."""
    return {
        "format": fmt, "file": files[0], "files": list(files),
        "inputs": {
            names.ITEMS: {"dtype": "int64", "shape": ["batch", "length"],
                          "meaning": "left-padded internal item ids (item_raw_ids index), 0 = padding"},
            LENGTHS: {"dtype": "int64", "shape": ["batch"], "meaning": "real items per row (the newest columns)"},
        },
        "outputs": {
            IDS: {"dtype": "int64", "shape": ["batch", scorer.k], "meaning": "best first; 0 = empty slot"},
            SCORES: {"dtype": "float32", "shape": ["batch", scorer.k], "meaning": "-inf in an empty slot"},
        },
        "k": scorer.k, "max_len": scorer.max_len, "n_items": data.n_items, "padding_id": 0,
        "excludes": "every item of the row and the padding id; the model reads the newest max_len",
        "model": type(scorer.backbone).__name__, "model_target": str(cfg.model._target_),
        "task_target": str(cfg.task._target_), "checkpoint": str(Path(cfg.ckpt_path).resolve()),
        "divrec_version": version(), "torch_version": torch.__version__,
        "item_raw_ids": [str(raw) for raw in data.item_raw_ids.tolist()],  # index = internal id; entry 0 = ""
        "popularity": training_popularity(data, max(POPULAR_TOP, scorer.k)),
    }


def training_popularity(data: ProcessedData, top: int) -> dict[str, list]:
    """The ``top`` most frequent training items (raw ids, best first, ties by internal id) and their counts: the
    list ``Recommender`` falls back to for a history with no known item."""
    counts = np.bincount(data.train_items.astype(np.int64), minlength=data.n_items + 1)
    order = np.argsort(-counts[1:], kind="stable")[:top] + 1  # (top,) internal ids, most popular first
    return {"item_raw_ids": [str(data.item_raw_ids[i]) for i in order.tolist()],
            "counts": [int(c) for c in counts[order].tolist()]}


def write_checked(
    scorer: TopKScorer, module: SeqRecModule, fmt: str, output: Path, sample: Probe
) -> tuple[list[str], float]:
    """Write the file into a temporary folder next to ``output``, check parity, then move it (and any external
    weights) into place, removing a previous export's sidecar first (it must not describe the new file); on any
    failure nothing is left and a previous export stays whole. Returns the file names and the parity gap."""
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.parent / f".{output.name}.export-tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        try:
            WRITERS[fmt](scorer, tmp / output.name)
        except Exception as err:
            raise exporter_failure(err, fmt, type(module.backbone).__name__) from err
        gap = check_parity(module, runner(tmp / output.name, fmt), sample, scorer.k)
        log.info("parity with eager on %d users: largest score gap %.3g", len(sample.items), gap)
        files = [output.name, *sorted(p.name for p in tmp.iterdir() if p.name != output.name)]
        sidecar_of(output).unlink(missing_ok=True)
        for name in reversed(files):  # external weights first, the graph last
            (tmp / name).replace(output.parent / name)
        return files, gap
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_sidecar(path: Path, meta: dict, output: Path) -> None:
    """``meta`` (plus the ONNX opsets) as ``path``, written atomically: its presence marks a complete export."""
    if meta["format"] == "onnx":
        import onnx

        opsets = onnx.load(str(output), load_external_data=False).opset_import
        meta = meta | {"opset": {o.domain or "ai.onnx": o.version for o in opsets}}
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(meta, indent=1) + "\n")
    tmp.replace(path)


def restore(cfg: DictConfig, overrides: Sequence[str] = ()) -> tuple[DictConfig, SeqRecModule, ProcessedData]:
    """The checkpoint ``cfg.ckpt_path`` as an eval-mode module (built like ``divrec recommend`` builds it), its
    config and its data; what the graph cannot carry is refused before any data is loaded."""
    from divrec.pipeline import build, checkpoint_config, load_checkpoint

    checkpoint = load_checkpoint(cfg.ckpt_path)
    cfg = checkpoint_config(cfg, checkpoint, overrides)
    check_servable(cfg)
    datamodule, module = build(cfg)
    module.load_state_dict(checkpoint["state_dict"])
    module.mixed_precision = False  # the exported graph runs in fp32; the parity check compares fp32 with fp32
    return cfg, module.eval(), datamodule.load()


def export(cfg: DictConfig, overrides: Sequence[str] = ()) -> Path:
    """Write ``cfg.output`` (an ONNX or TorchScript top-``cfg.k`` scorer of ``cfg.ckpt_path``) and its sidecar
    ``<output>.json``, after checking it against the eager model on ``cfg.parity_users`` dataset users."""
    fmt, k = check_request(cfg)
    output = output_path(cfg, fmt)  # output and paths are this command's, never the checkpoint's
    cfg, module, data = restore(cfg, overrides)
    if k > data.n_items:
        raise ExportError(f"k={k} exceeds the catalog's {data.n_items} items; choose k <= {data.n_items}")
    backbone = module.backbone
    graph = graph_backbone(backbone)
    scorer = TopKScorer(graph, module.task, k, data.n_items, backbone.max_len, exact_ties=fmt == "torchscript").eval()
    sample = probe(data, int(cfg.parity_users), backbone.max_len)
    files, gap = write_checked(scorer, module, fmt, output, sample)
    meta = sidecar(cfg, fmt, scorer, data, files) | {"parity": {"users": len(sample.items), "largest_score_gap": gap}}
    write_sidecar(sidecar_of(output), meta, output)
    print(f"wrote {output} ({fmt}, top-{k} of {data.n_items} items, max_len {backbone.max_len}) and "
          f"{sidecar_of(output).name}; it matches the eager model on {len(sample.items)} users")
    return output
