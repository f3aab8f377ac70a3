"""``experiment=ensemble``: finished runs ranked by the weighted mean of their log-softmax scores."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from runhelpers import QUIET, TINY_DATA, Run, compose_config, run_paths

from divrec import names
from divrec.checkpointing import read_checkpoint
from divrec.models import ModelConfigError
from divrec.models.ease import EASE
from divrec.pipeline import build, checkpoint_config, evaluate, load_weights, train
from divrec.recommend import user_sequences

EVAL = [*TINY_DATA, *QUIET, "trainer=cpu"]


def member(run_dir: Path, data_dir: Path, name: str, seed: int, *extra: str) -> Run:
    """A finished tiny run of ``model=name`` (two CPU epochs; closed-form baselines have no hidden size)."""
    width = [] if name in ("pop", "itemknn", "ease") else ["model.hidden_size=16"]
    overrides = (f"model={name}", *EVAL, "trainer.max_epochs=2", "trainer.precision=32-true", "data.batch_size=32",
                 *width, *extra, f"seed={seed}", *run_paths(run_dir, data_dir))  # fp32 queries, as the ensemble's
    return Run(run_dir, data_dir, train(compose_config("train", overrides)), overrides)


@pytest.fixture(scope="module")
def members(tmp_path_factory: pytest.TempPathFactory) -> list[Run]:
    root = tmp_path_factory.mktemp("members")
    names_ = ["sasrec", "gru4rec", "bert4rec"]
    return [member(root / name, root / "data", name, 0) for name in names_]  # seed 0: the same synthetic data


def ensemble_cfg(tmp_path: Path, runs: list[Run], *extra: str):
    listed = ",".join(str(r.run_dir) for r in runs)
    return compose_config("train", ["experiment=ensemble", f"model.members=[{listed}]", *EVAL, "seed=0", *extra,
                                    *run_paths(tmp_path / "run", runs[0].data_dir)])


def member_module(run: Run, tmp_path: Path):
    """The member rebuilt on its own, as ``divrec eval`` does (independent of the ensemble's code)."""
    path = str(run.run_dir / "checkpoints" / "best.ckpt")
    checkpoint = read_checkpoint(path)
    cfg = compose_config("eval", [f"ckpt_path={path}", *QUIET, "trainer=cpu", *run_paths(tmp_path, run.data_dir)])
    cfg = checkpoint_config(cfg, checkpoint, [])
    datamodule, module = build(cfg)
    load_weights(module, checkpoint, path, module.backbone.n_items)
    return datamodule.load(), module.eval()


def test_one_member_ranks_exactly_like_its_run(tmp_path: Path, members: list[Run]) -> None:
    metrics = train(ensemble_cfg(tmp_path, members[:1]))
    for key in ("test/ndcg@10", "test/hr@10", "val/ndcg@10"):
        assert metrics[key] == pytest.approx(members[0].metrics[key], abs=1e-6)  # log_softmax keeps the order
    assert metrics[names.EPOCHS] == 0


def test_scores_are_the_weighted_mean_of_the_members_log_softmax(tmp_path: Path, members: list[Run]) -> None:
    cfg = ensemble_cfg(tmp_path, members, "model.weights=[3,1,1]")
    _, ensemble = build(cfg)
    data, first = member_module(members[0], tmp_path / "m0")
    others = [member_module(run, tmp_path / f"m{i}")[1] for i, run in enumerate(members[1:], 1)]
    history, _ = user_sequences(data, np.arange(data.n_users), 8)  # (U, 8) real left-padded histories
    expected = sum(w * torch.log_softmax(m.scores(history), dim=1)
                   for w, m in zip([0.6, 0.2, 0.2], [first, *others], strict=True))
    got = ensemble.eval().scores(history)
    # fp32 kernels may sum in another order here than in the member's own module (AVX-512 host: one of 2,460 values
    # 4.5e-5 off, a few ulps of the logits' magnitude); a weighting error would be off by 1e-2 or more
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=2e-4)
    assert got.shape == (history.shape[0], data.n_items + 1)


def test_three_members_train_evaluate_and_reload_the_same(tmp_path: Path, members: list[Run]) -> None:
    metrics = train(ensemble_cfg(tmp_path, members))
    run = tmp_path / "run"
    stored = json.loads((run / names.METRICS_FILE).read_text())
    assert stored["test/ndcg@10"] == pytest.approx(metrics["test/ndcg@10"]) and 0 <= stored["test/ndcg@10"] <= 1
    again = evaluate(compose_config("eval", [f"ckpt_path={run / 'checkpoints' / 'best.ckpt'}", *QUIET, "trainer=cpu",
                                             *run_paths(tmp_path / "eval", members[0].data_dir)]))
    assert again["test/ndcg@10"] == pytest.approx(metrics["test/ndcg@10"], abs=1e-6)


def refused(tmp_path: Path, *overrides: str) -> str:
    with pytest.raises(ModelConfigError) as err:
        train(compose_config("train", ["experiment=ensemble", *EVAL, *overrides,
                                       *run_paths(tmp_path / "run", tmp_path / "data")]))
    assert not (tmp_path / "data").exists() and not (tmp_path / "run").exists()  # before any data, nothing written
    assert "\n" not in str(err.value)
    return str(err.value)


def test_bad_member_lists_are_refused_before_any_data(tmp_path: Path, members: list[Run]) -> None:
    assert "model.members is empty" in refused(tmp_path)
    assert "neither a checkpoint" in refused(tmp_path, f"model.members=[{tmp_path / 'nowhere'}]")
    one = str(members[0].run_dir)
    assert "one per member" in refused(tmp_path, f"model.members=[{one},{one}]", "model.weights=[1]")
    assert "> 0" in refused(tmp_path, f"model.members=[{one}]", "model.weights=[0]")
    assert "eval_chunk_size" in refused(tmp_path, f"model.members=[{one}]", "seed=0", "metrics.eval_chunk_size=7")


def test_members_of_other_data_and_closed_form_members_are_refused(tmp_path: Path, members: list[Run]) -> None:
    other = member(tmp_path / "other", tmp_path / "other-data", "sasrec", 1)  # seed 1: other synthetic data
    with pytest.raises(ModelConfigError, match=r"other data than this run's \(data.source.seed=0 here, 1 in"):
        train(ensemble_cfg(tmp_path / "a", [members[0], other]))
    with pytest.raises(ModelConfigError, match=r"data.source.n_items=30 here, 40 in the member"):
        train(ensemble_cfg(tmp_path / "b", members[:1], "data.source.n_items=30"))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # before any data or output
    pop = member(tmp_path / "pop", members[0].data_dir, "pop", 0)
    with pytest.raises(ModelConfigError, match=r"closed-form.*model\.normalize=zscore"):
        train(ensemble_cfg(tmp_path / "c", [members[0], pop]))
    assert "model.normalize='softmax' is not one of" in refused(
        tmp_path / "d", f"model.members=[{members[0].run_dir}]", "model.normalize=softmax")


def test_zscore_lets_closed_form_members_join_with_standardised_scores(
    tmp_path: Path, members: list[Run], monkeypatch: pytest.MonkeyPatch
) -> None:
    ease = member(tmp_path / "ease", members[0].data_dir, "ease", 0)
    alone = train(ensemble_cfg(tmp_path / "alone", [ease], "model.normalize=zscore"))
    for key in ("test/ndcg@10", "val/ndcg@10"):  # a positive affine map per row keeps EASE's ranking
        assert alone[key] == pytest.approx(ease.metrics[key], abs=1e-6)
    cfg = ensemble_cfg(tmp_path / "pair", [members[0], ease], "model.normalize=zscore", "model.weights=[1,3]")
    with monkeypatch.context() as patched:  # the member's fit is its checkpoint's: never recomputed
        patched.setattr(EASE, "fit", lambda self, data: pytest.fail("an ensemble refitted its EASE member"))
        _, ensemble = build(cfg)
    data, learned = member_module(members[0], tmp_path / "m0")
    _, fitted = member_module(ease, tmp_path / "m1")
    history, _ = user_sequences(data, np.arange(data.n_users), 8)  # (U, 8)

    def standardised(scores: torch.Tensor) -> torch.Tensor:  # written out in float64, independent of the module
        s = scores.double()
        items = s[:, 1:]
        return (s - items.mean(1, keepdim=True)) / items.std(1, unbiased=False, keepdim=True)

    expected = 0.25 * standardised(learned.scores(history)) + 0.75 * standardised(fitted.scores(history))
    got = ensemble.eval().scores(history)
    torch.testing.assert_close(got.double(), expected, rtol=1e-4, atol=5e-4)  # fp32 summation order, as above
    assert got[:, 1:].mean().abs() < 1e-3  # each member's item scores centred, so their weighted sum too


def test_an_ensemble_with_a_recurrent_member_exports_to_onnx_with_parity(tmp_path: Path, members: list[Run]) -> None:
    from divrec.serving.export import export

    train(ensemble_cfg(tmp_path, members))  # sasrec + gru4rec (export-only forward) + bert4rec (cloze query)
    out = tmp_path / "export" / "model.onnx"
    cfg = compose_config("export", [f"ckpt_path={tmp_path / 'run' / 'checkpoints' / 'best.ckpt'}", f"output={out}",
                                    "format=onnx", "parity_users=16", *run_paths(tmp_path / "x", members[0].data_dir)])
    assert export(cfg) == out and out.is_file()  # export runs the file and refuses it if it differs from eager


def reference_val_ndcg(data, modules, weights: list[float], max_len: int) -> float:
    """Validation NDCG@10 of the z-scored weighted sum, one row at a time in float64 (independent of the module)."""
    total = 0.0
    for row in range(len(data.val)):
        history = data.val.history(row)
        query = torch.zeros(1, max_len, dtype=torch.long)
        recent = torch.from_numpy(history[-max_len:].astype(np.int64))
        query[0, max_len - len(recent):] = recent
        s = torch.zeros(data.n_items + 1, dtype=torch.float64)
        for w, module in zip(weights, modules, strict=True):
            z = module.scores(query)[0].double()
            s += w * (z - z[1:].mean()) / z[1:].std(unbiased=False)
        target = int(data.val.targets[row])
        rankable = torch.ones_like(s, dtype=torch.bool)
        rankable[0] = False
        rankable[torch.from_numpy(history.astype(np.int64))] = False
        rankable[target] = True
        rank = int(((s >= s[target]) & rankable).sum())
        total += 1.0 / np.log2(rank + 1) if rank <= 10 else 0.0
    return total / len(data.val)


def test_weights_chosen_on_validation_are_the_grid_best_by_a_brute_force_reference(
    tmp_path: Path, members: list[Run]
) -> None:
    from divrec.models.ensemble_weights import simplex_grid

    ease = member(tmp_path / "ease", members[0].data_dir, "ease", 0)
    pair = [members[0], ease]
    metrics = train(ensemble_cfg(tmp_path, pair, "model.normalize=zscore", "model.weights=val",
                                 "model.weight_steps=4"))
    modules = [member_module(run, tmp_path / f"m{i}") for i, run in enumerate(pair)]
    data = modules[0][0]
    grid = simplex_grid(2, 4).tolist()  # [1, 0], [0.75, 0.25], ..., [0, 1]
    reference = [reference_val_ndcg(data, [m for _, m in modules], w, 8) for w in grid]
    assert metrics["val/ndcg@10"] == pytest.approx(max(reference), abs=1e-6)  # the evaluator agrees (fp32 log)
    _, ensemble = build(ensemble_cfg(tmp_path / "again", pair, "model.normalize=zscore", "model.weights=val",
                                     "model.weight_steps=4"))
    chosen = ensemble.backbone.member_weights.tolist()
    assert reference[grid.index(pytest.approx(chosen))] == pytest.approx(max(reference), abs=1e-12)
    assert ensemble.backbone.fit_summary["val_search_ndcg@10"] == pytest.approx(max(reference), abs=1e-9)
    stored = json.loads((tmp_path / "run" / names.METRICS_FILE).read_text())  # the choice is in metrics.json
    assert [stored["fitted/weight_1"], stored["fitted/weight_2"]] == pytest.approx(chosen, abs=1e-6)
    assert stored["fitted/val_search_ndcg@10"] == pytest.approx(stored["val/ndcg@10"], abs=1e-6)


def test_bad_weight_searches_are_refused_before_any_data(tmp_path: Path, members: list[Run]) -> None:
    runs = f"model.members=[{','.join(str(r.run_dir) for r in members)}]"
    assert "or val" in refused(tmp_path / "a", runs, "model.weights=best")
    assert "model.weight_steps=0 must be" in refused(tmp_path / "b", runs, "model.weights=val", "model.weight_steps=0")
    message = refused(tmp_path / "c", runs, "model.weights=val", "model.weight_steps=100")
    assert "5151 weight vectors" in message and "lower model.weight_steps" in message
