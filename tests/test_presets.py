"""aecore.engine.presets: the tutorials' settings, as each tutorial describes them."""
from __future__ import annotations

import pytest

from aecore.engine import presets
from aecore.engine.data import DataConfig
from aecore.engine.presets import FIGURE_METRICS, PRESETS


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_is_well_formed(name):
    pre = PRESETS[name]
    assert pre.name == name
    assert pre.figure_metric in FIGURE_METRICS
    assert pre.title and pre.tutorial and pre.figure_label
    assert presets.get(name) is pre


def test_preset_names():
    assert list(PRESETS) == ["pytorch-784-200", "keras-784-32"] + [f"chainer-case{i}" for i in range(1, 8)] + \
        ["conv-digit0", "stacked-2d", "keras-vae-2d", "conv-vae-2d", "sparse-784-32", "iwae-vae-50"]


def test_pytorch_preset():
    pre = presets.get("pytorch-784-200")
    m, t = pre.model, pre.train
    assert (m.family, m.hidden, m.activation, m.output, m.loss) == ("shallow", (200,), "relu", "sigmoid", "bce")
    assert (t.batch_size, t.epochs, t.lr) == (124, 10, 1e-3)
    assert pre.data == DataConfig()
    assert (pre.figure, pre.figure_metric) == (0.066, "train_loss")


def test_keras_preset():
    pre = presets.get("keras-784-32")
    assert pre.model.hidden == (32,) and pre.model.init == "keras" and pre.model.loss == "bce"
    assert pre.data.val_fraction == 0.2
    assert pre.train.adam_eps == 1e-7
    assert (pre.train.batch_size, pre.train.epochs) == (128, 20)
    assert pre.figure_metric == "val_loss"


CHAINER = {  # case: (activation, units, dropout, masking ratio)
    1: ("relu", 1000, True, 0.0),
    2: ("relu", 1000, False, 0.0),
    3: ("relu", 400, True, 0.0),
    4: ("relu", 400, False, 0.0),
    5: ("sigmoid", 1000, True, 0.0),
    6: ("sigmoid", 1000, True, 0.2),
    7: ("sigmoid", 100, False, 0.2),
}


@pytest.mark.parametrize("case", list(CHAINER))
def test_chainer_cases_match_the_study(case):
    act, units, dropout, mask = CHAINER[case]
    pre = presets.get(f"chainer-case{case}")
    m, t = pre.model, pre.train
    assert (m.family, m.hidden, m.activation) == ("shallow", (units,), act)
    assert (m.output, m.loss, m.init) == ("identity", "mse", "chainer")
    assert (t.batch_size, t.epochs, t.lr) == (100, 20, 1e-3)
    if dropout:
        assert (m.dropout, m.dropout_where) == (0.5, "hidden+output")
    else:
        assert m.dropout == 0.0
    if mask:
        assert (t.noise, t.noise_level) == ("mask", mask)
    else:
        assert t.noise == "none"
    assert pre.figure_metric == "test_loss"


def test_conv_digit0_preset():
    pre = presets.get("conv-digit0")
    assert pre.data.classes == (0,)
    assert (pre.train.batch_size, pre.train.epochs) == (50, 30)
    assert (pre.model.family, pre.model.channels, pre.model.loss) == ("conv", (16, 4), "mse")
    assert pre.figure is None
    assert pre.figure_text(0.01) == "tutorial: (no number) · this run: 0.01"


def test_stacked_2d_preset():
    pre = presets.get("stacked-2d")
    m, t = pre.model, pre.train
    assert (m.family, m.hidden, m.activation, m.linear_code) == ("deep", (256, 128, 64, 2), "tanh", False)
    assert (m.output, m.loss) == ("sigmoid", "mse")
    assert t.lr_milestones == (10, 40) and t.lr_gamma == 0.5
    assert (t.batch_size, t.epochs) == (64, 20)


def test_unknown_preset_lists_the_names():
    with pytest.raises(ValueError) as info:
        presets.get("nope")
    message = str(info.value)
    assert "'nope'" in message
    for name in PRESETS:
        assert name in message


def test_figure_text():
    pre = presets.get("pytorch-784-200")
    assert pre.figure_text(0.07) == "tutorial: 0.066 · this run: 0.07"
    assert pre.figure_text(0.065512) == "tutorial: 0.066 · this run: 0.06551"
    assert pre.figure_text() == "tutorial: 0.066"


# ------------------------------------------------------------------------------------------- an edited preset
def changed(name: str, **values) -> dict:
    """A preset's form with `values` changed, as aecore.engine.links.differences gives it."""
    from aecore.engine import links

    return links.differences(name, {**links.preset_values(name), **values})


@pytest.mark.parametrize("values", [dict(epochs=2), dict(batch_size=64, lr=0.01), dict(seed=3, device="cpu"),
                                    dict(optimizer="rmsprop", adam_eps=1e-8), dict(init="keras")])
def test_the_figure_applies_when_only_the_training_differs(values):
    assert presets.get("pytorch-784-200").compares(changed("pytorch-784-200", **values))


@pytest.mark.parametrize("values", [dict(hidden=(64,)), dict(loss="mse", output="identity"), dict(activation="tanh"),
                                    dict(dropout=0.2), dict(classes=(0,)), dict(val_fraction=0.1),
                                    dict(noise="mask", noise_level=0.2), dict(deform=1.0), dict(binarize=True),
                                    dict(epochs=2, hidden=(64,))])
def test_the_figure_does_not_apply_when_the_model_loss_or_data_differ(values):
    assert not presets.get("pytorch-784-200").compares(changed("pytorch-784-200", **values))


def test_what_the_tutorial_did_otherwise_is_said():
    pre = presets.get("pytorch-784-200")
    assert pre.trained_otherwise(changed(pre.name, epochs=2)) == "the tutorial trained 10 epochs"
    assert pre.trained_otherwise(changed(pre.name, epochs=2, batch_size=64, lr=0.01)) == \
        "the tutorial trained 10 epochs with learning rate 0.001 and batch size 124"
    assert pre.trained_otherwise(changed(pre.name, lr_milestones=(3,))) == \
        "the tutorial trained with a constant learning rate"
    assert pre.trained_otherwise(changed(pre.name, seed=3, device="cpu")) == ""     # no tutorial fixed these
    assert pre.trained_otherwise({}) == ""
