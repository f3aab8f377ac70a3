"""``divrec export``: every zoo model's exported file (ONNX through onnxruntime, TorchScript through torch.jit.load)
gives the eager model's top-10 on 1,000 random histories; what cannot be exported, or does not match, is refused
and leaves nothing behind; the sidecar maps ids; the console script wires the command."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import DictConfig
from runhelpers import CONSOLE_SCRIPT, QUIET, TINY_DATA, compose_config, leftovers, run_divrec, run_paths

from divrec import names
from divrec.lit.module import SeqRecModule
from divrec.metrics.ranking import top_k_scored
from divrec.pipeline import train
from divrec.serving import export as export_module
from divrec.serving.export import IDS, INPUTS, LENGTHS, OUTPUTS, SCORES, ExportError, export, restore, runner

MODELS = ["sasrec", "bert4rec", "gru4rec", "fmlp", "bsarec", "lrurec", "hstu", "pop", "itemknn", "ease"]
MAX_LEN, N_ITEMS, K, USERS = 20, 40, 10, 1000  # TINY_DATA's catalog: 40 items
ONE_EPOCH = [*TINY_DATA, f"data.max_len={MAX_LEN}", *QUIET, "trainer=cpu", "trainer.max_epochs=1",
             "data.batch_size=32", "logger=none"]


def tiny_model(name: str) -> list[str]:
    """Width 16, one layer, small inner sizes, for the keys the model has (closed-form baselines have none)."""
    keys = compose_config("train", [f"model={name}"]).model
    small = {"hidden_size": 16, "n_layers": 1, "ffn_size": 32, "gru_size": 16, "state_size": 16}
    return [f"model.{key}={value}" for key, value in small.items() if key in keys]


class Zoo:
    """One 1-epoch checkpoint (and its eager module) per model, trained on first use and shared by the tests."""

    def __init__(self, base: Path) -> None:
        self.base, self.data_dir = base, base / "data"
        self.checkpoints: dict[str, Path] = {}
        self.modules: dict[str, SeqRecModule] = {}

    def checkpoint(self, name: str) -> Path:
        if name not in self.checkpoints:
            run = self.base / name
            train(compose_config("train", [f"model={name}", *ONE_EPOCH, *tiny_model(name),
                                           *run_paths(run, self.data_dir)]))
            self.checkpoints[name] = run / "checkpoints" / "best.ckpt"
        return self.checkpoints[name]

    def config(self, name: str, out: Path, *extra: str) -> DictConfig:
        return compose_config("export", [f"ckpt_path={self.checkpoint(name)}", f"output={out}", "parity_users=16",
                                         *extra, *run_paths(out.parent / "run", self.data_dir)])

    def exported(self, name: str, fmt: str) -> Path:
        """The checkpoint exported once per format with k=10 (the file of the parity tests)."""
        out = self.base / "exports" / f"{name}-{fmt}" / f"model.{fmt}"
        if not out.is_file():
            assert export(self.config(name, out, f"format={fmt}", f"k={K}")) == out
        return out

    def eager(self, name: str) -> SeqRecModule:
        """The checkpoint's module as ``divrec recommend`` builds it (the original backbone, not the graph copy)."""
        if name not in self.modules:
            self.modules[name] = restore(self.config(name, self.base / "unused.onnx"))[1]
        return self.modules[name]


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Zoo:
    return Zoo(tmp_path_factory.mktemp("zoo"))


def random_histories(seed: int, width: int = MAX_LEN + 5) -> tuple[np.ndarray, np.ndarray]:
    """(USERS, width) left-padded random ids of the tiny catalog (repeats allowed, some longer than max_len) and
    their lengths."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, width + 1, USERS)
    items = rng.integers(1, N_ITEMS + 1, (USERS, width))
    items[np.arange(width)[None, :] < (width - lengths)[:, None]] = 0
    return items.astype(np.int64), lengths.astype(np.int64)


@torch.no_grad()
def eager_top_k(module: SeqRecModule, items: np.ndarray, k: int = K) -> tuple[np.ndarray, np.ndarray]:
    """The eager reference, written out: score the newest max_len items, exclude the whole row and padding, order
    by (score descending, id ascending); an empty slot is id 0 with score -inf."""
    rows = torch.from_numpy(items)
    scores = module.scores(rows[:, -MAX_LEN:]).clone()  # (U, V)
    scores[:, 0] = float("-inf")
    scores.scatter_(1, rows, float("-inf"))
    order = torch.sort(-scores, dim=1, stable=True).indices[:, :k]  # (U, k)
    best = scores.gather(1, order)
    return torch.where(torch.isfinite(best), order, 0).numpy(), best.numpy()


def test_graph_top_k_breaks_ties_toward_the_lower_id_like_divrecs_rankings() -> None:
    generator = torch.Generator().manual_seed(0)
    for case in range(50):
        scores = torch.randint(0, 4, (8, 30), generator=generator).float()  # many ties
        scores[:, : case % 7] = float("-inf")  # excluded items
        scores[case % 8, 5:] = float("-inf")  # a row with fewer rankable items than k
        got, expected = export_module.lowest_id_top_k(scores, K), top_k_scored(scores, K)
        torch.testing.assert_close(got[0], expected[0])
        finite = torch.isfinite(got[0])
        assert torch.equal(torch.where(finite, got[1], 0), expected[1])


def assert_same_lists(got: tuple[np.ndarray, np.ndarray], expected: tuple[np.ndarray, np.ndarray]) -> None:
    ids, scores = got
    assert ids.dtype == np.int64 and scores.dtype == np.float32 and ids.shape == (USERS, K)
    np.testing.assert_array_equal(ids, expected[0])
    np.testing.assert_allclose(scores, expected[1], atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", MODELS)
def test_onnx_export_gives_the_eager_top_10_on_1000_users(name: str, zoo: Zoo, tmp_path: Path) -> None:
    out = zoo.exported(name, "onnx")
    assert sorted(p.name for p in out.parent.iterdir() if p.name != "run") == ["model.onnx", "model.onnx.json"]
    items, lengths = random_histories(seed=MODELS.index(name))
    assert_same_lists(runner(out, "onnx")(items, lengths), eager_top_k(zoo.eager(name), items))


@pytest.mark.parametrize("name", MODELS)
def test_torchscript_export_gives_the_eager_top_10_on_1000_users(name: str, zoo: Zoo, tmp_path: Path) -> None:
    out = zoo.exported(name, "torchscript")
    items, lengths = random_histories(seed=100 + MODELS.index(name))
    assert_same_lists(runner(out, "torchscript")(items, lengths), eager_top_k(zoo.eager(name), items))


def test_sidecar_describes_the_interface_and_maps_ids(zoo: Zoo) -> None:
    out = zoo.exported("sasrec", "onnx")
    meta = json.loads(out.with_name("model.onnx.json").read_text())
    assert (meta["format"], meta["file"], meta["k"], meta["max_len"], meta["n_items"]) == ("onnx", "model.onnx", K,
                                                                                          MAX_LEN, N_ITEMS)
    assert list(meta["inputs"]) == list(INPUTS) and list(meta["outputs"]) == list(OUTPUTS)
    assert meta["model"] == "TransformerBackbone" and meta["checkpoint"] == str(zoo.checkpoint("sasrec").resolve())
    raw = meta["item_raw_ids"]
    assert len(raw) == N_ITEMS + 1 and raw[0] == "" and len(set(raw)) == len(raw)
    popular = meta["popularity"]  # the serving fallback: training counts, most popular first, every item here
    data = restore(zoo.config("sasrec", zoo.base / "unused.onnx"))[2]
    counts = np.bincount(data.train_items, minlength=N_ITEMS + 1)
    assert sorted(popular["item_raw_ids"]) == sorted(raw[1:]) and popular["counts"] == sorted(popular["counts"])[::-1]
    assert popular["counts"] == [int(counts[raw.index(r)]) for r in popular["item_raw_ids"]]
    import onnxruntime as ort

    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == [names.ITEMS, LENGTHS]
    assert [o.name for o in session.get_outputs()] == [IDS, SCORES]
    assert session.get_outputs()[0].shape[1] == K  # k fixed; batch and length dynamic
    assert isinstance(session.get_inputs()[0].shape[0], str) and isinstance(session.get_inputs()[0].shape[1], str)


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_lengths_and_unknown_ids_mark_padding_and_short_catalogs_leave_empty_slots(zoo: Zoo, fmt: str) -> None:
    run = runner(zoo.exported("gru4rec", fmt), fmt)
    clean = np.array([[0, 0, 0, 0, 5, 9, 2]], dtype=np.int64)
    stale = np.array([[7, 3, N_ITEMS + 9, 0, 5, 9, 2]], dtype=np.int64)  # junk left of the newest 3 columns
    expected = run(clean, np.array([3]))
    for got in (run(stale, np.array([3])), run(np.array([[N_ITEMS + 1, -4, 5, 9, 2]]), np.array([5]))):
        np.testing.assert_array_equal(got[0], expected[0])  # stale columns and unknown ids are padding
        np.testing.assert_allclose(got[1], expected[1], atol=1e-6)
    assert not set(expected[0][0]) & {0, 2, 5, 9}
    everything = np.arange(1, N_ITEMS + 1, dtype=np.int64)[None, 3:]  # all but items 1, 2, 3
    ids, scores = run(everything, np.array([N_ITEMS - 3]))
    assert sorted(ids[0, :3]) == [1, 2, 3] and np.isfinite(scores[0, :3]).all()
    assert (ids[0, 3:] == 0).all() and np.isneginf(scores[0, 3:]).all()  # fewer items than k: empty slots


def test_a_file_that_differs_from_eager_is_refused_and_leaves_a_previous_export_whole(
    zoo: Zoo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = export_module.graph_backbone

    def perturbed(backbone: torch.nn.Module) -> torch.nn.Module:
        graph = original(backbone)
        with torch.no_grad():
            graph.tower.item_emb.weight[1:] += 0.5 * torch.randn_like(graph.tower.item_emb.weight[1:])
        return graph

    out = tmp_path / "out" / "m.pt"
    export(zoo.config("sasrec", out, "format=torchscript"))  # a previous, good export
    before = {p: (tmp_path / "out" / p).read_bytes() for p in ("m.pt", "m.pt.json")}
    monkeypatch.setattr(export_module, "graph_backbone", perturbed)
    with pytest.raises(ExportError, match=r"export parity failed: .* differs from the eager model's") as err:
        export(zoo.config("sasrec", out, "format=torchscript"))  # the check is the same for both formats
    assert "\n" not in str(err.value)
    assert [p for p in leftovers(tmp_path / "out") if not p.startswith("run")] == sorted(before)  # no temporaries
    assert {p: (tmp_path / "out" / p).read_bytes() for p in before} == before  # the previous export stays whole


def test_a_model_that_cannot_be_traced_is_refused_naming_it_and_the_reason(
    zoo: Zoo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # without its export-only dense scores, item-kNN multiplies a sparse query, which torch.export cannot trace
    monkeypatch.setattr(export_module, "graph_backbone", lambda backbone: copy.deepcopy(backbone).eval())
    with pytest.raises(ExportError, match=r"model ItemKNN cannot be exported to onnx: .*to_sparse.*; nothing was "
                                          r"written") as err:
        export(zoo.config("itemknn", tmp_path / "out" / "m.onnx"))
    assert "\n" not in str(err.value)
    assert [p for p in leftovers(tmp_path / "out") if not p.startswith("run")] == []


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["format=tflite"], r"format=tflite: unknown export format; use one of \['onnx', 'torchscript'\]"),
        (["k=0"], r"k=0: the list length .* must be an integer >= 1"),
        (["parity_users=0"], r"parity_users=0: the exported file is checked on at least one dataset user"),
        ([f"k={N_ITEMS + 1}"], rf"k={N_ITEMS + 1} exceeds the catalog's {N_ITEMS} items"),
        (["rerank=mmr"], r"rerank=.*: the exported graph ranks by the model's scores only"),
        (["model.user_features=add"], r"model.user_features=add: the exported graph takes item histories only"),
    ],
)
def test_what_the_graph_cannot_carry_is_refused(zoo: Zoo, tmp_path: Path, extra: list[str], message: str) -> None:
    with pytest.raises(ExportError, match=message):
        export(zoo.config("sasrec", tmp_path / "m.onnx", *extra), overrides=extra)
    assert not (tmp_path / "m.onnx").exists() and not (tmp_path / "m.onnx.json").exists()


@pytest.mark.skipif(not CONSOLE_SCRIPT.is_file(), reason=f"{CONSOLE_SCRIPT} not installed")
def test_console_script_exports(zoo: Zoo, tmp_path: Path) -> None:
    ckpt, out = zoo.checkpoint("pop"), tmp_path / "pop.pt"
    common = [f"ckpt_path={ckpt}", f"paths.data_dir={zoo.data_dir}", f"hydra.run.dir={tmp_path / 'run'}"]
    result = run_divrec(["export", *common, "format=torchscript", f"output={out}", "k=3"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert out.is_file() and json.loads((tmp_path / "pop.pt.json").read_text())["k"] == 3
    assert f"wrote {out} (torchscript, top-3 of {N_ITEMS} items" in result.stdout
