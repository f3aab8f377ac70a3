"""``Recommender``: lists for any history equal the dataset-user path for dataset users; unknown ids, the popularity
fallback, exclusion, long k, re-rankers by name, hot reload; and ``divrec recommend input=``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from runhelpers import QUIET, TINY_DATA, Run, compose_config, run_paths, tiny_train

from divrec import names
from divrec.errors import UserError
from divrec.pipeline import train
from divrec.recommend import FALLBACK, N_UNKNOWN, RANK, SCORE, recommend
from divrec.serving import Recommendation, Recommender
from divrec.serving.recommender import POPULARITY, serving_config

K = 5
CHEAP_RUN = ["logger=none", "callbacks.attention_maps=null", "callbacks.projector=null"]  # no inspection


def ckpt(run_dir: Path) -> Path:
    return run_dir / "checkpoints" / "best.ckpt"


@pytest.fixture(scope="module")
def knn_run(tiny_run: Run, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A closed-form model (fitted, no epochs) on the same tiny data as ``tiny_run``."""
    run_dir = tmp_path_factory.mktemp("knn") / "run"
    overrides = ["model=itemknn", *TINY_DATA, *QUIET, *CHEAP_RUN, "trainer=cpu", "trainer.max_epochs=1", "seed=0"]
    train(compose_config("train", [*overrides, *run_paths(run_dir, tiny_run.data_dir)]))
    return run_dir


def load(run_dir: Path, data_dir: Path, *overrides: str) -> Recommender:
    return Recommender.from_checkpoint(ckpt(run_dir), overrides=[f"paths.data_dir={data_dir}", *overrides])


@pytest.fixture(scope="module")
def sasrec(tiny_run: Run) -> Recommender:
    return load(tiny_run.run_dir, tiny_run.data_dir)


def dataset_path_lists(tmp_path: Path, run_dir: Path, data_dir: Path, users: list[str], *extra: str) -> pd.DataFrame:
    """What ``divrec recommend users=...`` (``recommend.top_items``) writes."""
    out = tmp_path / "dataset.parquet"
    cfg = compose_config("recommend", [
        f"ckpt_path={ckpt(run_dir)}", *run_paths(tmp_path / "rec", data_dir), f"k={K}", f"users=[{','.join(users)}]",
        f"output={out}", *extra,
    ])
    return pd.read_parquet(recommend(cfg))


def assert_same_as_dataset_path(frame: pd.DataFrame, users: list[str], recs: list[Recommendation]) -> None:
    assert len(recs) == len(users)
    for user, rec in zip(users, recs, strict=True):
        rows = frame[frame[names.USER] == user].sort_values(RANK)
        assert rec.user == user and rec.fallback is None and rec.unknown_items == []
        assert rec.items == rows[names.ITEM].tolist()
        np.testing.assert_allclose(rec.scores, rows[SCORE].to_numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("model", ["sasrec", "itemknn"])
def test_dataset_users_get_the_lists_and_scores_of_the_dataset_path(
    model: str, tmp_path: Path, tiny_run: Run, knn_run: Path, sasrec: Recommender
) -> None:
    run_dir = tiny_run.run_dir if model == "sasrec" else knn_run
    rec = sasrec if model == "sasrec" else load(knn_run, tiny_run.data_dir)
    users = [str(u) for u in rec.data.user_raw_ids[:12].tolist()]
    frame = dataset_path_lists(tmp_path, run_dir, tiny_run.data_dir, users)
    assert_same_as_dataset_path(frame, users, rec.recommend_users(users, k=K))
    # the same sequences given as raw-id histories: the same lists
    offsets, items = rec.data.known_sequences()
    histories = [rec.item_ids[items[offsets[u] : offsets[u + 1]]].tolist() for u in range(12)]
    anonymous = rec.recommend(histories, k=K)
    assert [r.items for r in anonymous] == [r.items for r in rec.recommend_users(users, k=K)]
    assert all(r.user is None for r in anonymous)


def test_unknown_items_are_dropped_and_reported_per_request(sasrec: Recommender) -> None:
    a, b, c = sasrec.item_ids[1:4].tolist()
    noisy, clean, ints = sasrec.recommend([[a, "nope", b, "zzz"], [a, b], [int(c)]], k=K)
    assert noisy.unknown_items == ["nope", "zzz"] and clean.unknown_items == [] and ints.unknown_items == []
    assert noisy.items == clean.items and noisy.scores == clean.scores and noisy.fallback is None
    assert ints.items == sasrec.recommend([[c]], k=K)[0].items  # ints are str()-ed


def test_empty_or_all_unknown_history_gets_training_popularity(sasrec: Recommender) -> None:
    counts = np.bincount(sasrec.data.train_items, minlength=sasrec.n_items + 1)
    counts[0] = -1
    expected = sasrec.item_ids[np.argsort(-counts, kind="stable")[:K]].tolist()
    empty, unknown = sasrec.recommend([[], ["x", "y"]], k=K)
    for rec in (empty, unknown):
        assert rec.fallback == POPULARITY and rec.items == expected
        assert rec.scores == sorted(rec.scores, reverse=True) and rec.scores[0] == counts.max()
    assert unknown.unknown_items == ["x", "y"]
    user = str(sasrec.data.user_raw_ids[0])  # a named dataset user with no history: their known sequence
    named = sasrec.recommend([[]], k=K, users=[user])[0]
    assert named.fallback is None and named.user == user
    assert named.items == sasrec.recommend_users([user], k=K)[0].items


def test_exclude_seen_masks_the_history_and_false_ranks_everything(sasrec: Recommender) -> None:
    history = sasrec.item_ids[[3, 1, 4, 1, 5]].tolist()
    ids = torch.from_numpy(sasrec.item_index(history)).unsqueeze(0)
    scores = (sasrec.score_queries(ids) @ sasrec.item_table().T)[0]  # (V,)
    scores[0] = float("-inf")
    kept = sasrec.recommend([history], k=K, exclude_seen=False)[0]
    assert kept.items == sasrec.item_ids[scores.topk(K).indices.numpy()].tolist()
    scores[ids[0]] = float("-inf")
    excluded = sasrec.recommend([history], k=K)[0]
    assert excluded.items == sasrec.item_ids[scores.topk(K).indices.numpy()].tolist()
    assert not set(excluded.items) & set(history)


def test_k_larger_than_the_catalog_lists_every_rankable_item_once(sasrec: Recommender) -> None:
    history = sasrec.item_ids[1:4].tolist()
    excluded, kept, fallback = (sasrec.recommend([h], k=1000, exclude_seen=e)[0]
                                for h, e in ((history, True), (history, False), ([], True)))
    assert len(excluded.items) == len(set(excluded.items)) == sasrec.n_items - 3
    assert sorted(kept.items) == sorted(fallback.items) == sorted(sasrec.item_ids[1:].tolist())
    assert np.all(np.isfinite(excluded.scores))


def test_rerank_by_name_is_the_configured_reranker(tmp_path: Path, tiny_run: Run, sasrec: Recommender) -> None:
    users = [str(u) for u in sasrec.data.user_raw_ids[:6].tolist()]
    frame = dataset_path_lists(tmp_path, tiny_run.run_dir, tiny_run.data_dir, users, "rerank=mmr")
    mmr = sasrec.recommend_users(users, k=K, rerank="mmr")
    assert_same_as_dataset_path(frame, users, mmr)
    assert [r.items for r in mmr] != [r.items for r in sasrec.recommend_users(users, k=K)]  # it did re-rank
    assert sasrec.recommend_users(users, k=K, rerank="none") == sasrec.recommend_users(users, k=K)
    with pytest.raises(UserError, match=r"rerank='nope': no such re-ranker; choose one of \[.*'mmr'"):
        sasrec.recommend([[]], rerank="nope")


def test_bad_arguments_are_user_errors(sasrec: Recommender) -> None:
    with pytest.raises(UserError, match="k=0: must be a positive integer"):
        sasrec.recommend([["1"]], k=0)
    with pytest.raises(UserError, match="timestamps: 1 entries for 2 histories"):
        sasrec.recommend([["1"], ["2"]], timestamps=[[1.0]])
    with pytest.raises(UserError, match="must be a list of item ids"):
        sasrec.recommend(["12"])  # a string, not a list of ids
    with pytest.raises(UserError, match=r"users=: 1 of 2 requested user id\(s\) are not in the dataset \(ghost\)"):
        sasrec.recommend_users([str(sasrec.data.user_raw_ids[0]), "ghost"])
    assert sasrec.knows_user(str(sasrec.data.user_raw_ids[0])) and not sasrec.knows_user("ghost")
    assert sasrec.item_ids[0] == "" and len(sasrec.item_ids) == sasrec.n_items + 1 and sasrec.max_len == 8


def test_timestamps_order_the_history(sasrec: Recommender) -> None:
    a, b, c = sasrec.item_ids[1:4].tolist()
    timed = sasrec.recommend([[a, b, c]], k=K, timestamps=[[30.0, 10.0, 20.0]])[0]
    assert timed.items == sasrec.recommend([[b, c, a]], k=K)[0].items


def test_load_state_swaps_weights_and_refuses_bad_files(tmp_path: Path, tiny_run: Run, knn_run: Path) -> None:
    rec = load(tiny_run.run_dir, tiny_run.data_dir)
    history = [rec.item_ids[1:6].tolist()]
    before = rec.recommend(history, k=K)
    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes(ckpt(tiny_run.run_dir).read_bytes()[:1000])
    with pytest.raises(UserError, match="truncated, corrupt or not a divrec checkpoint"):
        rec.load_state(corrupt)
    with pytest.raises(UserError, match=r"model\._target_ differs"):
        rec.load_state(ckpt(knn_run))
    assert rec.recommend(history, k=K) == before  # the old model is kept
    other = torch.load(ckpt(tiny_run.run_dir), weights_only=True)
    other["state_dict"] = {k: v + 0.5 if v.is_floating_point() else v for k, v in other["state_dict"].items()}
    torch.save(other, tmp_path / "other.ckpt")
    rec.load_state(tmp_path / "other.ckpt")
    assert rec.recommend(history, k=K)[0].scores != before[0].scores
    rec.load_state(ckpt(tiny_run.run_dir))
    assert rec.recommend(history, k=K) == before


def test_recommend_input_file_writes_one_list_per_line(tmp_path: Path, tiny_run: Run, sasrec: Recommender) -> None:
    a, b = sasrec.item_ids[1:3].tolist()
    user = str(sasrec.data.user_raw_ids[0])
    lines = [{"history": [a, "nope", b]}, {"history": [], "user": "stranger", "k": 2}, {"history": [], "user": user}]
    source = tmp_path / "histories.jsonl"
    source.write_text("\n".join(json.dumps(line) for line in lines[:2]) + "\n\n" + json.dumps(lines[2]) + "\n")
    cfg = compose_config("recommend", [
        f"ckpt_path={ckpt(tiny_run.run_dir)}", *run_paths(tmp_path / "rec", tiny_run.data_dir), f"k={K}",
        f"input={source}", f"output={tmp_path / 'recs.csv'}",
    ])
    frame = pd.read_csv(recommend(cfg), dtype={names.USER: str, names.ITEM: str})
    assert frame[names.USER].drop_duplicates().tolist() == ["line:1", "stranger", user]
    first, stranger, known = (frame[frame[names.USER] == u] for u in ("line:1", "stranger", user))
    assert first[names.ITEM].tolist() == sasrec.recommend([[a, b]], k=K)[0].items
    assert first[N_UNKNOWN].tolist() == [1] * K and first[FALLBACK].isna().all()
    assert stranger[FALLBACK].tolist() == [POPULARITY] * 2 and stranger[RANK].tolist() == [1, 2]
    assert known[names.ITEM].tolist() == sasrec.recommend_users([user], k=K)[0].items
    assert names.CATEGORIES in frame.columns


def test_user_feature_models_serve_dataset_users_and_anonymous_requests(tmp_path: Path) -> None:
    extra = ["data.source.n_user_groups=3", "model.user_features=add", "trainer.max_epochs=1", *CHEAP_RUN]
    run = tiny_train(tmp_path / "run", tmp_path / "data", seed=0, extra=extra)
    rec = load(run.run_dir, run.data_dir)
    users = [str(u) for u in rec.data.user_raw_ids[:4].tolist()]
    frame = dataset_path_lists(tmp_path, run.run_dir, run.data_dir, users)
    named = rec.recommend_users(users, k=K)
    assert_same_as_dataset_path(frame, users, named)
    offsets, items = rec.data.known_sequences()
    histories = [rec.item_ids[items[offsets[u] : offsets[u + 1]]].tolist() for u in range(4)]
    vocab = rec.data.user_feature_vocab
    features = [{name: vocab[name][rec.data.user_features[name][u]] for name in vocab} for u in range(4)]
    as_features = rec.recommend(histories, k=K, user_features=features)  # the same users, described by features
    np.testing.assert_allclose([r.scores for r in as_features], [r.scores for r in named], rtol=1e-5)
    anonymous = rec.recommend(histories, k=K)  # no user: every feature unknown (code 0)
    assert [r.scores for r in anonymous] != [r.scores for r in named]
    with pytest.raises(UserError, match=r"user_features: unknown feature\(s\) \['age'\]"):
        rec.recommend([histories[0]], user_features=[{"age": "3"}])


def test_the_checkpoints_own_reranker_is_kept_unless_overridden() -> None:
    stored = {"rerank": {"_target_": "divrec.rerank.MMR", "lambda_": 0.3}, "metrics": {"rerank_candidates": 17}}
    checkpoint = {"state_dict": {}, names.CONFIG_KEY: stored}
    own = serving_config(compose_config("recommend", ["ckpt_path=x"]), checkpoint, [])
    assert own.rerank == stored["rerank"] and own.metrics.rerank_candidates == 17
    chosen = serving_config(compose_config("recommend", ["ckpt_path=x", "rerank=dpp"]), checkpoint, ["rerank=dpp"])
    assert chosen.rerank._target_ == "divrec.rerank.DPP" and chosen.metrics.rerank_candidates == 200


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_an_ann_index_over_a_big_enough_catalog_gives_the_exact_lists(
    kind: str, tmp_path: Path, tiny_run: Run, sasrec: Recommender
) -> None:
    """``ann.min_items=1`` indexes even the tiny catalog: candidates come from faiss, are re-scored exactly, and
    (with every item a candidate) the lists and scores equal the exact path's, for the API and `divrec recommend`."""
    assert sasrec.ann is None  # below the default ann.min_items: exact
    indexed = load(tiny_run.run_dir, tiny_run.data_dir, "ann.min_items=1", f"ann.kind={kind}", "ann.candidates=64")
    assert indexed.ann is not None
    users = [str(u) for u in sasrec.data.user_raw_ids[:10].tolist()]
    exact, approx = sasrec.recommend_users(users, k=K), indexed.recommend_users(users, k=K)
    assert [r.items for r in approx] == [r.items for r in exact]
    np.testing.assert_allclose([r.scores for r in approx], [r.scores for r in exact], rtol=1e-5)
    frame = dataset_path_lists(tmp_path, tiny_run.run_dir, tiny_run.data_dir, users, "ann.min_items=1",
                               f"ann.kind={kind}", "ann.candidates=64")
    assert_same_as_dataset_path(frame, users, exact)
