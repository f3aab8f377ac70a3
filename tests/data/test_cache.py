"""prepare_dataset + cache: hits, content/config keys, atomic writes, corrupt files rebuilt, nothing partial."""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from datahelpers import leftovers

from divrec.data import cache
from divrec.data.errors import DataError
from divrec.data.prepare import prepare_dataset
from divrec.data.preprocess import Preprocessing
from divrec.data.sources import MovieLens100K, RecBoleAtomic, S3RecSequences
from divrec.data.splits import GlobalTemporal, LeaveOneOut
from divrec.data.synthetic import Synthetic
from divrec.data.types import ProcessedData

SOURCE = S3RecSequences(name="toy", sequence_file="toy.txt", attribute_file="toy.json")


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "data" / "toy"
    folder.mkdir(parents=True)
    (folder / "toy.txt").write_text("1 1 2 3 4\n2 2 3 5\n3 4 1 2 3 5\n4 9 8\n")
    (folder / "toy.json").write_text('{"1": [7], "2": [7, 8], "3": [9], "5": []}')
    return tmp_path / "data"


def run(data_dir: Path, preprocessing: Preprocessing | None = None, source=SOURCE) -> ProcessedData:
    return prepare_dataset(source, preprocessing or Preprocessing(), LeaveOneOut(), data_dir, None, data_dir / "cache")


def assert_same(a: ProcessedData, b: ProcessedData) -> None:
    for field in dataclasses.fields(ProcessedData):
        x, y = getattr(a, field.name), getattr(b, field.name)
        if field.name in ("val", "test"):
            for f in dataclasses.fields(x):
                np.testing.assert_array_equal(getattr(x, f.name), getattr(y, f.name))
        elif field.name == "user_features":
            assert x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x)
        elif isinstance(x, np.ndarray):
            np.testing.assert_array_equal(x, y)
            assert x.dtype.kind == y.dtype.kind
        else:
            assert x == y


def cache_files(data_dir: Path) -> list[str]:
    return leftovers(data_dir / "cache")


def test_cache_hit_round_trip(data_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="divrec.data.prepare"):
        first = run(data_dir)
        second = run(data_dir)
    assert_same(first, second)
    assert "cache miss" in caplog.records[-2].message and "cache hit" in caplog.records[-1].message
    assert "toy: 4 users, 7 items, 14 interactions; train 8 / val 3 / test 3" in caplog.records[-1].message
    assert len(cache_files(data_dir)) == 1 and cache_files(data_dir)[0].startswith("toy-")
    assert first.item_category_offsets.tolist() == [0, 0, 1, 3, 4, 4, 4, 4, 4]  # row 0 = padding; items 1-3
    assert list(first.category_names) == ["7", "8", "9"]


def test_real_dataset_round_trip(mirror: Path, tmp_path: Path) -> None:
    args = (MovieLens100K(), Preprocessing(), GlobalTemporal(), tmp_path / "data", mirror, tmp_path / "cache")
    built, loaded = prepare_dataset(*args), prepare_dataset(*args)
    assert_same(built, loaded)
    assert loaded.item_titles is not None and loaded.item_titles[0] == "" and len(loaded.item_titles) == 1683
    assert loaded.user_feature_vocab["gender"] == ["<unk>", "F", "M"]
    assert set(loaded.user_features) == {"age", "gender", "occupation"}
    assert loaded.train_ratings is not None and len(loaded.train_ratings) == len(loaded.train_items)
    assert loaded.test.target_ratings is not None and set(np.unique(loaded.test.target_ratings)) <= {1, 2, 3, 4, 5}


def test_changed_config_or_content_changes_key(data_dir: Path) -> None:
    run(data_dir)
    run(data_dir, Preprocessing(user_core=3))
    assert len(cache_files(data_dir)) == 2
    (data_dir / "toy" / "toy.txt").write_text("1 1 2 3 4\n2 2 3 5\n3 4 1 2 3 5\n")
    assert run(data_dir).n_users == 3 and len(cache_files(data_dir)) == 3
    folder = data_dir / "toy"
    keys = {cache.cache_key(SOURCE, Preprocessing(), LeaveOneOut(), folder)}
    keys.add(cache.cache_key(SOURCE, Preprocessing(drop_duplicates=False), LeaveOneOut(), folder))
    keys.add(cache.cache_key(SOURCE, Preprocessing(), GlobalTemporal(), folder))
    keys.add(cache.cache_key(dataclasses.replace(SOURCE, attribute_file=None), Preprocessing(), LeaveOneOut(), folder))
    assert len(keys) == 4
    synthetic = [cache.cache_key(Synthetic(seed=s), Preprocessing(), LeaveOneOut(), None) for s in (1, 1, 2)]
    assert synthetic[0] == synthetic[1] != synthetic[2]


def test_val_items_is_part_of_the_key(data_dir: Path) -> None:
    def prepare(val_items: int) -> ProcessedData:
        split = LeaveOneOut(val_items=val_items)
        return prepare_dataset(SOURCE, Preprocessing(), split, data_dir, None, data_dir / "cache")

    one, two = prepare(1), prepare(2)
    assert len(cache_files(data_dir)) == 2  # no shared entry: each setting wrote its own file
    assert (len(one.val), len(two.val)) == (3, 5)  # the users with 4 and 5 items get a second validation row
    assert_same(prepare(2), two)  # cache hits return each setting's own split
    assert_same(prepare(1), one)
    assert len(cache_files(data_dir)) == 2
    keys = {cache.cache_key(SOURCE, Preprocessing(), LeaveOneOut(val_items=k), data_dir / "toy") for k in (1, 2, 3)}
    assert len(keys) == 3


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "other_key", "missing_array"])
def test_corrupt_cache_is_rebuilt(damage: str, data_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    good = run(data_dir)
    (path,) = (data_dir / "cache").glob("*.npz")
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "garbage":
        path.write_bytes(b"\x00garbage" * 100)
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "other_key":
        other = data_dir / "other"
        run(data_dir, Preprocessing(user_core=3))
        shutil.move(next(p for p in (data_dir / "cache").glob("*.npz") if p != path), other)
        shutil.move(other, path)
    else:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files if k != "train_items"}
        with open(path, "wb") as f:
            np.savez(f, **arrays)
    with caplog.at_level(logging.WARNING, logger="divrec.data.prepare"):
        rebuilt = run(data_dir)
    assert any("is unusable" in r.message and "rebuilding" in r.message for r in caplog.records)
    assert_same(good, rebuilt)
    assert cache_files(data_dir) == [path.name]  # rebuilt in place, no temp files
    assert_same(good, cache.load(path, cache.cache_key(SOURCE, Preprocessing(), LeaveOneOut(), data_dir / "toy"))[0])


def test_errors_leave_no_cache(data_dir: Path) -> None:
    (data_dir / "toy" / "toy.txt").write_text("1 1 2\n2 x\n")
    with pytest.raises(DataError, match=r"toy\.txt line 2"):
        run(data_dir)
    assert not (data_dir / "cache").exists()
    with pytest.raises(DataError, match=r"rating_threshold=3 is set but this source has no ratings"):
        run(data_dir, Preprocessing(rating_threshold=3), source=Synthetic())
    assert not (data_dir / "cache").exists()


def test_failed_write_leaves_nothing(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(cache.os, "replace", broken)
    with pytest.raises(OSError, match="disk full"):
        run(data_dir)
    assert not (data_dir / "cache").exists()


def test_no_cache_dir(data_dir: Path) -> None:
    data = prepare_dataset(SOURCE, Preprocessing(), LeaveOneOut(), data_dir, None, None)
    assert data.n_users == 4 and not (data_dir / "cache").exists()


def test_hydra_built_objects_have_the_same_key(data_dir: Path) -> None:
    """Constructed from YAML-like config (lists arrive as ListConfig) the key equals the Python-built one."""
    hydra_utils = pytest.importorskip("hydra.utils")
    omegaconf = pytest.importorskip("omegaconf")
    cfg = omegaconf.OmegaConf.create(
        {
            "_target_": "builtins.dict",
            "source": {"_target_": "divrec.data.sources.RecBoleAtomic", "name": "toy", "user_feature_fields": ["a"]},
            "preprocessing": {"_target_": "divrec.data.preprocess.Preprocessing", "user_core": 5},
            "split": {"_target_": "divrec.data.splits.GlobalTemporal", "val_quantile": 0.7},
        }
    )
    built = hydra_utils.instantiate(cfg)
    by_hydra = cache.cache_key(built["source"], built["preprocessing"], built["split"], data_dir / "toy")
    direct = (RecBoleAtomic(name="toy", user_feature_fields=["a"]), Preprocessing(user_core=5))
    assert by_hydra == cache.cache_key(*direct, GlobalTemporal(val_quantile=0.7), data_dir / "toy")
