"""Attention images, explanation tables and the embedding projector in a run folder, read back with TensorBoard's
event reader; and the switches that turn them off or on during fit."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from runhelpers import TINY_TRAIN, Run, compose_config, run_paths
from tbreader import events
from tensorboard.util import tensor_util

from divrec.inspection.callbacks import ATTENTION, EMBEDDINGS, EXPLAIN, AttentionMaps
from divrec.pipeline import train


def images(run_dir: Path) -> dict[str, list]:
    run = events(run_dir)
    return {tag: run.Images(tag) for tag in run.Tags()["images"]}


def test_attention_images_for_each_fixed_user_and_layer(tiny_run: Run) -> None:
    cfg = compose_config("train", tiny_run.overrides)
    found = images(tiny_run.run_dir)
    users = {tag.split("/")[1] for tag in found}
    assert len(users) == AttentionMaps.AUTO_USERS  # users: auto
    assert set(found) == {f"{ATTENTION}/{u}/layer_{layer}" for u in users for layer in range(cfg.model.n_layers)}
    for series in found.values():
        assert len(series) == 1  # only for the reported model (every_n_epochs=0)
        pixels = np.asarray(Image.open(io.BytesIO(series[0].encoded_image_string)))
        assert pixels.shape[0] > 100 and pixels.shape[1] > 100
        assert pixels.std() > 10  # a drawn heatmap, not a blank canvas


def test_explanation_tables_for_each_fixed_user(tiny_run: Run) -> None:
    cfg = compose_config("train", tiny_run.overrides)
    run = events(tiny_run.run_dir)
    tags = [t for t in run.Tags()["tensors"] if t.startswith(f"{EXPLAIN}/")]
    assert len(tags) == AttentionMaps.AUTO_USERS  # users: auto
    for tag in tags:
        text = tensor_util.make_ndarray(run.Tensors(tag)[0].tensor_proto).item().decode()
        rows = [line for line in text.splitlines() if line.startswith("| ") and line[2].isdigit()]
        assert len(rows) == cfg.callbacks.attention_maps.k
        assert all("(+" in row or "(-" in row for row in rows)  # every recommendation has its reasons


def test_projector_holds_the_best_models_item_embeddings_with_labels(tiny_run: Run) -> None:
    board = tiny_run.run_dir / "tensorboard"
    config = (board / "projector_config.pbtxt").read_text()
    assert f'tensor_name: "{EMBEDDINGS}' in config
    folder = next(board.glob(f"*/{EMBEDDINGS}"))
    metadata = (folder / "metadata.tsv").read_text().splitlines()
    vectors = np.loadtxt(folder / "tensors.tsv", delimiter="\t")
    assert metadata[0].split("\t") == ["item_id", "title", "categories", "train_count"]
    cfg = compose_config("train", tiny_run.overrides)
    assert vectors.shape == (len(metadata) - 1, cfg.model.hidden_size)
    counts = [int(line.split("\t")[3]) for line in metadata[1:]]
    assert counts == sorted(counts, reverse=True)  # most frequent training items first
    assert all(line.split("\t")[2].startswith("c") for line in metadata[1:])  # synthetic categories c0, c1, ...
    best = torch.load(tiny_run.run_dir / "checkpoints" / "best.ckpt", weights_only=True)["state_dict"]
    table = best["backbone.tower.item_emb.weight"].numpy()
    rows = [np.flatnonzero(np.all(np.isclose(table, v, atol=1e-4), axis=1)) for v in vectors]
    assert all(len(r) == 1 and r[0] >= 1 for r in rows)  # real items of the best checkpoint, each once
    assert len({int(r[0]) for r in rows}) == len(rows)


def test_switches_off_and_logging_during_fit(tmp_path: Path) -> None:
    off = [*TINY_TRAIN, "callbacks.attention_maps.users=0", "callbacks.projector=null"]
    train(compose_config("train", [*off, *run_paths(tmp_path / "off", tmp_path / "data")]))
    assert not images(tmp_path / "off")
    assert not (tmp_path / "off" / "tensorboard" / "projector_config.pbtxt").exists()

    during = ["callbacks.attention_maps.users=1", "callbacks.attention_maps.every_n_epochs=1"]
    bert = ["model=bert4rec", "task=cloze"]  # the query reads [MASK]: images over what the model reads
    overrides = [*TINY_TRAIN, *bert, *during, *run_paths(tmp_path / "fit", tmp_path / "data")]
    train(compose_config("train", overrides))
    found = images(tmp_path / "fit")
    assert len(found) == 1  # one user, one layer
    (series,) = found.values()
    assert len(series) == 3  # after each of the 2 epochs, then for the reported model
