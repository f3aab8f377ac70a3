"""The wheel carries the configs where ``divrec.cli.config_dir()`` looks for them."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from runhelpers import ROOT

from divrec.cli import config_dir


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if importlib.util.find_spec("hatchling") is None:  # the build backend, needed without build isolation
        pytest.skip("hatchling is not installed in this environment (pip install hatchling)")
    out = tmp_path_factory.mktemp("wheel")
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index"]
    cmd += ["--disable-pip-version-check", "-q", "-w", str(out), str(ROOT)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    (path,) = out.glob("divrec-*.whl")
    return path


def test_wheel_carries_every_config(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        members = set(z.namelist())
    shipped = sorted(p.relative_to(config_dir()).as_posix() for p in config_dir().rglob("*.yaml"))
    assert "train.yaml" in shipped and "data/ml-100k.yaml" in shipped
    missing = [rel for rel in shipped if f"divrec/conf/{rel}" not in members]
    assert missing == []
    assert "divrec/cli.py" in members


def test_installed_wheel_layout_is_found_by_config_dir(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from hydra import compose, initialize_config_dir; import divrec.cli as cli;"
        "print(cli.__file__); print(cli.config_dir());"
        "initialize_config_dir(config_dir=str(cli.config_dir()), version_base='1.3');"
        "print(compose('train', overrides=['data=beauty']).data.source.sequence_file)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, str(site)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    module_file, conf, sequence_file = result.stdout.split()
    assert Path(module_file) == site / "divrec" / "cli.py"  # the unpacked wheel, not the repository
    assert Path(conf) == site / "divrec" / "conf"
    assert sequence_file == "Beauty.txt"
