from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra.utils import instantiate
from runhelpers import Run, compose_config, run_paths

from divrec import names
from divrec.errors import UserError
from divrec.recommend import RANK, SCORE, recommend


def recommend_cfg(tmp_path: Path, run: Run, *overrides: str):
    ckpt = run.run_dir / "checkpoints" / "best.ckpt"
    return compose_config(
        "recommend", [f"ckpt_path={ckpt}", *run_paths(tmp_path / "rec", run.data_dir), *overrides]
    )


def known_items(run: Run, tmp_path: Path) -> tuple[dict[str, set[str]], object]:
    cfg = compose_config("train", [*run.overrides[:-2], *run_paths(tmp_path / "x", run.data_dir)])
    data = instantiate(cfg.data).load()
    offsets, items = data.known_sequences()
    seen = {
        str(data.user_raw_ids[u]): set(data.item_raw_ids[items[offsets[u] : offsets[u + 1]]].tolist())
        for u in range(data.n_users)
    }
    return seen, data


def test_lists_exclude_every_known_item_and_are_ranked_by_score(tmp_path: Path, tiny_run: Run) -> None:
    path = recommend(recommend_cfg(tmp_path, tiny_run, "k=5", f"output={tmp_path / 'recs.parquet'}"))
    frame = pd.read_parquet(path)
    seen, data = known_items(tiny_run, tmp_path)
    assert frame[names.USER].nunique() == data.n_users
    for user, rows in frame.groupby(names.USER):
        assert sorted(rows[RANK]) == [1, 2, 3, 4, 5]
        assert not set(rows[names.ITEM]) & seen[user]  # seen items never recommended
        assert rows[names.ITEM].is_unique
        assert np.all(np.diff(rows.sort_values(RANK)[SCORE].to_numpy()) <= 0)
    assert names.CATEGORIES in frame.columns  # synthetic items have categories


def test_unknown_users_are_reported_not_dropped_silently(tmp_path: Path, tiny_run: Run) -> None:
    out = tmp_path / "recs.csv"
    recommend(recommend_cfg(tmp_path, tiny_run, "users=[0,1,nobody]", f"output={out}"))
    frame = pd.read_csv(out, dtype={names.USER: str, names.ITEM: str})
    assert set(frame[names.USER]) == {"0", "1"}
    assert (out.parent / "recs.csv.unknown_users.txt").read_text().split() == ["nobody"]


def test_json_output_and_unknown_format(tmp_path: Path, tiny_run: Run) -> None:
    out = recommend(recommend_cfg(tmp_path, tiny_run, "users=[3]", "k=2", f"output={tmp_path / 'r.json'}"))
    assert len(pd.read_json(out, lines=True)) == 2
    with pytest.raises(UserError, match=r"unknown format '\.txt'"):
        recommend(recommend_cfg(tmp_path, tiny_run, f"output={tmp_path / 'r.txt'}"))
    assert not (tmp_path / "r.txt").exists()


def test_known_sequences_are_the_longest_known_prefix(tmp_path: Path, tiny_run: Run) -> None:
    _, data = known_items(tiny_run, tmp_path)
    offsets, items = data.known_sequences()
    for row, user in enumerate(data.test.users.tolist()):
        expected = np.append(data.test.history(row), data.test.targets[row])
        np.testing.assert_array_equal(items[offsets[user] : offsets[user + 1]], expected)


@pytest.mark.parametrize(
    "rerank",
    [[], ["rerank=mmr", "rerank.lambda_=0.999", "rerank.relevance=softmax", "rerank.aggregate=sum",
          "metrics.rerank_candidates=12"]],
)
def test_chunked_catalog_scoring_gives_the_same_lists(tmp_path: Path, tiny_run: Run, rerank: list) -> None:
    """metrics.eval_chunk_size: no (users x catalog) score matrix, the same items, ranks and scores."""
    plain = pd.read_parquet(recommend(recommend_cfg(tmp_path, tiny_run, "k=6", *rerank,
                                                    f"output={tmp_path / 'plain.parquet'}")))
    chunked = pd.read_parquet(recommend(recommend_cfg(tmp_path, tiny_run, "k=6", *rerank, "metrics.eval_chunk_size=7",
                                                      f"output={tmp_path / 'chunked.parquet'}")))
    assert len(plain) == len(chunked) > 0
    pd.testing.assert_frame_equal(plain.drop(columns=SCORE), chunked.drop(columns=SCORE))
    # the same fp32 dot products summed in another order: equal to rounding (absolute for scores near zero)
    np.testing.assert_allclose(plain[SCORE], chunked[SCORE], rtol=1e-6, atol=1e-7)
