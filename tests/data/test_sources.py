"""Source loaders: real dataset counts (from the shared mirror) and one-line errors on malformed input."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from datahelpers import leftovers

from divrec.data.errors import DataError
from divrec.data.locate import locate
from divrec.data.prepare import prepare_dataset
from divrec.data.preprocess import Preprocessing
from divrec.data.sources import AmazonReviews, MovieLens100K, RecBoleAtomic, S3RecSequences, TabularInteractions
from divrec.data.splits import LeaveOneOut
from divrec.names import CATEGORIES, ITEM, RATING, TIME, TITLE, USER

BEAUTY = S3RecSequences(name="amazon-beauty", sequence_file="Beauty.txt", attribute_file="Beauty_item2attributes.json")
LASTFM = S3RecSequences(name="lastfm", sequence_file="LastFM.txt", attribute_file="LastFM_item2attributes.json")
MUSICAL = AmazonReviews(name="amazon-musical-instruments", file="reviews_Musical_Instruments_5.json.gz")
RECBOLE_ML100K = RecBoleAtomic(name="ml-100k", prefix="recbole/ml-100k")


def load(source, mirror: Path, tmp_path: Path):
    return source.load(locate(source, tmp_path / "data", mirror, download=False))


def test_movielens_100k(mirror: Path, tmp_path: Path) -> None:
    data = load(MovieLens100K(), mirror, tmp_path)
    inter = data.interactions
    assert len(inter) == 100_000 and inter[USER].nunique() == 943 and inter[ITEM].nunique() == 1682
    assert inter[RATING].value_counts().sort_index().tolist() == [6110, 11370, 27145, 34174, 21201]
    assert (inter[TIME].min(), inter[TIME].max()) == (874724710, 893286638)
    items = data.item_features
    assert len(items) == 1682 and items.loc["1", TITLE] == "Toy Story (1995)"
    assert items.loc["1", CATEGORIES] == ["Animation", "Children's", "Comedy"]
    assert len({c for cats in items[CATEGORIES] for c in cats}) == 19
    assert items[CATEGORIES].map(len).min() >= 1
    users = data.user_features
    assert len(users) == 943 and users.loc["1"].tolist() == ["18-24", "M", "technician"]
    assert set(users["gender"]) == {"M", "F"} and users["occupation"].nunique() == 21
    assert set(users["age"]) <= {"<18", "18-24", "25-34", "35-44", "45-49", "50-55", "56+"}


def test_recbole_atomic_equals_raw_ml100k(mirror: Path, tmp_path: Path) -> None:
    raw = load(MovieLens100K(), mirror, tmp_path)
    atomic = load(RECBOLE_ML100K, mirror, tmp_path)
    columns = [USER, ITEM, RATING, TIME]

    def rows(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame[columns].astype({RATING: int, TIME: np.int64})
        return frame.sort_values(columns, ignore_index=True)

    pd.testing.assert_frame_equal(rows(atomic.interactions), rows(raw.interactions), check_dtype=False)
    genres = atomic.item_features[CATEGORIES]
    assert genres.loc["1"] == ["Animation", "Children's", "Comedy"] and len(atomic.item_features) == 1682
    assert atomic.item_features.loc["1", TITLE] == "Toy Story"
    assert set(atomic.user_features.columns) == {"age", "gender", "occupation", "zip_code"}


@pytest.mark.parametrize(
    ("source", "users", "items", "interactions", "attributes"),
    [(BEAUTY, 22_363, 12_101, 198_502, 637), (LASTFM, 1_090, 3_646, 52_551, 388)],
)
def test_s3rec_counts(source, users, items, interactions, attributes, mirror: Path, tmp_path: Path) -> None:
    data = load(source, mirror, tmp_path)
    inter = data.interactions
    assert (len(inter), inter[USER].nunique(), inter[ITEM].nunique()) == (interactions, users, items)
    lengths = inter.groupby(USER, sort=False).size()
    assert lengths.min() == 5
    positions = inter.groupby(USER, sort=False)[TIME].agg(["min", "max"])
    assert (positions["min"] == 0).all() and (positions["max"] == lengths - 1).all()
    assert len({c for cats in data.item_features[CATEGORIES] for c in cats}) == attributes


def test_s3rec_ids_survive_preprocessing(mirror: Path, tmp_path: Path) -> None:
    """Ids by first appearance reproduce S3-Rec's own numbering, and the test target is each line's last item."""
    data = prepare_dataset(LASTFM, Preprocessing(), LeaveOneOut(), tmp_path / "data", mirror, cache_dir=None)
    assert data.item_raw_ids[1:].tolist() == [str(i) for i in range(1, data.n_items + 1)]
    first = (mirror / "lastfm" / "LastFM.txt").read_text().splitlines()[0].split()
    assert data.test.targets[0] == int(first[-1]) and data.val.targets[0] == int(first[-2])


def test_musical_instruments_counts(mirror: Path, tmp_path: Path) -> None:
    inter = load(MUSICAL, mirror, tmp_path).interactions
    assert (len(inter), inter[USER].nunique(), inter[ITEM].nunique()) == (10_261, 1_429, 900)
    assert inter[RATING].value_counts().sort_index().tolist() == [217, 250, 772, 2084, 6938]
    assert not inter.duplicated([USER, ITEM]).any()


def test_s3rec_malformed_line(tmp_path: Path) -> None:
    folder = tmp_path / "data" / "amazon-beauty"
    folder.mkdir(parents=True)
    lines = [f"{u} {u + 1} {u + 2} {u + 3}" for u in range(1, 17)]
    (folder / "Beauty.txt").write_text("\n".join([*lines[:16], "abc 1 2", "18 1 2"]) + "\n")
    source = S3RecSequences(name="amazon-beauty", sequence_file="Beauty.txt")
    cache_dir = tmp_path / "cache"
    with pytest.raises(DataError) as err:
        prepare_dataset(source, Preprocessing(), LeaveOneOut(), tmp_path / "data", None, cache_dir, download=False)
    message = str(err.value)
    assert "\n" not in message and str(folder / "Beauty.txt") in message
    expected = """Beauty.txt line 17: expected "user_id item_id ..." integers, got 'abc 1 2'; fix or delete that line"""
    assert message.endswith(expected)
    assert leftovers(cache_dir) == []


@pytest.mark.parametrize("bad", ["7", "1 2 x3", "1 -2 3", "1 2 " + "9" * 200 + "z"])
def test_s3rec_bad_tokens(bad: str, tmp_path: Path) -> None:
    (tmp_path / "s.txt").write_text(f"1 2 3\n\n{bad}\n")
    with pytest.raises(DataError, match=r"s\.txt line 3: expected") as err:
        S3RecSequences(name="x", sequence_file="s.txt").load(tmp_path)
    assert len(str(err.value)) < 300


def test_s3rec_bad_attribute_json(tmp_path: Path) -> None:
    (tmp_path / "s.txt").write_text("1 2 3\n")
    (tmp_path / "a.json").write_text('{"2": [1, 2],\n "3": [1,, 2]}')
    with pytest.raises(DataError, match=r"a\.json line 2: invalid JSON"):
        S3RecSequences(name="x", sequence_file="s.txt", attribute_file="a.json").load(tmp_path)


def test_amazon_malformed_json_line(tmp_path: Path) -> None:
    good = {"reviewerID": "u1", "asin": "i1", "overall": 5.0, "unixReviewTime": 100}
    with gzip.open(tmp_path / "r.json.gz", "wt") as f:
        f.write(json.dumps(good) + "\n" + json.dumps(good) + "\n" + '{"reviewerID": "u2", "asin": \n')
    with pytest.raises(DataError, match=r"r\.json\.gz line 3: invalid JSON"):
        AmazonReviews(name="x", file="r.json.gz").load(tmp_path)
    (tmp_path / "r.json").write_text(json.dumps({"reviewer": "u1", "asin": "i1"}) + "\n")
    with pytest.raises(DataError, match=r"line 1: no field 'reviewerID' .*set data\.source\.user_field"):
        AmazonReviews(name="x", file="r.json").load(tmp_path)


def test_tabular_csv_and_parquet(tmp_path: Path) -> None:
    table = pd.DataFrame({"uid": ["a", "a", "b"], "iid": ["007", "8", "007"], "ts": [3, 1, 2], "stars": [1, 5, 4]})
    table.to_csv(tmp_path / "inter.csv", index=False)
    table.to_parquet(tmp_path / "inter.parquet")
    pd.DataFrame({"iid": ["007", "8"], "cats": ["x|y", ""], "name": ["Bond", "Eight"]}).to_csv(
        tmp_path / "items.csv", index=False
    )
    options = {"user_col": "uid", "item_col": "iid", "time_col": "ts", "rating_col": "stars"}
    for path in ("inter.csv", str(tmp_path / "inter.parquet")):  # relative and absolute
        features = {"item_features_path": "items.csv", "categories_col": "cats", "title_col": "name"}
        source = TabularInteractions(path=path, **options, **features)
        data = source.load(tmp_path)
        assert data.interactions[ITEM].tolist() == ["007", "8", "007"]
        assert data.interactions[TIME].tolist() == [3, 1, 2] and data.interactions[RATING].tolist() == [1, 5, 4]
        assert data.item_features.loc["007", CATEGORIES] == ["x", "y"] and data.item_features.loc["8", CATEGORIES] == []
        assert data.item_features.loc["8", TITLE] == "Eight"


def test_tabular_missing_columns(tmp_path: Path) -> None:
    (tmp_path / "csv").mkdir()
    pd.DataFrame({"user": [1], "item": [2], "when": [3]}).to_csv(tmp_path / "csv" / "inter.csv", index=False)
    source = TabularInteractions(path="inter.csv", user_col="uid", item_col="item", time_col="ts")
    with pytest.raises(DataError) as err:
        prepare_dataset(source, Preprocessing(), LeaveOneOut(), tmp_path, None, tmp_path / "cache")
    assert leftovers(tmp_path) == ["csv", "csv/inter.csv"]
    message = str(err.value)
    assert "\n" not in message
    assert "missing column(s) ['uid', 'ts'] (found ['user', 'item', 'when'])" in message
    assert "set data.source.user_col, data.source.time_col to one of ['user', 'item', 'when']" in message


def test_tabular_date_strings_and_empty_id(tmp_path: Path) -> None:
    (tmp_path / "i.csv").write_text("u,i,t\n1,2,2020-01-02\n1,3,2020-01-01\n")
    times = TabularInteractions(path="i.csv", user_col="u", item_col="i", time_col="t").load(tmp_path).interactions
    assert times[TIME].iloc[0] > times[TIME].iloc[1]
    (tmp_path / "e.csv").write_text("u,i\n1,2\n,3\n")
    with pytest.raises(DataError, match=r"row 2 has no value in column 'u' \(data\.source\.user_col\)"):
        TabularInteractions(path="e.csv", user_col="u", item_col="i").load(tmp_path)


def test_recbole_missing_field(tmp_path: Path) -> None:
    (tmp_path / "x.inter").write_text("uid:token\titem_id:token\n1\t2\n")
    with pytest.raises(DataError, match=r"missing column\(s\) \['user_id'\] .*set data\.source\.user_field"):
        RecBoleAtomic(name="x").load(tmp_path)
    (tmp_path / "x.inter").write_text("user_id:token\titem_id:token\n1\t2\n")
    (tmp_path / "x.item").write_text("item_id:token\tgenres:token_seq\n2\ta b\n")
    data = RecBoleAtomic(name="x").load(tmp_path)
    assert TIME not in data.interactions and CATEGORIES not in data.item_features  # auto-detect finds no category
    explicit = RecBoleAtomic(name="x", categories_field="genres").load(tmp_path).item_features
    assert explicit.loc["2", CATEGORIES] == ["a", "b"]
    with pytest.raises(DataError, match=r"set data\.source\.categories_field"):
        RecBoleAtomic(name="x", categories_field="class").load(tmp_path)
