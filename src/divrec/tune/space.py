"""Search spaces of ``divrec tune`` (``conf/tune/space/<name>.yaml``), bound to one composed train config.

A space names config keys, never datasets: ``params`` are sampled (float / int ranges, optionally log-scaled, or a
list of choices) and ``tied`` keys follow a sampled source in the ratio the config's own defaults give them::

    value(key) = default(key) / default(source) * sampled(source)     (an int key is rounded)

so SASRec's ``attn_dropout`` (0.2, = dropout) stays equal to the sampled dropout, HSTU's (0.0) stays 0, and
``ffn_size`` stays 4 x ``hidden_size``. ``bind`` widens each range (or adds the choice) to hold the config's own
value, so trial 0, the config as given, is a point of the space whatever the model's defaults; the widening depends
on the config only, so every trial of a study (and every rerun) sees the same distributions.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from divrec.configs import config_dir
from divrec.errors import UserError

log = logging.getLogger(__name__)
KINDS = ("float", "int", "categorical")
FIELDS = {"type", "low", "high", "log", "choices", "optional"}


class SpaceError(UserError):
    """A search space that cannot be read or does not fit the config (one line: file, key, fix)."""


def space_dir() -> Path:
    return config_dir() / "tune" / "space"


def space_names() -> list[str]:
    return sorted(p.stem for p in space_dir().glob("*.yaml"))


def space_path(name: str) -> Path | None:
    """``tune.space``: a shipped name (``conf/tune/space/<name>.yaml``) or a path to a YAML file; None if neither."""
    if name.endswith((".yaml", ".yml")):
        path = Path(name).expanduser()
        return path if path.is_file() else None
    path = space_dir() / f"{name}.yaml"
    return path if name and "/" not in name and path.is_file() else None


@dataclass(frozen=True)
class Param:
    """One sampled key: ``kind`` float | int (``low``..``high``, ``log``) or categorical (``choices``)."""

    key: str
    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()
    optional: bool = False

    def suggest(self, trial: Any) -> Any:
        """The trial's value (an enqueued trial's fixed value where it has one)."""
        if self.kind == "float":
            return trial.suggest_float(self.key, self.low, self.high, log=self.log)
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), log=self.log)  # type: ignore[arg-type]
        return trial.suggest_categorical(self.key, list(self.choices))

    def holding(self, value: Any, where: str) -> Param:
        """This parameter with its range widened (or ``value`` added to its choices) so that it holds ``value``."""
        if self.kind == "categorical":
            if value in self.choices:
                return self
            ordered = all(isinstance(c, int | float) and not isinstance(c, bool) for c in (*self.choices, value))
            choices = tuple(sorted((*self.choices, value))) if ordered else (*self.choices, value)
            log.info("tune space: %s choices %s widened to %s (the config's value)", self.key, self.choices, choices)
            return replace(self, choices=choices)
        number_ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        if not number_ok or (self.kind == "int" and not isinstance(value, int)) or (self.log and value <= 0):
            wanted = "a positive number" if self.log else "an integer" if self.kind == "int" else "a number"
            raise SpaceError(f"{where}: the config's {self.key}={value!r} is not {wanted}, as its {self.kind} range "
                             f"needs; give {self.key}=<value> or use another space (tune.space=...)")
        low, high = min(self.low, value), max(self.high, value)  # type: ignore[type-var]
        if (low, high) != (self.low, self.high):
            log.info("tune space: %s range [%s, %s] widened to [%s, %s] (the config's value)", self.key, self.low,
                     self.high, low, high)
        return replace(self, low=low, high=high)


@dataclass(frozen=True)
class Tie:
    """``key`` = ``ratio`` x the sampled ``source`` (``integer``: rounded)."""

    key: str
    source: str
    ratio: float
    integer: bool

    def value(self, source_value: float) -> float | int:
        scaled = self.ratio * source_value
        return round(scaled) if self.integer else scaled


@dataclass(frozen=True)
class Space:
    """A space bound to a config: the params it has, the ties that apply, and the config's own values."""

    name: str
    params: tuple[Param, ...]
    ties: tuple[Tie, ...]
    defaults: dict[str, Any]  # trial 0: the config's value of every param

    def sample(self, trial: Any) -> dict[str, Any]:
        """The trial's params, then the tied keys they move."""
        values = {p.key: p.suggest(trial) for p in self.params}
        return values | {t.key: t.value(values[t.source]) for t in self.ties}

    def settings(self, params: dict[str, Any]) -> dict[str, Any]:
        """Params (as stored in a trial) plus the tied keys they move: every key to set in the config."""
        return dict(params) | {t.key: t.value(params[t.source]) for t in self.ties if t.source in params}


def _read(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise SpaceError(f"{path}: cannot read the search space ({str(err).splitlines()[0]})") from None
    if not isinstance(data, dict) or not isinstance(data.get("params"), dict) or not data["params"]:
        raise SpaceError(f"{path}: a search space needs a 'params:' mapping of config keys, e.g. "
                         "params: {optim.lr: {type: float, low: 3.0e-4, high: 3.0e-3, log: true}}")
    if not isinstance(data.get("tied") or {}, dict):
        raise SpaceError(f"{path}: 'tied:' must map a config key to a param, e.g. tied: {{model.attn_dropout: "
                         "model.dropout}}")
    return data


def _param(key: str, spec: Any, path: Path) -> Param:
    where = f"{path}: params.{key}"
    if not isinstance(spec, dict) or spec.get("type") not in KINDS or set(spec) - FIELDS:
        raise SpaceError(f"{where}: give {{type: float|int|categorical, low, high, log, choices, optional}}, e.g. "
                         "{type: float, low: 0.1, high: 0.6}")
    optional = bool(spec.get("optional", False))
    if spec["type"] == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices or len(set(map(repr, choices))) != len(choices):
            raise SpaceError(f"{where}: categorical needs distinct choices, e.g. choices: [64, 128]")
        return Param(key, "categorical", choices=tuple(choices), optional=optional)
    low, high, log_scale = spec.get("low"), spec.get("high"), bool(spec.get("log", False))
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (low, high))
    if spec["type"] == "int":
        numbers = numbers and all(isinstance(v, int) for v in (low, high))
    if not numbers or not low < high or (log_scale and low <= 0):  # type: ignore[operator]
        raise SpaceError(f"{where}: needs low < high ({spec['type']}s{', low > 0 with log' if log_scale else ''}), "
                         "e.g. low: 3.0e-4, high: 3.0e-3")
    return Param(key, spec["type"], low=low, high=high, log=log_scale, optional=optional)  # type: ignore[arg-type]


def _value(cfg: DictConfig, key: str) -> tuple[bool, Any]:
    """(present, resolved value) of a dotted key in the config."""
    try:
        value = OmegaConf.select(cfg, key, default=_ABSENT, throw_on_missing=True)
    except OmegaConfBaseException as err:
        raise SpaceError(f"{key}: its value cannot be read ({str(err).splitlines()[0]}); give a plain value") from None
    return value is not _ABSENT and value is not None, value


_ABSENT = object()


def _ties(tied: dict[str, Any], declared: set[str], params: dict[str, Param], cfg: DictConfig,
          path: Path) -> tuple[Tie, ...]:
    """The ties that apply to ``cfg``: a tie whose key the config lacks, whose source param was left out (optional)
    or whose default ratio is undefined (non-numeric, source 0) is skipped; a source no param declares is an error."""
    ties: list[Tie] = []
    for key, source in tied.items():
        key, source = str(key), str(source)
        if source not in declared:
            raise SpaceError(f"{path}: tied.{key}: {source} is not one of the params {sorted(declared)}")
        has_key, default = _value(cfg, key)
        base = _value(cfg, source)[1] if source in params else None
        numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (default, base))
        if not has_key or not numeric or base == 0:
            log.info("tune space: %s not tied to %s here (absent from the config, or no ratio)", key, source)
            continue
        integer = isinstance(default, int) and params[source].kind != "float"
        ties.append(Tie(key, source, default / base, integer))  # type: ignore[operator]
    return tuple(ties)


def bind(name: str, cfg: DictConfig) -> Space:
    """The space ``name`` (``tune.space``) bound to ``cfg``: optional params the config lacks left out, every range
    widened to hold the config's value, each tie's ratio from the config's defaults."""
    path = space_path(name)
    if path is None:
        raise SpaceError(f"tune.space={name}: no such search space; choose from {space_names()} (conf/tune/space/) "
                         "or give a path to a YAML file")
    data = _read(path)
    params: dict[str, Param] = {}
    defaults: dict[str, Any] = {}
    for key, spec in data["params"].items():
        param = _param(str(key), spec, path)
        present, value = _value(cfg, param.key)
        if not present:
            if param.optional:
                continue
            raise SpaceError(f"{path}: params.{key}: this config has no {key} (a key of another model?); pick a "
                             f"space for this model (tune.space=...) or mark the param optional: true")
        params[param.key] = param.holding(value, f"{path}: params.{key}")
        defaults[param.key] = value
    declared = {str(k) for k in data["params"]}
    ties = _ties(data.get("tied") or {}, declared, params, cfg, path)
    return Space(path.stem, tuple(params.values()), ties, defaults)


def apply(cfg: DictConfig, settings: dict[str, Any]) -> DictConfig:
    """A copy of ``cfg`` with every key of ``settings`` set."""
    out = cfg.copy()
    for key, value in settings.items():
        OmegaConf.update(out, key, value, merge=False)
    return out
