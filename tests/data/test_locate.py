"""Locating datasets: local folder, mirror, official download (all or nothing), and the offline error."""

from __future__ import annotations

import hashlib
import io
import urllib.error
import zipfile
from pathlib import Path

import pytest
from datahelpers import leftovers

from divrec.data import download as download_module
from divrec.data.errors import DataError
from divrec.data.locate import locate
from divrec.data.sources import MovieLens100K, S3RecSequences

TINY = {
    "u.data": "1\t10\t5\t100\n1\t11\t3\t101\n2\t10\t4\t102\n",
    "u.item": "10|Ten (1990)|01-Jan-1990||http://x|0|1\n11|Eleven (1991)|01-Jan-1991||http://y|1|1\n",
    "u.user": "1|30|F|writer|1\n2|60|M|other|2\n",
    "u.genre": "unknown|0\nAction|1\n\n",
}


def tiny_zip(path: Path, members: dict[str, str] | None = None) -> str:
    """Write an ml-100k-shaped zip (plus a directory entry and a path-escaping member); return its md5."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ml-100k/", "")
        for name, text in (members or TINY).items():
            zf.writestr(f"ml-100k/{name}", text)
        zf.writestr("ml-100k/../evil.txt", "must not be extracted")
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def official(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Point MovieLens100K's official download at a local tiny zip (file:// URL) with the right md5."""
    archive = tmp_path / "server" / "ml-100k.zip"
    archive.parent.mkdir()
    monkeypatch.setattr(MovieLens100K, "md5", tiny_zip(archive))
    monkeypatch.setattr(MovieLens100K, "url", archive.as_uri())
    return archive


def test_local_then_mirror(mirror: Path, tmp_path: Path) -> None:
    source = MovieLens100K()
    assert locate(source, tmp_path / "data", mirror, download=False) == mirror / "ml-100k"
    local = tmp_path / "data" / "ml-100k" / "raw"
    local.mkdir(parents=True)
    for name in ("u.data", "u.item", "u.user", "u.genre"):
        (local / name).write_text(TINY[name])
    assert locate(source, tmp_path / "data", mirror, download=False) == tmp_path / "data" / "ml-100k"


def test_download_extracts_verified_zip(official: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    folder = locate(MovieLens100K(), data_dir, None, download=True)
    assert folder == data_dir / "ml-100k"
    assert leftovers(data_dir) == ["ml-100k", "ml-100k/raw", *[f"ml-100k/raw/{n}" for n in sorted(TINY)]]
    assert not list(tmp_path.rglob("evil.txt"))
    data = MovieLens100K().load(folder)
    assert data.interactions["item_id"].tolist() == ["10", "11", "10"]
    assert data.item_features.loc["11", "categories"] == ["unknown", "Action"]
    assert data.user_features["age"].tolist() == ["25-34", "56+"]


def test_download_into_existing_folder_keeps_other_files(official: Path, tmp_path: Path) -> None:
    (tmp_path / "data" / "ml-100k").mkdir(parents=True)
    (tmp_path / "data" / "ml-100k" / "notes.txt").write_text("mine")
    locate(MovieLens100K(), tmp_path / "data", None, download=True)
    assert (tmp_path / "data" / "ml-100k" / "notes.txt").read_text() == "mine"
    assert (tmp_path / "data" / "ml-100k" / "raw" / "u.data").is_file()


def test_md5_mismatch_leaves_nothing(official: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(MovieLens100K, "md5", "0" * 32)
    with pytest.raises(DataError, match=r"download failed: download of file://.* has md5 [0-9a-f]{32}, expected 0{32}"):
        locate(MovieLens100K(), tmp_path / "data", None, download=True)
    assert not (tmp_path / "data").exists()


def test_bad_zip_and_missing_members_leave_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    archive = tmp_path / "broken.zip"
    archive.write_bytes(b"PK\x03\x04 definitely not a zip")
    monkeypatch.setattr(MovieLens100K, "url", archive.as_uri())
    monkeypatch.setattr(MovieLens100K, "md5", hashlib.md5(archive.read_bytes()).hexdigest())
    with pytest.raises(DataError, match=r"not a valid zip"):
        locate(MovieLens100K(), tmp_path / "data", None, download=True)
    assert not (tmp_path / "data").exists()
    md5 = tiny_zip(archive, {k: v for k, v in TINY.items() if k != "u.user"})
    monkeypatch.setattr(MovieLens100K, "md5", md5)
    with pytest.raises(DataError, match=r"does not contain \['raw/u\.user'\]"):
        locate(MovieLens100K(), tmp_path / "data", None, download=True)
    assert not (tmp_path / "data").exists()


def test_absent_offline_names_all_three_options(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def offline(url: str, timeout: float) -> io.BytesIO:
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(download_module, "urlopen", offline)
    data_dir, mirror = tmp_path / "data", tmp_path / "mirror"
    with pytest.raises(DataError) as err:
        locate(MovieLens100K(), data_dir, mirror, download=True)
    message = str(err.value)
    assert "\n" not in message
    expected = (
        "dataset 'ml-100k' not found (needs ['raw/u.data', 'raw/u.item', 'raw/u.user', 'raw/u.genre']): "
        f"looked in {data_dir / 'ml-100k'} (paths.data_dir) and {mirror / 'ml-100k'} "
        "(paths.data_mirror / DIVREC_DATA_MIRROR), download failed: "
    )
    assert message.startswith(expected)
    assert "no network" in message and message.endswith("; put the files in one of these folders or go online")
    assert leftovers(tmp_path) == []
    with pytest.raises(DataError, match=r"no mirror \(.*unset\), download failed: .*no network"):
        locate(MovieLens100K(), data_dir, None, download=True)
    assert leftovers(tmp_path) == []


def test_no_download_available_or_disabled(tmp_path: Path) -> None:
    source = S3RecSequences(name="lastfm", sequence_file="LastFM.txt")
    with pytest.raises(DataError, match=r"dataset 'lastfm' not found .*no official download exists for it; put"):
        locate(source, tmp_path, None, download=True)
    with pytest.raises(DataError, match=r"download disabled \(download=false\)"):
        locate(MovieLens100K(), tmp_path, None, download=False)
    assert leftovers(tmp_path) == []
