"""``divrec train|eval``: the installed console script, its error output, its config folder and search path."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf
from runhelpers import (
    CONSOLE_SCRIPT,
    QUIET,
    ROOT,
    TINY,
    Run,
    compose_config,
    leftovers,
    read_metrics,
    run_divrec,
    run_paths,
    without_hydra_node,
)

from divrec import cli, names

needs_console_script = pytest.mark.skipif(not CONSOLE_SCRIPT.is_file(), reason=f"{CONSOLE_SCRIPT} not installed")


def test_config_dir_is_the_shipped_conf() -> None:
    package = Path(cli.__file__).resolve().parent
    editable = package.is_relative_to(ROOT)
    assert cli.config_dir() == (ROOT / "conf" if editable else package / "conf")
    assert set(cli.RUNNERS) == {"train", "eval", "recommend", "feedback", "serve", "export", "tune"}
    for command in cli.RUNNERS:  # each command is a config of the same name
        assert (cli.config_dir() / f"{command}.yaml").is_file()


@needs_console_script
def test_console_script_trains_and_prints_the_test_table(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    result = run_divrec(
        [
            "train",
            *TINY,
            "trainer=debug",
            "logger=none",
            f"hydra.run.dir={run_dir}",
            f"paths.data_dir={tmp_path / 'data'}",
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"| {names.TEST} |" in result.stdout
    assert f"run folder: {run_dir}" in result.stdout
    metrics = read_metrics(run_dir)
    assert names.metric_key(names.TEST, names.NDCG, 10) in metrics
    assert (run_dir / ".hydra" / "config.yaml").is_file()  # Hydra's own record next to divrec's outputs
    assert (run_dir / "train.log").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "run"]  # nothing written into the cwd


@needs_console_script
def test_console_script_unknown_key_fails_before_anything_runs(tmp_path: Path) -> None:
    result = run_divrec(["train", "foo=1", f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert result.returncode != 0
    assert "Could not override 'foo'" in result.stderr
    assert "+foo=1" in result.stderr  # Hydra's hint on how to add a key
    assert "Traceback" not in result.stderr
    assert leftovers(tmp_path) == []


@needs_console_script
def test_console_script_unknown_model_key_is_one_line_error(tmp_path: Path) -> None:
    result = run_divrec(
        [
            "train",
            *TINY,
            "+model.hiden_size=3",
            f"hydra.run.dir={tmp_path / 'run'}",
            f"paths.data_dir={tmp_path / 'data'}",
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]  # one line, no traceback, no Hydra hint
    assert last.startswith("error: invalid model config: unknown key(s) ['hiden_size']")
    assert "valid keys are" in last and "Traceback" not in result.stderr
    assert result.stderr.count("hiden_size']") == 1  # the message is printed once
    assert not (tmp_path / "data").exists()
    assert not (tmp_path / "run" / "checkpoints").exists()


COMMANDS = [([], "train"), (["train"], "train"), (["eval"], "eval"), (["recommend"], "recommend")]


@needs_console_script
@pytest.mark.parametrize(("command", "task_name"), COMMANDS)
def test_command_selects_the_config(command: list[str], task_name: str, tmp_path: Path) -> None:
    result = run_divrec([*command, "ckpt_path=x.ckpt", "--cfg", "job"], cwd=tmp_path)  # prints, runs nothing
    assert result.returncode == 0, result.stderr
    printed = OmegaConf.create(result.stdout)
    assert printed.task_name == task_name
    assert printed.ckpt_path == "x.ckpt"


def write_user_conf(root: Path) -> Path:
    """A user's config folder with data/mydata.yaml extending the shipped synthetic data config."""
    (root / "data").mkdir(parents=True)
    (root / "data" / "mydata.yaml").write_text(
        "defaults:\n  - synthetic\n  - _self_\nsource:\n  n_users: 77\n  n_items: 33\nmax_len: 6\n"
    )
    return root


def test_user_config_folder_on_the_search_path(tmp_path: Path) -> None:
    conf = write_user_conf(tmp_path / "myconf")
    cfg = compose_config(
        "train",
        [f"hydra.searchpath=[file://{conf}]", "data=mydata", *run_paths(tmp_path / "out", tmp_path / "data")],
        hydra_node=True,
    )
    assert cfg.hydra.runtime.choices.data == "mydata"
    synthetic = compose_config("train", ["data=synthetic"]).data
    assert cfg.data.source._target_ == synthetic.source._target_  # inherited from the shipped config
    assert (cfg.data.source.n_users, cfg.data.source.n_items, cfg.data.max_len) == (77, 33, 6)
    assert cfg.model.max_len == 6
    with pytest.raises(Exception, match="mydata"):  # without the search path the option does not exist
        compose_config("train", ["data=mydata"])


@needs_console_script
def test_console_script_finds_a_user_config_folder(tmp_path: Path) -> None:
    conf = write_user_conf(tmp_path / "myconf")
    result = run_divrec([f"hydra.searchpath=[file://{conf}]", "data=mydata", "--cfg", "job"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert OmegaConf.create(result.stdout).data.source.n_users == 77


def test_eval_runner_passes_the_command_line_overrides(tiny_run: Run, tmp_path: Path) -> None:
    """``cli._eval`` as Hydra calls it: the runtime config set, ``cfg.hydra`` removed."""
    overrides = [
        f"ckpt_path={tiny_run.run_dir / 'checkpoints' / 'best.ckpt'}",
        "trainer=cpu",
        "logger=none",
        *QUIET,
        *run_paths(tmp_path / "eval", tmp_path / "data"),
    ]
    cfg = compose_config("eval", overrides, hydra_node=True)
    HydraConfig().set_config(cfg)
    try:
        cli.RUNNERS["eval"](without_hydra_node(cfg))
    finally:
        HydraConfig.instance().cfg = None
    metrics = read_metrics(tmp_path / "eval")
    test_ndcg = names.metric_key(names.TEST, names.NDCG, 10)
    assert abs(metrics[test_ndcg] - tiny_run.metrics[test_ndcg]) <= 1e-9
