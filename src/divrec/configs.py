"""Where divrec's shipped Hydra configs live, for the CLI and for layers that compose a config themselves (the
serving ``Recommender``), which may not import ``divrec.cli``."""

from __future__ import annotations

from pathlib import Path


def config_dir() -> Path:
    """The shipped configs: ``divrec/conf`` inside a wheel, else ``conf/`` at the repository root."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parents[1] / "conf"):
        if (candidate / "train.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"divrec's conf/ folder not found next to {here}; reinstall divrec")
