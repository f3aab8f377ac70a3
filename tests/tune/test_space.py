"""Search spaces bound to real model configs: widened to hold each model's defaults, ties in the default ratio,
keys a model lacks refused (or skipped when optional), malformed space files refused in one line."""

from __future__ import annotations

from pathlib import Path

import pytest
from runhelpers import compose_config

from divrec.tune.space import SpaceError, apply, bind, space_names


class FixedTrial:
    """Stands in for an optuna trial: every suggest returns the given value."""

    def __init__(self, values: dict[str, object]) -> None:
        self.values = values

    def suggest_float(self, key: str, low: float, high: float, log: bool = False) -> object:
        assert low <= self.values[key] <= high
        return self.values[key]

    suggest_int = suggest_float

    def suggest_categorical(self, key: str, choices: list[object]) -> object:
        assert self.values[key] in choices
        return self.values[key]


def test_shipped_spaces() -> None:
    assert {"transformer", "recurrent"} <= set(space_names())


def test_transformer_space_on_sasrec_ties_attn_dropout_and_ffn() -> None:
    cfg = compose_config("train", ["model=sasrec"])
    space = bind("transformer", cfg)
    assert [p.key for p in space.params] == [
        "optim.lr", "model.dropout", "model.n_layers", "model.hidden_size", "data.batch_size"
    ]  # fmt: skip
    assert space.defaults == {"optim.lr": 2e-3, "model.dropout": 0.2, "model.n_layers": 2, "model.hidden_size": 64,
                              "data.batch_size": 128}  # fmt: skip
    values = space.sample(FixedTrial({**space.defaults, "model.dropout": 0.5, "model.hidden_size": 128}))
    assert values["model.attn_dropout"] == pytest.approx(0.5)  # sasrec's attn_dropout = dropout (0.2 = 0.2)
    assert values["model.ffn_size"] == 512 and isinstance(values["model.ffn_size"], int)  # 4 x hidden, as 256/64
    tuned = apply(cfg, values)
    assert tuned.model.attn_dropout == pytest.approx(0.5) and tuned.model.hidden_size == 128
    assert cfg.model.hidden_size == 64  # apply copies


def test_hstu_defaults_widen_the_space_and_keep_its_zero_attention_dropout() -> None:
    space = bind("transformer", compose_config("train", ["model=hstu"]))
    layers = next(p for p in space.params if p.key == "model.n_layers")
    assert (layers.low, layers.high) == (1, 4)  # hstu's 4 layers are a point of the space (trial 0)
    values = space.sample(FixedTrial({**space.defaults, "model.dropout": 0.3}))
    assert values["model.attn_dropout"] == 0.0  # 0.0 / 0.5 of dropout: stays 0
    assert "model.ffn_size" not in values  # hstu has none: the tie is skipped


def test_recurrent_space_on_lrurec_and_gru4rec() -> None:
    lru = bind("recurrent", compose_config("train", ["model=lrurec"]))
    values = lru.sample(FixedTrial({**lru.defaults, "model.hidden_size": 128, "model.dropout": 0.3}))
    assert values["model.state_size"] == 256 and values["model.ffn_size"] == 512  # 2x and 4x hidden, as defaults
    assert values["model.lru_dropout"] == pytest.approx(0.3)
    gru = bind("recurrent", compose_config("train", ["model=gru4rec"]))
    assert gru.sample(FixedTrial({**gru.defaults, "model.hidden_size": 128}))["model.gru_size"] == 128


def test_a_key_the_model_lacks_is_refused_unless_optional(tmp_path: Path) -> None:
    cfg = compose_config("train", ["model=pop"])
    with pytest.raises(SpaceError, match=r"params\.model\.dropout: this config has no model\.dropout"):
        bind("transformer", cfg)
    space = tmp_path / "mine.yaml"
    space.write_text("params:\n  optim.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}\n"
                     "  model.dropout: {type: float, low: 0.1, high: 0.5, optional: true}\n")  # fmt: skip
    assert [p.key for p in bind(str(space), compose_config("train", ["model=sasrec", "optim.lr=0.05"])).params] == [
        "optim.lr", "model.dropout"
    ]  # fmt: skip
    widened = bind(str(space), compose_config("train", ["optim.lr=0.05"])).params[0]
    assert widened.high == pytest.approx(0.05)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("params: {}\n", "a search space needs a 'params:' mapping"),
        ("params:\n  optim.lr: {type: float, low: 1.0, high: 0.1}\n", "params.optim.lr: needs low < high"),
        ("params:\n  optim.lr: {type: float, low: 0.0, high: 0.1, log: true}\n", "low > 0 with log"),
        ("params:\n  model.n_layers: {type: integer, low: 1, high: 3}\n", "give {type: float|int|categorical"),
        ("params:\n  model.hidden_size: {type: categorical, choices: []}\n", "categorical needs distinct choices"),
        ("params:\n  optim.lr: {type: float, low: 0.1, high: 0.2}\ntied:\n  model.attn_dropout: model.dropout\n",
         "tied.model.attn_dropout: model.dropout is not one of the params"),
        ("params: [1\n", "cannot read the search space"),
    ],
)  # fmt: skip
def test_malformed_space_files_are_one_line_errors(tmp_path: Path, text: str, message: str) -> None:
    space = tmp_path / "bad.yaml"
    space.write_text(text)
    with pytest.raises(SpaceError, match=None) as caught:
        bind(str(space), compose_config("train"))
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_unknown_space_name_lists_the_shipped_ones() -> None:
    with pytest.raises(SpaceError, match=r"tune.space=nope: no such search space; choose from \[.*transformer"):
        bind("nope", compose_config("train"))
