"""Property tests of config validation: any value (int, float, string, None, bool, list, dict; negative, huge, NaN,
interpolations) at any validated key is either accepted or refused with a ``UserError`` naming that key; never
another exception, also through ``pipeline.check_config`` (which instantiates the objective)."""

from __future__ import annotations

import math
from functools import cache
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import GrammarParseError
from runhelpers import compose_config

from divrec.errors import UserError
from divrec.pipeline import check_config
from divrec.validation import RULES, ConfigError, Machine, validate

# Composed once: each base config exercises the rules of its options (the objective's, the re-ranker's, ...).
BASES = {
    "default": [],
    "gbce": ["task=gbce"],
    "ctr": ["task=ctr"],
    "cloze": ["model=bert4rec", "task=cloze"],
    "pretrain": ["model=bert4rec", "task=pretrain"],
    "finetune": ["task=finetune", "scheduler=warmup_cosine"],
    "popularity": ["task=sampled_softmax", "task/sampler=popularity", "rerank=dpp"],
    "mmr": ["rerank=mmr", "trainer=ddp_cpu"],
}
MACHINES = [Machine(cuda_devices=0, cpu_cores=2), Machine(cuda_devices=4, cpu_cores=32)]


@cache
def base(name: str) -> DictConfig:
    return compose_config("train", [*BASES[name], "paths.output_dir=/nonexistent/out", "paths.data_dir=/nonexistent"])


def concrete(key: str) -> str:
    return key.replace("*", "cloze")  # the pretraining parts: any part's keys follow the same rule


KEYS = sorted({concrete(rule.key) for rule in RULES})

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-5, max_value=5),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-2.0, max_value=2.0),
    st.text(max_size=8),
    st.sampled_from(["auto", "gpu", "cpu", "0,1", "-1", "abc", "", " ", "${seed}", "${nope}", "???", "32", "last"]),
)
values = st.one_of(
    scalars,
    st.lists(scalars, max_size=4),
    st.dictionaries(st.text(min_size=1, max_size=3), scalars, max_size=2),
)


def with_value(cfg: DictConfig, key: str, value: Any) -> DictConfig:
    """``cfg`` with ``key`` set to ``value``; a string OmegaConf cannot even store (``"${"``: Hydra refuses such
    an override before divrec runs) is no example."""
    cfg = cfg.copy()
    try:
        with open_dict(cfg):
            OmegaConf.update(cfg, key, value, merge=False, force_add=True)
    except GrammarParseError:
        assume(False)
    return cfg


def assert_names_the_key(err: UserError, key: str) -> None:
    message = str(err)
    assert "\n" not in message
    if isinstance(err, ConfigError):
        assert message.startswith((f"{key}=", f"{key}:")), message


@given(
    name=st.sampled_from(sorted(BASES)), key=st.sampled_from(KEYS), value=values, machine=st.sampled_from(MACHINES)
)
def test_any_value_is_accepted_or_refused_by_name(name: str, key: str, value: Any, machine: Machine) -> None:
    cfg = with_value(base(name), key, value)
    try:
        validate(cfg, machine)
    except ConfigError as err:
        assert_names_the_key(err, key)


MISSING = object()


@cache
def settable(name: str) -> list[str]:
    """The validated keys that config ``name`` has, so a plain ``key=value`` override can set them."""
    cfg = base(name)
    return [k for k in ["data.max_len", "optim.lr", *KEYS] if k.startswith(("task.", "data.max_len", "optim.lr"))
            and OmegaConf.select(cfg, k, default=MISSING) is not MISSING]


@given(name=st.sampled_from(sorted(BASES)), data=st.data(), value=values)
def test_check_config_raises_nothing_but_user_errors(name: str, data: st.DataObject, value: Any) -> None:
    """Past validation the objective's constructor sees only values it accepts (no bare ValueError/TypeError, no
    Hydra InstantiationException)."""
    key = data.draw(st.sampled_from(settable(name)), label="key")
    cfg = with_value(base(name), key, value)
    try:
        check_config(cfg)
    except UserError as err:
        assert "\n" not in str(err)


def resolved(value: Any) -> Any:
    """What the one valid interpolation among the drawn strings stands for."""
    return base("default").seed if value == "${seed}" else value


@given(value=values)
def test_batch_size_is_accepted_exactly_when_a_positive_integer(value: Any) -> None:
    given = resolved(value)
    ok = isinstance(given, int) and not isinstance(given, bool) and given >= 1
    cfg = with_value(base("default"), "data.batch_size", value)  # as typed: the interpolation itself
    if ok:
        validate(cfg, MACHINES[0])
    else:
        with pytest.raises(ConfigError, match=r"^data\.batch_size"):
            validate(cfg, MACHINES[0])


@given(value=values)
def test_learning_rate_is_accepted_exactly_when_a_finite_positive_number(value: Any) -> None:
    given = resolved(value)
    number = isinstance(given, int | float) and not isinstance(given, bool)
    ok = number and (isinstance(given, int) or math.isfinite(given)) and given > 0
    cfg = with_value(base("default"), "optim.lr", value)
    if ok:
        validate(cfg, MACHINES[0])
    else:
        with pytest.raises(ConfigError, match=r"^optim\.lr"):
            validate(cfg, MACHINES[0])
