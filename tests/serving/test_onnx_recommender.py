"""``OnnxRecommender``: an exported tiny SASRec gives the checkpoint ``Recommender``'s lists and scores for raw-id
histories (unknown ids, popularity fallback included); what the graph cannot do is refused; hot reload to another
export of the catalog, and refusals that keep the old file serving; ``divrec serve`` picks it by suffix."""

from __future__ import annotations

import gc
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import uvicorn
from fastapi.testclient import TestClient
from runhelpers import Run, compose_config, run_paths, tiny_train

from divrec.errors import UserError
from divrec.serving.export import export
from divrec.serving.onnx_recommender import OnnxRecommender, load_recommender
from divrec.serving.recommender import POPULARITY, Recommender
from divrec.serving.server import ServerSettings, checkpoint_version, create_app, serve

K = 10  # the exported list length


@dataclass(frozen=True)
class Exports:
    first: Path  # tiny_run's checkpoint exported
    second: Path  # another checkpoint of the same data (training seed 1) exported
    checkpoint: Path
    data_dir: Path


@pytest.fixture(scope="module")
def exports(tiny_run: Run, tmp_path_factory: pytest.TempPathFactory) -> Exports:
    base = tmp_path_factory.mktemp("onnx")
    other = tiny_train(base / "run2", tiny_run.data_dir, seed=1, extra=["data.source.seed=0"])  # the same data
    files = []
    for name, run_dir in (("first", tiny_run.run_dir), ("second", other.run_dir)):
        out = base / name / "model.onnx"
        ckpt = run_dir / "checkpoints" / "best.ckpt"
        export(compose_config("export", [f"ckpt_path={ckpt}", f"output={out}", f"k={K}", "parity_users=8",
                                         *run_paths(base / name / "run", tiny_run.data_dir)]))
        files.append(out)
    return Exports(files[0], files[1], tiny_run.run_dir / "checkpoints" / "best.ckpt", tiny_run.data_dir)


@pytest.fixture(scope="module")
def eager(exports: Exports) -> Recommender:
    return Recommender.from_checkpoint(exports.checkpoint, overrides=[f"paths.data_dir={exports.data_dir}"])


def copy_export(source: Path, folder: Path, edit: dict | None = None, drop: str | None = None) -> Path:
    """``source`` and its sidecar copied into ``folder``, the sidecar with ``edit`` applied / ``drop`` removed."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / source.name
    shutil.copy(source, target)
    meta = json.loads(source.with_name(source.name + ".json").read_text()) | (edit or {})
    meta.pop(drop, None)
    target.with_name(target.name + ".json").write_text(json.dumps(meta))
    return target


def histories(item_ids: np.ndarray, seed: int = 0) -> list[list[str]]:
    """Raw-id histories: random known ids (repeats, some longer than max_len), unknown ids mixed in, an empty one
    and an all-unknown one (both the popularity fallback)."""
    rng = np.random.default_rng(seed)
    out = [rng.choice(item_ids[1:], int(n)).tolist() for n in rng.integers(1, 20, 30)]
    out[3] = ["nope", *out[3], "zz"]
    return [*out, [], ["never-seen"]]


@pytest.mark.parametrize("k", [K, 3])
def test_the_same_lists_and_scores_as_the_checkpoint_recommender(exports: Exports, eager: Recommender,
                                                                  k: int) -> None:
    onnx = OnnxRecommender(exports.first)
    assert (onnx.n_items, onnx.max_len, onnx.k) == (eager.n_items, eager.max_len, K)
    assert onnx.item_ids.tolist() == eager.item_ids.tolist() and not onnx.knows_user(eager.data.user_raw_ids[0])
    wanted = histories(eager.item_ids, seed=k)
    got, expected = onnx.recommend(wanted, k=k), eager.recommend(wanted, k=k)
    for mine, theirs in zip(got, expected, strict=True):
        assert (mine.items, mine.unknown_items, mine.fallback) == (theirs.items, theirs.unknown_items,
                                                                   theirs.fallback)
        np.testing.assert_allclose(mine.scores, theirs.scores, atol=1e-4, rtol=0)
    assert got[3].unknown_items == ["nope", "zz"] and got[3].fallback is None
    assert [r.fallback for r in got[-2:]] == [POPULARITY] * 2 and got[-1].unknown_items == ["never-seen"]
    assert len(got[-1].items) == k and got[-1].scores == sorted(got[-1].scores, reverse=True)


def test_timestamps_order_a_history_like_the_recommender(exports: Exports, eager: Recommender) -> None:
    items = eager.item_ids[1:12].tolist()
    times = [[float(t) for t in np.random.default_rng(1).permutation(len(items))]]
    got = OnnxRecommender(exports.first).recommend([items], k=5, timestamps=times)[0]
    assert got.items == eager.recommend([items], k=5, timestamps=times)[0].items


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ({"k": K + 1}, rf"k={K + 1}: over k={K} of the served ONNX file model.onnx .*ask for k <= {K}"),
        ({"k": 0}, r"k=0: must be a positive integer"),
        ({"exclude_seen": False}, r"exclude_seen=false: the served ONNX file always excludes the history's items"),
        ({"rerank": "mmr"}, r"rerank='mmr': the served ONNX file ranks by the model's scores only"),
        ({"histories": "abc"}, r"history='a': must be a list of item ids"),
        ({"histories": [[1.5]]}, r"history item 1.5: item ids are strings"),
    ],
)
def test_what_the_graph_cannot_do_is_refused(exports: Exports, call: dict, message: str) -> None:
    onnx = OnnxRecommender(exports.first)
    with pytest.raises(UserError, match=message):
        onnx.recommend(**({"histories": [["1"]]} | call))
    assert len(onnx.recommend([["1"]], k=K, rerank="none")[0].items) == K  # "none" is no re-ranker
    with pytest.raises(UserError, match=r"user\(s\) \['7'\]: an exported ONNX file has no dataset users"):
        onnx.recommend_users(["7"])


def test_an_older_sidecar_without_popularity_refuses_only_the_fallback(exports: Exports, tmp_path: Path) -> None:
    old = OnnxRecommender(copy_export(exports.first, tmp_path, drop="popularity"))
    known = old.item_ids[1:4].tolist()
    assert old.recommend([known], k=3)[0].items == OnnxRecommender(exports.first).recommend([known], k=3)[0].items
    with pytest.raises(UserError, match=r"the history has no item the model knows \(unknown: \['x'\]\), and "
                                        r"model.onnx.json has no training popularity"):
        old.recommend([["x"]])


def test_reload_swaps_to_another_export_and_refuses_one_of_another_catalog(exports: Exports, tmp_path: Path) -> None:
    onnx, history = OnnxRecommender(exports.first), [OnnxRecommender(exports.first).item_ids[[1, 5, 9]].tolist()]
    before = onnx.recommend(history)[0]
    onnx.load_state(exports.second)
    after = onnx.recommend(history)[0]
    assert after == OnnxRecommender(exports.second).recommend(history)[0] and after.items != before.items
    renamed = onnx.item_ids.tolist()
    renamed[1], renamed[2] = renamed[2], renamed[1]
    refused = {
        "catalog": (copy_export(exports.first, tmp_path / "a", {"item_raw_ids": renamed}),
                    r"its item_raw_ids \(40 items\) are not those of the served model.onnx"),
        "short k": (copy_export(exports.first, tmp_path / "b", {"k": 5}), r"k=5 is below the served file's k=10"),
        "checkpoint": (exports.checkpoint, r"best.ckpt: not an .onnx file"),
        "no sidecar": (Path(shutil.copy(exports.first, tmp_path / "lone.onnx")), r"lone.onnx.json: no sidecar next"),
        "not onnx": (copy_export(exports.first, tmp_path / "c"), r"onnxruntime cannot load it"),
    }
    (tmp_path / "c" / "model.onnx").write_bytes(b"\x00junk")
    for path, message in refused.values():
        with pytest.raises(UserError, match=message):
            onnx.load_state(path)
        assert onnx.recommend(history)[0] == after and onnx.path == exports.second  # still the second file


def test_an_onnx_served_app_answers_refuses_and_reloads(exports: Exports, tmp_path: Path) -> None:
    onnx = OnnxRecommender(exports.first)
    history = onnx.item_ids[[2, 3, 7]].tolist()
    settings = ServerSettings(ckpt_path=str(exports.first), token=None, feedback_url=None)
    with TestClient(create_app(onnx, settings)) as client:
        body = client.post("/recommend", json={"history": [*history, "zz"], "k": 4}).json()
        expected = OnnxRecommender(exports.first).recommend([history], k=4)[0]
        assert [i["item"] for i in body["items"]] == expected.items and body["unknown_items"] == ["zz"]
        assert body["model"] == checkpoint_version(exports.first) and body["fallback"] is None
        assert client.post("/recommend", json={"history": []}).json()["fallback"] == POPULARITY
        user = client.post("/recommend", json={"user": "1"})
        assert user.status_code == 404 and user.json()["error"] == (
            "user '1' is unknown to the model (an exported ONNX file has no dataset users); send its history instead")
        for extra, message in (({"k": K + 1}, f"over k={K}"), ({"exclude_seen": False}, "always excludes"),
                               ({"rerank": "mmr"}, "scores only")):
            reply = client.post("/recommend", json={"history": history, **extra})
            assert reply.status_code == 422 and message in reply.json()["error"]
        refused = client.post("/reload", json={"ckpt_path": str(exports.checkpoint)})
        assert refused.status_code == 422 and "reload refused, still serving model.onnx@" in refused.json()["error"]
        swapped = client.post("/reload", json={"ckpt_path": str(exports.second)}).json()
        assert swapped["model"] == checkpoint_version(exports.second) != checkpoint_version(exports.first)
        now = client.post("/recommend", json={"history": history, "k": 4}).json()
        assert [i["item"] for i in now["items"]] == OnnxRecommender(exports.second).recommend([history], k=4)[0].items
        assert client.get("/health").json()["n_items"] == onnx.n_items


def test_load_recommender_picks_by_suffix_and_refuses_what_an_export_cannot_take(exports: Exports) -> None:
    assert isinstance(load_recommender(exports.first, default_k=K), OnnxRecommender)
    for kwargs, message in (({"default_k": K + 1}, rf"k={K + 1}: over k={K}"),
                            ({"device": "cuda"}, r"device=cuda: an .onnx file is served on onnxruntime's CPU"),
                            ({"overrides": ["rerank=mmr"]}, r"rerank=mmr: an exported ONNX graph ranks")):
        with pytest.raises(UserError, match=message):
            load_recommender(exports.first, **kwargs)
    assert isinstance(load_recommender(exports.first, overrides=["rerank=none", "paths.data_dir=/x"]),
                      OnnxRecommender)
    checkpoint = load_recommender(exports.checkpoint, [f"paths.data_dir={exports.data_dir}"])
    assert isinstance(checkpoint, Recommender)


def test_divrec_serve_serves_an_onnx_path(exports: Exports, monkeypatch: pytest.MonkeyPatch) -> None:
    served: list = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self: served.append(self.config.app))
    monkeypatch.setattr(gc, "freeze", lambda: None)  # serve() freezes the heap for a long-lived process
    common = [f"ckpt_path={exports.first}", "port=0", "feedback.url=null"]
    with pytest.raises(UserError, match=rf"k=11: over k={K}"):  # refused before serving
        serve(compose_config("serve", [*common, "k=11"]))
    serve(compose_config("serve", common), overrides=["threads=1"])
    slot = served[0].state.divrec.slot
    assert isinstance(slot.recommender, OnnxRecommender) and slot.version == checkpoint_version(exports.first)
