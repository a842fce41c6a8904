"""The tutorials' experiments as presets, each with the figure its tutorial reported: the five tutorials AE Lab
grew from, then the generative references a learner opens next (the Keras VAE examples, the Keras blog's sparse
autoencoder, the IWAE paper's one-layer VAE).

A preset edited in a few settings is still that preset (aecore.engine.links names the run after it and what
differs). Whether its figure still applies is one rule, `Preset.compares`: the figure is a loss of one model on one
data set, so it applies while the model, its loss and the data (the images and how the model sees them: classes,
held-out part, noise, deformation, binarisation) are the preset's, whatever the optimisation (TRAINING_ONLY:
epochs, batch size, optimiser, learning rate and its schedule, ε, KL warm-up, weight init, seed, device); what the
tutorial did otherwise is said beside it ("the tutorial trained 10 epochs"). Any other change and the two numbers
measure different things: no comparison.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

from aecore.engine.data import DataConfig
from aecore.engine.fields import FIELDS, format_value
from aecore.engine.models import ModelConfig
from aecore.engine.train import TrainConfig

FIGURE_METRICS = ("train_loss", "val_loss", "test_loss")
# The settings that change how a model is trained but neither the model, nor its loss, nor the data it is measured
# on: a run that differs from a preset only in these still compares with the preset's figure.
TRAINING_ONLY = frozenset({"epochs", "batch_size", "optimizer", "lr", "adam_eps", "lr_milestones", "lr_gamma",
                           "kl_warmup", "init", "seed", "device"})


@dataclass(frozen=True)
class Preset:
    name: str
    title: str
    tutorial: str                  # what the tutorial did and showed
    model: ModelConfig
    data: DataConfig
    train: TrainConfig
    figure: float | None           # the tutorial's reported number; None where it reported a picture
    figure_metric: str = "train_loss"  # which of our final figures it compares with
    figure_label: str = ""

    def figure_text(self, measured: float | None = None) -> str:
        """'tutorial: 0.066 · this run: 0.0655' as the Train page and the CLI show a run's figure."""
        return versus(self.figure, measured, ours_name="this run", tutorial="tutorial", no_number="(no number)")

    def compares(self, changed: Iterable[str]) -> bool:
        """Whether this preset's figure still applies to a run that changed the settings named in `changed`
        (aecore.engine.links.differences): only while they are all TRAINING_ONLY."""
        return set(changed) <= TRAINING_ONLY

    def trained_otherwise(self, changed: Mapping[str, tuple]) -> str:
        """What the tutorial did that a run changed, among the settings that leave the figure comparable (seed and
        device aside: no tutorial fixed them): 'the tutorial trained 10 epochs with batch size 124'; '' if none.
        `changed`: name -> (the preset's value, the run's), as aecore.engine.links.differences gives it."""
        epochs = f" {changed['epochs'][0]} epochs" if "epochs" in changed else ""
        others = [_setting(name, theirs) for name, (theirs, _) in changed.items()
                  if name in TRAINING_ONLY - {"epochs", "seed", "device"}]
        if not (epochs or others):
            return ""
        listed = ", ".join(others[:-1]) + " and " + others[-1] if len(others) > 1 else "".join(others)
        return "the tutorial trained" + epochs + (" with " + listed if others else "")


def versus(theirs: float | None, ours: float | str | None, ours_name: str = "ours", tutorial: str = "the tutorial",
           no_number: str = "a picture, no number") -> str:
    """A tutorial's figure beside ours, the one wording every page uses: 'the tutorial: 0.066 · ours: 0.06551'.
    Theirs as the tutorial wrote it (`no_number` where it showed a picture), ours to 4 significant digits (a text,
    such as 'not available', as given; None: left out)."""
    parts = [f"{tutorial}: {theirs:g}" if theirs is not None else f"{tutorial}: {no_number}"]
    if ours is not None:
        parts.append(f"{ours_name}: {ours}" if isinstance(ours, str) else f"{ours_name}: {ours:.4g}")
    return " · ".join(parts)


def _setting(name: str, value) -> str:
    """A setting and its value in words: 'batch size 124', 'a constant learning rate'."""
    if name == "lr_milestones" and not value:
        return "a constant learning rate"
    label = FIELDS[name].label
    label = label if label[1:2].isupper() else label[:1].lower() + label[1:]     # 'LR factor …' stays
    return f"{label} {format_value(value)}"


def _chainer(case: int, act: str, units: int, dropout: bool, mask: float = 0.0, figure=None) -> Preset:
    what = f"{act.capitalize()} {units}" + (" dropout" if dropout else "") + \
        (f" + {mask:.0%} masking noise" if mask else "")
    return Preset(
        name=f"chainer-case{case}",
        title=f"Chainer case {case}: {what}",
        tutorial="Chainer study of 7 cases: 784-h-784, identity output, MSE, Adam, batch 100, 20 epochs, "
                 "dropout 0.5 on hidden and output; first-layer and transposed second-layer weights as tiles.",
        model=ModelConfig(family="shallow", hidden=(units,), activation=act, output="identity", loss="mse",
                          dropout=0.5 if dropout else 0.0, dropout_where="hidden+output", init="chainer"),
        data=DataConfig(),
        train=TrainConfig(epochs=20, batch_size=100, lr=1e-3, noise="mask" if mask else "none",
                          noise_level=mask),
        figure=figure, figure_metric="test_loss", figure_label="test MSE (eval mode)")


PRESETS: dict[str, Preset] = {p.name: p for p in [
    Preset(
        name="pytorch-784-200",
        title="PyTorch 784-200-784",
        tutorial="PyTorch tutorial: 784-200-784, ReLU hidden, sigmoid output, BCE, Adam 1e-3, batch 124, "
                 "10 epochs; reports a final training BCE of 0.066.",
        model=ModelConfig(family="shallow", hidden=(200,), activation="relu", output="sigmoid", loss="bce"),
        data=DataConfig(),
        train=TrainConfig(epochs=10, batch_size=124, lr=1e-3),
        figure=0.066, figure_metric="train_loss", figure_label="final train BCE"),
    Preset(
        name="keras-784-32",
        title="Keras 784-32-784",
        tutorial="Keras tutorial: 784-32-784, ReLU/sigmoid, BCE, Adam (eps 1e-7), batch 128, first 20% of the "
                 "training set held out for validation, Glorot-uniform init, 20 epochs; validation BCE about 0.09.",
        model=ModelConfig(family="shallow", hidden=(32,), activation="relu", output="sigmoid", loss="bce",
                          init="keras"),
        data=DataConfig(val_fraction=0.2),
        train=TrainConfig(epochs=20, batch_size=128, lr=1e-3, adam_eps=1e-7),
        figure=0.093, figure_metric="val_loss", figure_label="validation BCE"),
    _chainer(1, "relu", 1000, dropout=True, figure=0.044),
    _chainer(2, "relu", 1000, dropout=False),
    _chainer(3, "relu", 400, dropout=True),
    _chainer(4, "relu", 400, dropout=False),
    _chainer(5, "sigmoid", 1000, dropout=True),
    _chainer(6, "sigmoid", 1000, dropout=True, mask=0.2),
    _chainer(7, "sigmoid", 100, dropout=False, mask=0.2),
    Preset(
        name="conv-digit0",
        title="Conv AE trained on 0s (anomaly detection)",
        tutorial="Convolutional AE (1->16->4 conv/pool, transposed-conv decoder) trained only on digit 0, MSE, "
                 "Adam 1e-3, batch 50, 30 epochs; its reconstruction error flags a 6 as abnormal. The tutorial "
                 "scales its inputs to -1..1 yet ends in a sigmoid (outputs 0..1), so it can never reconstruct "
                 "the background exactly; here inputs stay in 0..1, the sigmoid's own range.",
        model=ModelConfig(family="conv", channels=(16, 4), activation="relu", output="sigmoid", loss="mse"),
        data=DataConfig(classes=(0,)),
        train=TrainConfig(epochs=30, batch_size=50, lr=1e-3),
        figure=None, figure_metric="test_loss", figure_label="test MSE on 0s"),
    Preset(
        name="stacked-2d",
        title="Stacked 784-256-128-64-2 (2-D latent)",
        tutorial="Stacked tanh AE 784-256-128-64-2 whose 2-D code ends in a tanh too (the tutorial: the embedding "
                 "space is limited to -1..1), sigmoid output, MSE, Adam 1e-3, batch 64, learning rate halved at "
                 "epochs 10 and 40, 20 epochs; mean MSE about 0.0347, a 2-D latent scatter, decoder images over "
                 "a 9x9 grid from -1 to 1 and at points outside it.",
        model=ModelConfig(family="deep", hidden=(256, 128, 64, 2), activation="tanh", linear_code=False,
                          output="sigmoid", loss="mse"),
        data=DataConfig(),
        train=TrainConfig(epochs=20, batch_size=64, lr=1e-3, lr_milestones=(10, 40), lr_gamma=0.5),
        figure=0.0347, figure_metric="test_loss", figure_label="mean test MSE"),
    Preset(
        name="keras-vae-2d",
        title="Keras VAE 784-256-2 (2-D latent)",
        tutorial="Keras example variational_autoencoder.py (2016-2018): 784-256-2 ReLU encoder with mean and "
                 "log-variance heads, mirrored decoder, loss 784·BCE + KL per image, RMSprop, batch 100, 50 epochs, "
                 "the test set as validation. Its figures are pictures: the 15×15 manifold decoded over the "
                 "prior's quantiles (Φ⁻¹ of 0.05…0.95) and the 2-D scatter of test codes by class.",
        model=ModelConfig(family="vae", hidden=(256,), latent=2, activation="relu", loss="bce", init="keras"),
        data=DataConfig(),
        train=TrainConfig(epochs=50, batch_size=100, lr=1e-3, adam_eps=1e-7, optimizer="rmsprop"),
        figure=None, figure_metric="test_loss",
        figure_label="test loss per image, code at its mean (BCE + KL, nats)"),
    Preset(
        name="conv-vae-2d",
        title="Convolutional VAE (2-D latent)",
        tutorial="keras-io VAE example: conv 32 → conv 64 (3×3, stride 2) → dense 16 → 2-D code; decoder dense "
                 "7·7·64 → transposed convs 64, 32 → 1; loss BCE summed over the pixels + KL; Adam, batch 128, "
                 "30 epochs. Its log shows at epoch 14 a training loss of 148.87 per image (reconstruction 142.57, "
                 "KL 6.62), trained on the training and test sets together; here it trains on the 60,000 "
                 "training images only, and its figure is the training loss of the last epoch.",
        model=ModelConfig(family="conv-vae", channels=(32, 64), hidden=(16,), latent=2, activation="relu",
                          loss="bce", init="keras"),
        data=DataConfig(),
        train=TrainConfig(epochs=30, batch_size=128, lr=1e-3, adam_eps=1e-7),
        figure=148.87, figure_metric="train_loss", figure_label="train loss per image (theirs: epoch 14, train+test)"),
    Preset(
        name="sparse-784-32",
        title="Sparse 784-32-784 (L1 on the code)",
        tutorial="Keras blog \"Building Autoencoders in Keras\": 784-32 ReLU with an L1 activity penalty of 1e-4 on "
                 "the code, sigmoid output, BCE, Adam, batch 256, 100 epochs, the test set as validation; train/test "
                 "loss 0.11/0.10, and a mean code activation of 3.33 against 7.30 for the plain 784-32.",
        model=ModelConfig(family="shallow", hidden=(32,), activation="relu", output="sigmoid", loss="bce",
                          sparsity=1e-4, init="keras"),
        data=DataConfig(),
        train=TrainConfig(epochs=100, batch_size=256, lr=1e-3, adam_eps=1e-7),
        figure=0.10, figure_metric="test_loss", figure_label="test loss (BCE + L1 penalty)"),
    Preset(
        name="iwae-vae-50",
        title="VAE 784-200-200-50 (Burda et al.)",
        tutorial="The one-stochastic-layer model of Burda et al. (ICLR 2016): 784-200-200-50 tanh encoder, the "
                 "mirror decoder, Bernoulli output on dynamically binarised MNIST, Adam 1e-3, batch 20; test NLL "
                 "86.76 nats (k = 5,000 importance samples) after 3,280 passes over the data. Here 50 passes; the "
                 "figure compared is the test loss with the code at its posterior mean, not the NLL: "
                 "`python -m aecore.labs.likelihood` estimates that.",
        model=ModelConfig(family="vae", hidden=(200, 200), latent=50, activation="tanh", loss="bce"),
        data=DataConfig(),
        train=TrainConfig(epochs=50, batch_size=20, lr=1e-3, binarize=True),
        figure=86.76, figure_metric="test_loss", figure_label="test loss, code at its mean, nats (theirs: NLL)"),
]}


def get(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}") from None
