"""Start-up guards: what ``import divrec.cli`` and a cache-hit train set-up do NOT import (no timing asserts).

Each check runs in a fresh interpreter, since this test process has long imported everything. What each import
costs: experiments/speed/README.md, "Start-up" (``experiments/speed/startup.py``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hydra.utils import instantiate
from runhelpers import TINY_TRAIN, compose_config, run_paths

from divrec.lazy import lazy_module

# Never needed to parse a command line: the CLI imports these only inside the command that uses them.
NOT_FOR_THE_CLI = {
    "torch", "pytorch_lightning", "lightning_fabric", "torchmetrics", "pandas", "pyarrow", "matplotlib", "scipy",
    "sympy", "tensorboard", "PIL", "optuna", "sqlalchemy", "onnx", "onnxruntime", "onnxscript", "faiss", "fastapi",
    "uvicorn", "httpx", "sklearn",
}
# Not needed until the first training step when the dataset comes from the cache: tables (pandas, pyarrow: only a
# cache miss reads files, only the end of the run writes per_user.parquet) and the optional extras (sweep, serve,
# cluster). matplotlib and scipy are not listed: torchmetrics imports them whenever they are installed.
NOT_FOR_A_CACHED_TRAIN = {
    "pandas", "pyarrow", "optuna", "sqlalchemy", "onnx", "onnxruntime", "onnxscript", "faiss", "fastapi", "uvicorn",
    "httpx", "prometheus_client", "submitit", "sklearn",
}


def imported(code: str, *args: str) -> set[str]:
    """Top-level packages in ``sys.modules`` after running ``code`` in a fresh interpreter."""
    report = "\nimport json, sys\nprint(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code) + report, *args],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def test_importing_the_cli_loads_no_heavy_package() -> None:
    assert imported("import divrec.cli") & NOT_FOR_THE_CLI == set()


def test_a_cache_hit_train_setup_reads_no_table(tmp_path: Path) -> None:
    """check_config, the trainer, the datamodule's load() from the cache and the model: all before the first step."""
    overrides = [*TINY_TRAIN, *run_paths(tmp_path / "run", tmp_path / "data")]
    instantiate(compose_config("train", overrides).data).load()  # cache miss here: writes the cache file
    assert list((tmp_path / "data" / "cache").glob("*.npz")), "the cache was not written"
    code = """
        import json, sys
        from pathlib import Path
        from hydra import compose, initialize_config_dir
        from divrec.configs import config_dir
        from divrec.pipeline import build, make_trainer

        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            cfg = compose("train", overrides=json.loads(sys.argv[1]))
        make_trainer(cfg, Path(cfg.paths.output_dir))
        datamodule, module = build(cfg)
        assert module.backbone.n_items == datamodule.load().n_items
    """
    loaded = imported(code, json.dumps(overrides))
    assert {"torch", "pytorch_lightning"} <= loaded  # the set-up did run
    assert loaded & NOT_FOR_A_CACHED_TRAIN == set()


def test_lazy_module_imports_on_first_attribute_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "divrec_lazy_probe.py").write_text("import sys\nsys.divrec_lazy_probe_runs += 1\nVALUE = 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "divrec_lazy_probe_runs", 0, raising=False)
    monkeypatch.delitem(sys.modules, "divrec_lazy_probe", raising=False)
    probe = lazy_module("divrec_lazy_probe")
    assert "divrec_lazy_probe" not in sys.modules and sys.divrec_lazy_probe_runs == 0  # type: ignore[attr-defined]
    assert probe.VALUE == 42 and probe.VALUE == 42
    assert sys.divrec_lazy_probe_runs == 1  # type: ignore[attr-defined]  # imported once, then shared
    assert sys.modules["divrec_lazy_probe"].VALUE == 42
    monkeypatch.delitem(sys.modules, "divrec_lazy_probe")


def test_lazy_module_of_a_missing_package_fails_on_use() -> None:
    missing = lazy_module("divrec_no_such_package")
    with pytest.raises(ModuleNotFoundError, match="divrec_no_such_package"):
        _ = missing.anything
