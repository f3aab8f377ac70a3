"""The confirmation stage of ``divrec tune``: the default and the best trials retrained on more seeds, the choice by
the mean over the rounds every candidate completed (against a brute-force mean), best.yaml holding that choice, a
rerun repeating no finished run, and the fallback to the single-seed best when no round completed."""

from __future__ import annotations

import statistics
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import optuna
import pytest

from divrec import pipeline
from divrec.tune import confirm as confirm_module
from divrec.tune.confirm import CONFIRM_ATTR, CONFIRM_MD, beats, candidates, choose, round_fits
from divrec.tune.report import BEST_YAML
from divrec.tune.study import STUDY_FILE, STUDY_NAME

from .helpers import run_tune

CONFIRM = ["tune.confirm.top_k=2", "tune.confirm.seeds=[43,44]", "tune.pruner=none"]


def _trial(number: int, value: float, default: bool = False, minutes: float = 1.0) -> Any:
    attrs = {"default": default, "start_min": 0.0, "end_min": minutes}
    return SimpleNamespace(number=number, value=value, state=SimpleNamespace(name="COMPLETE"), user_attrs=attrs)


def _fake(trials: list[Any], values: dict[str, dict[str, float]]) -> Any:
    return SimpleNamespace(trials=trials, user_attrs={CONFIRM_ATTR: values})


def test_the_choice_is_the_best_mean_over_complete_rounds_not_the_single_seed_best() -> None:
    trials = [_trial(0, 0.10, default=True), _trial(1, 0.12), _trial(2, 0.11), _trial(3, 0.05)]
    values = {"0": {"43": 0.11, "44": 0.11}, "1": {"43": 0.08, "44": 0.08}, "2": {"43": 0.12, "44": 0.125}}
    choice = choose(_fake(trials, values), True, 2, [43, 44])
    assert choice is not None and (choice.trial, choice.single_seed_best, choice.seeds) == (2, 1, (43, 44))
    assert choice.means[1] == pytest.approx(statistics.fmean([0.12, 0.08, 0.08]))
    assert 3 not in choice.means  # not among the top 2
    # seed 44 missing for one candidate: only the round every candidate completed counts
    del values["2"]["44"]
    choice = choose(_fake(trials, values), True, 2, [43, 44])
    assert choice is not None and choice.seeds == (43,)
    assert choice.means[2] == pytest.approx(statistics.fmean([0.11, 0.12])) and choice.trial == 2
    assert choose(_fake(trials, {}), True, 2, [43, 44]) is None  # no complete round: no choice


def test_a_higher_mean_within_the_noise_does_not_replace_the_default() -> None:
    # ml-100k's case: paired gains +0.0013, -0.0020, +0.0020 (mean +0.0004, standard error 0.0013)
    trials = [_trial(0, 0.1123, default=True), _trial(43, 0.1136)]
    values = {"0": {"43": 0.1132, "44": 0.1143}, "43": {"43": 0.1112, "44": 0.1163}}
    kept = choose(_fake(trials, values), True, 1, [43, 44])
    assert kept is not None and (kept.trial, kept.best_mean) == (0, 43)
    assert "confirmed trial 0 " in kept.line("val/ndcg@10") and "best mean, trial 43: 0.1137" in kept.line("m")
    any_gain = choose(_fake(trials, values), True, 1, [43, 44], margin_se=0.0)
    assert any_gain is not None and any_gain.trial == 43
    assert beats([0.2, 0.2], [0.1, 0.1], True, 5.0)  # no spread: any gain is beyond the noise
    assert not beats([0.1, 0.1], [0.1, 0.1], True, 0.0)  # no gain is no gain


def test_ties_go_to_the_default_and_minimizing_monitors_are_respected() -> None:
    trials = [_trial(0, 0.10, default=True), _trial(1, 0.12)]
    tied = choose(_fake(trials, {"0": {"43": 0.12}, "1": {"43": 0.10}}), True, 1, [43])
    assert tied is not None and tied.trial == 0
    low = choose(_fake(trials, {"0": {"43": 0.30}, "1": {"43": 0.01}}), False, 1, [43], margin_se=0.0)
    assert low is not None and low.trial == 1  # means 0.20 vs 0.065: the smaller wins when minimizing


def test_candidates_shrink_to_fit_one_round_in_the_reserve() -> None:
    trials = [_trial(0, 0.1, default=True, minutes=1.0), _trial(1, 0.3), _trial(2, 0.2), _trial(3, 0.4)]
    assert [t.number for t in candidates(_fake(trials, {}), True, 2)] == [0, 3, 1]
    assert [t.number for t in candidates(_fake(trials, {}), True, 2, reserve_s=130.0)] == [0, 3]  # 2 runs of 60 s
    assert [t.number for t in candidates(_fake(trials, {}), True, 2, reserve_s=10.0)] == [0, 3]  # at least one


def test_a_round_fits_only_when_two_candidates_runs_end_in_time() -> None:
    trials = [_trial(0, 0.1, default=True, minutes=2.0), _trial(1, 0.3, minutes=3.0)]
    assert round_fits(_fake(trials, {}), True, 2, 301.0)  # 120 s + 180 s
    assert not round_fits(_fake(trials, {}), True, 2, 299.0)
    assert not round_fits(_fake(trials[:1], {}), True, 2, 1e6)  # the default alone: nothing to confirm


def test_tune_confirms_writes_the_choice_and_a_rerun_repeats_no_run(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    out, data = tmp_path / "study", tmp_path / "data"
    calls: list[tuple[str, int]] = []
    real = pipeline.train

    def counted(cfg: Any, callbacks: Any = ()) -> dict[str, float]:
        run_dir = Path(cfg.paths.output_dir)
        if run_dir.parent.parent.name == "confirm":  # <out>/confirm/<trial>/seed<s>
            calls.append((run_dir.parent.name, int(cfg.seed)))
        return real(cfg, callbacks=callbacks)

    monkeypatch.setattr(pipeline, "train", counted)
    summary = run_tune(out, data, "tune.n_trials=3", *CONFIRM)
    study = optuna.load_study(study_name=STUDY_NAME, storage=f"sqlite:///{out / STUDY_FILE}")
    values = study.user_attrs[CONFIRM_ATTR]
    assert sorted(calls) == sorted((n, s) for n in ("0", "1", "2") for s in (43, 44))  # all 3 completed trials
    assert sorted(values) == ["0", "1", "2"] and all(sorted(v) == ["43", "44"] for v in values.values())
    series = {int(n): [study.trials[int(n)].value, v["43"], v["44"]] for n, v in values.items()}
    means = {n: statistics.fmean(v) for n, v in series.items()}

    def clear_gain(n: int) -> bool:  # brute force: paired gain over the default beyond one standard error
        diffs = [a - b for a, b in zip(series[n], series[0], strict=True)]
        return statistics.fmean(diffs) > max(0.0, statistics.stdev(diffs) / 3**0.5)

    best = max((n for n in means if n == 0 or clear_gain(n)), key=lambda n: (means[n], n == 0, -n))
    assert summary["chosen_trial"] == best and summary["confirmed_seeds"] == [43, 44]
    assert f"# confirmed trial {best} " in (out / BEST_YAML).read_text()
    assert "| yes |" in (out / CONFIRM_MD).read_text()
    assert (out / "confirm" / "0" / "seed43" / "metrics.json").is_file()

    calls.clear()
    run_tune(out, data, "tune.n_trials=1", *CONFIRM)  # one more trial; finished runs are not repeated
    study = optuna.load_study(study_name=STUDY_NAME, storage=f"sqlite:///{out / STUDY_FILE}")
    now = {t.number for t in candidates(study, True, 2)}
    assert sorted(calls) == sorted((str(n), s) for n in now - {0, 1, 2} for s in (43, 44))


def test_without_a_complete_round_best_yaml_is_the_single_seed_best(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(confirm_module, "run_one", lambda *args: None)  # every confirmation run cut or failed
    out = tmp_path / "study"
    summary = run_tune(out, tmp_path / "data", "tune.n_trials=2", *CONFIRM)
    assert summary["chosen_trial"] == summary["best_trial"] and summary["confirmed_seeds"] == []
    assert "confirmed trial" not in (out / BEST_YAML).read_text()
    assert "no complete round" in (out / CONFIRM_MD).read_text()
