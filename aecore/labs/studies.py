"""Studies: several runs as one experiment, queued through the run service as a series.

- "chainer": the Chainer tutorial's seven cases (the presets chainer-case1..7): per case the first-layer
  filters, the transposed last-layer filters and the test MSE, side by side, as the tutorial compares them.
- "code-size": the shallow autoencoder 784-k-784 for k = 2, 8, 32, 128, 512 against PCA with k components,
  the classic comparison: test reconstruction error against k, for both on the same axes.
- "beta": the keras-vae-2d VAE with the KL term weighted by beta = 0.5, 1, 2, 4 (a beta-VAE): its test
  reconstruction term and KL, and the quality of its prior samples as the digit classifier judges them
  (`aecore.labs.classifier.judge`: confident share, inception score, digits it never draws), against beta.

A `Study` is a frozen definition; `registry.submit_series(study.specs, data, visitor)` runs it one run at a
time (aecore.runs.registry), so a study never starts a thread of its own and holds at most one training slot.
The functions below turn the series' runs (RunViews) into the study's results as they finish.

Epochs are shortened from the tutorials' so that a study takes minutes on a 2-core CPU; each study says by how
much (`Study.epochs_note`). `python -m aecore.labs.studies chainer|code-size` runs one through a registry of its own
(as a server would, one run at a time) and prints its figures as JSON.

The code-size y-axis is one quantity for both methods: mean squared error per pixel on the test set, pixels in
[0, 1]. For the autoencoders it is `scoring.reconstruction_error` averaged over the test images (their sigmoid
output is already in [0, 1], so its clamp changes nothing); for PCA, `pca_errors`: fitted on the training set,
test images projected on the top k components and reconstructed (plain linear reconstruction, not clipped).
The autoencoders train with BCE, the Keras tutorial's loss, although MSE is what is plotted: measured once
(seed 0, 3 epochs, real MNIST), BCE training gave the lower test MSE (k=32: 0.0183 vs 0.0191 when trained on
MSE; k=512: 0.00247 vs 0.00273).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots
import torch

from aecore.labs import generative
from aecore.engine import presets, viz
from aecore.engine.data import DataConfig, DataError, load, to_float
from aecore.runs import RegistryConfig, RunRegistry, RunSpec
from aecore.engine.scoring import reconstruction_error
from aecore.engine.train import evaluate_terms

CHAINER_CASES = tuple(f"chainer-case{i}" for i in range(1, 8))
CHAINER_EPOCHS = 3          # the tutorial trains 20
CODE_SIZES = (2, 8, 32, 128, 512)
CODE_SIZE_EPOCHS = 5        # the Keras preset trains 20; 5 keep the study under 2 min (not converged: said so)
BETAS = (0.5, 1.0, 2.0, 4.0)
BETA_EPOCHS = 10            # keras-vae-2d trains 50
BETA_SAMPLES = 2000         # prior samples judged per run
# Wall time of each whole study with the default epochs, measured once with `python -m aecore.labs.studies NAME` on a
# 2-core CPU with real MNIST (processes backend, other work on the machine at the same time).
MINUTES = {"chainer": 4.6, "code-size": 1.6, "beta": 3.7}
PIXELS = 28 * 28


@dataclass(frozen=True)
class Study:
    """A multi-run experiment: its runs, what it shows, and how its epochs compare with the tutorial's."""
    name: str                       # "chainer" or "code-size"; the page's ?study= link holds a series id instead
    title: str
    shows: str                      # what the study shows, in a sentence or two
    specs: tuple[RunSpec, ...]      # trained one after another, in this order
    epochs: int                     # epochs each run trains here
    tutorial_epochs: int            # the epochs of the tutorial (or preset) it follows
    minutes: float | None           # MINUTES with the default epochs; None with other epochs (not measured)

    @property
    def data(self) -> DataConfig:
        return self.specs[0].data

    @property
    def epochs_note(self) -> str:
        if self.epochs < self.tutorial_epochs:
            return f"shortened to {self.epochs} epochs per run from the tutorial's {self.tutorial_epochs}"
        return f"{self.epochs} epochs per run, as the tutorial"

    @property
    def run_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.specs)


def chainer(epochs: int | None = None) -> Study:
    """The seven Chainer cases as the presets define them, with `epochs` (default CHAINER_EPOCHS) instead of the
    tutorial's 20. Cases 6 and 7 train on inputs with 20% of their pixels masked (the clean image stays the
    target)."""
    epochs = epochs or CHAINER_EPOCHS
    specs = tuple(RunSpec(name=name, model=p.model, data=p.data, train=replace(p.train, epochs=epochs))
                  for name, p in ((n, presets.get(n)) for n in CHAINER_CASES))
    return Study(
        name="chainer", title="Chainer study: seven shallow autoencoders",
        shows="The Chainer tutorial's seven cases (ReLU or sigmoid, 1000, 400 or 100 hidden units, with or without "
              "dropout; cases 6 and 7 with 20% masking noise): for each, 36 first-layer filters, 36 transposed "
              "last-layer filters and the test MSE, in one grid.",
        specs=specs, epochs=epochs, tutorial_epochs=presets.get(CHAINER_CASES[0]).train.epochs,
        minutes=MINUTES["chainer"] if epochs == CHAINER_EPOCHS else None)


def code_size(epochs: int | None = None, sizes: tuple[int, ...] = CODE_SIZES) -> Study:
    """784-k-784 for each k in `sizes`: the Keras preset's setup (ReLU, sigmoid output, BCE, Adam, batch 128,
    Glorot init) trained on the whole training set, as PCA is fitted on it; `epochs` default CODE_SIZE_EPOCHS."""
    epochs = epochs or CODE_SIZE_EPOCHS
    keras = presets.get("keras-784-32")
    specs = tuple(RunSpec(name=f"code-{k}", model=replace(keras.model, hidden=(k,)), data=DataConfig(),
                          train=replace(keras.train, epochs=epochs)) for k in sizes)
    return Study(
        name="code-size", title="Code size: autoencoder against PCA",
        shows=f"The shallow autoencoder 784-k-784 for k = {', '.join(map(str, sizes))}, and PCA with k "
              f"components fitted on the same training set: test reconstruction error (MSE per pixel) "
              f"against k, on the same axes.",
        specs=specs, epochs=epochs, tutorial_epochs=keras.train.epochs,
        minutes=MINUTES["code-size"] if epochs == CODE_SIZE_EPOCHS and sizes == CODE_SIZES else None)


def beta(epochs: int | None = None, betas: tuple[float, ...] = BETAS) -> Study:
    """keras-vae-2d (784-256-2, BCE + beta * KL, RMSprop, batch 100) for each beta in `betas`, all from the same
    seed, on the whole training set; `epochs` default BETA_EPOCHS."""
    epochs = epochs or BETA_EPOCHS
    vae = presets.get("keras-vae-2d")
    specs = tuple(RunSpec(name=f"beta-{b:g}", model=replace(vae.model, beta=float(b)), data=vae.data,
                          train=replace(vae.train, epochs=epochs)) for b in betas)
    return Study(
        name="beta", title="β study: reconstruction against samples",
        shows=f"The VAE 784-256-2 of the Keras example with its KL term weighted by β = "
              f"{', '.join(f'{b:g}' for b in betas)}: the test reconstruction term and KL, and how often its "
              f"samples from the prior are digits the classifier is sure of, against β.",
        specs=specs, epochs=epochs, tutorial_epochs=vae.train.epochs,
        minutes=MINUTES["beta"] if epochs == BETA_EPOCHS and tuple(betas) == BETAS else None)


STUDIES = {"chainer": chainer, "code-size": code_size, "beta": beta}


def get(name: str, epochs: int | None = None) -> Study:
    """A study by name, with its default epochs unless `epochs` is given."""
    try:
        make = STUDIES[name]
    except KeyError:
        raise ValueError(f"unknown study {name!r}; choose one of: {', '.join(STUDIES)}") from None
    return make(epochs=epochs)


def identify(views) -> str | None:
    """Which study a series' runs belong to, from their names (None if none fits)."""
    names = {v.spec.name for v in views}
    for name in STUDIES:
        if names and names <= set(get(name).run_names):
            return name
    return None


# ------------------------------------------------------------------------------------------- results
@dataclass(frozen=True)
class CaseResult:
    """One Chainer case as the study's grid shows it."""
    name: str
    title: str
    state: str                      # the run's state: queued, running, finished, stopped, failed
    test_mse: float | None          # the run's test loss (MSE, eval mode), once it has ended with a result
    encoder: np.ndarray | None      # first-layer filters (n, 28, 28) in [0, 1], once the run has weights
    decoder: np.ndarray | None      # transposed last-layer filters (n, 28, 28) in [0, 1]


def chainer_results(views, tiles: int = 36) -> list[CaseResult]:
    """Per case (run), in the study's order: its test MSE and `tiles` filters of each end of the network."""
    out = []
    for v in views:
        result = v.snapshot.result
        mse = result["figures"]["test_loss"] if result else None
        enc = dec = None
        if v.model is not None:
            enc = viz.encoder_filters(v.model, tiles).numpy()
            dec = viz.decoder_filters(v.model, tiles).numpy()
        title = presets.get(v.spec.name).title if v.spec.name in presets.PRESETS else v.spec.name
        out.append(CaseResult(v.spec.name, title, v.state, mse, enc, dec))
    return out


@dataclass(frozen=True)
class SizePoint:
    """One code size of the code-size study: the autoencoder's test error once its run has ended."""
    size: int
    run_id: str
    state: str
    test_mse: float | None


def ae_test_mse(model, test_images) -> float:
    """Mean squared error per pixel of the model's reconstructions of `test_images`, pixels in [0, 1]."""
    return float(reconstruction_error(model, test_images).mean(dtype=np.float64))


def code_size_results(views, mse: Callable[[object], float]) -> list[SizePoint]:
    """Per run, in the study's order: its code size and, once it has finished, `mse(view)`: ae_test_mse of its
    model on the test images (a page passes a cached look-up, since the runs do not keep that number)."""
    return [SizePoint(v.spec.model.hidden[0], v.id, v.state,
                      mse(v) if v.state == "finished" and v.model is not None else None) for v in views]


def pca_errors(train_images, test_images, sizes, chunk: int = 10_000) -> np.ndarray:
    """PCA's test reconstruction error (MSE per pixel, pixels in [0, 1]) with k components for each k in
    `sizes`, float64 (len(sizes),).

    Fitted on `train_images` (N, 28, 28): centred, eigendecomposition of the 784 x 784 covariance in float64.
    Each test image is centred, projected on the top k components and reconstructed. Images are uint8 (scaled
    by 1/255) or floats in [0, 1]; both are read `chunk` images at a time to bound memory.
    """
    sizes = [int(k) for k in sizes]
    if not sizes or any(not 1 <= k <= PIXELS for k in sizes):
        raise ValueError(f"PCA sizes must be from 1 to {PIXELS}, got {sizes}")
    n_train, n_test = len(train_images), len(test_images)
    if n_train < 2 or n_test < 1:
        raise ValueError(f"PCA needs at least 2 training images and 1 test image, got {n_train} and {n_test}")
    mean = sum(_pixels(train_images, i, chunk).sum(0) for i in range(0, n_train, chunk)) / n_train
    cov = np.zeros((PIXELS, PIXELS))
    for i in range(0, n_train, chunk):
        x = _pixels(train_images, i, chunk) - mean
        cov += x.T @ x
    values, vectors = np.linalg.eigh(cov / n_train)                # ascending eigenvalues
    top = vectors[:, np.argsort(values)[::-1][:max(sizes)]]        # (784, k_max), largest variance first
    # The residual of a projection on k orthonormal components is the centred energy minus the energy of the k
    # coefficients: one projection on k_max components gives the error for every k.
    residual = np.zeros(len(sizes))
    for i in range(0, n_test, chunk):
        x = _pixels(test_images, i, chunk) - mean
        captured = np.cumsum(((x @ top) ** 2).sum(0))               # (k_max,)
        residual += (x ** 2).sum() - captured[np.array(sizes) - 1]
    return np.maximum(residual, 0.0) / (n_test * PIXELS)


def _pixels(images, start: int, count: int) -> np.ndarray:
    """Images [start, start + count) as float64 (n, 784) in [0, 1]."""
    part = images[start:start + count]
    a = to_float(part, torch.float64, channel=False).reshape(len(part), -1).numpy()
    if a.shape[1] != PIXELS:
        raise ValueError(f"images must be 28x28, got {a.shape[1]} pixels each")
    return a


def code_size_figure(points: list[SizePoint], sizes, pca: np.ndarray, epochs: int) -> go.Figure:
    """Test MSE against code size: the autoencoders that have finished, and PCA at `sizes`, log-log axes."""
    done = [p for p in points if p.test_mse is not None]
    fig = go.Figure([
        go.Scatter(x=[p.size for p in done], y=[p.test_mse for p in done], mode="lines+markers",
                   name=f"autoencoder 784-k-784 ({epochs} epochs)"),
        go.Scatter(x=list(sizes), y=[float(e) for e in pca], mode="lines+markers", name="PCA, k components",
                   line=dict(dash="dash")),
    ])
    fig.update_xaxes(type="log", title="code size k (log scale)", tickvals=list(sizes))
    fig.update_yaxes(type="log", title="test MSE per pixel (pixels in [0, 1], log scale)")
    fig.update_layout(height=420, margin=dict(l=10, r=10, t=30, b=10), legend=dict(orientation="h", y=1.1),
                      hovermode="x unified")
    return fig


@dataclass(frozen=True)
class BetaPoint:
    """One beta of the beta study, with its figures once its run has finished (`beta_measure`)."""
    beta: float
    run_id: str
    state: str
    figures: dict | None


def beta_measure(model, test_images, judge_model=None, samples: int = BETA_SAMPLES, seed: int = 0) -> dict:
    """A VAE's side of the trade-off beta sets: its test reconstruction term and KL (nats per image, code at its
    mean, `train.evaluate_terms`), and `samples` decoded draws from its prior judged by the digit classifier
    (`judge_model`, default the shipped one): the share it is sure of (p >= 0.9), the inception score, and the
    digits under a quarter of a fair share of the samples (2.5 %), the ones the generator forgets."""
    terms = evaluate_terms(model, test_images)
    verdict = generative.judge_images(generative.sample_images(model, samples, seed=seed), judge_model)
    return {"reconstruction": terms["reconstruction"], "KL": terms["KL"], "samples": samples,
            "confident_share": verdict["confident_share"], "inception_score": verdict["inception_score"],
            "rare_digits": [d for d, share in enumerate(verdict["class_share"]) if share < 0.025]}


def beta_results(views, measure: Callable[[object], dict]) -> list[BetaPoint]:
    """Per run, in the study's order: its beta and, once it has finished, `measure(view)`: `beta_measure` of its
    model (a page passes a cached look-up)."""
    return [BetaPoint(v.spec.model.beta, v.id, v.state,
                      measure(v) if v.state == "finished" and v.model is not None else None) for v in views]


def beta_figure(points: list[BetaPoint], epochs: int) -> go.Figure:
    """Two panels against beta (log scale): the test reconstruction term and KL; the samples' confident share."""
    done = [p for p in points if p.figures is not None]
    betas = [p.beta for p in done]
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.12, subplot_titles=(
        f"Test reconstruction and KL, nats per image ({epochs} epochs)", "Prior samples the classifier is sure of"))
    for name, dash in (("reconstruction", None), ("KL", "dash")):
        fig.add_trace(go.Scatter(x=betas, y=[p.figures[name] for p in done], mode="lines+markers", name=name,
                                 line=dict(dash=dash)), row=1, col=1)
    fig.add_trace(go.Scatter(x=betas, y=[100 * p.figures["confident_share"] for p in done], mode="lines+markers",
                             name="samples with p ≥ 0.9 (%)",
                             customdata=[[p.figures["inception_score"]] for p in done],
                             hovertemplate="β %{x}: %{y:.1f} % sure · inception score %{customdata[0]:.2f}"),
                  row=1, col=2)
    ticks = [p.beta for p in points]
    fig.update_xaxes(type="log", title="β (log scale)", tickvals=ticks, ticktext=[f"{b:g}" for b in ticks])
    fig.update_yaxes(title="nats per image", row=1, col=1)
    fig.update_yaxes(title="% of samples", rangemode="tozero", row=1, col=2)
    fig.update_layout(height=420, margin=dict(l=10, r=10, t=50, b=10), legend=dict(orientation="h", y=-0.25))
    return fig


# ------------------------------------------------------------------------------------------- command line
def main(argv: list[str] | None = None) -> int:
    """Run a study through a run registry of this process and print its figures as one JSON object."""
    p = argparse.ArgumentParser(prog="python -m aecore.labs.studies", description="Run an AE Lab study.")
    p.add_argument("study", choices=list(STUDIES))
    p.add_argument("--epochs", type=int, help="epochs per run (default: the study's own)")
    p.add_argument("--seed", type=int, default=0, help="the seed of every run (weights, shuffling, noise)")
    p.add_argument("--data-dir", help="folder with the IDX files (else $AECORE_DATA_DIR, ./data)")
    args = p.parse_args(argv)
    study = get(args.study, args.epochs)
    study = replace(study, specs=tuple(replace(s, train=replace(s.train, seed=args.seed)) for s in study.specs))
    try:
        data = load(study.data, args.data_dir)
    except DataError as e:
        print(f"aecore.labs.studies: {e}", file=sys.stderr)
        return 1
    registry = RunRegistry(RegistryConfig.from_settings(os.environ), sweep_every=None)   # nobody to watch it
    started = time.monotonic()
    series = registry.submit_series(study.specs, data, "command-line")
    try:
        shown = None
        while any(v.active for v in registry.series(series)):
            now = [(v.spec.name, v.state) for v in registry.series(series)]
            if now != shown:
                print(" · ".join(f"{n} {s}" for n, s in now), file=sys.stderr, flush=True)
                shown = now
            time.sleep(1.0)
    finally:
        registry.shutdown(wait=60)
    views = registry.series(series)
    out = {"study": study.name, "epochs": study.epochs, "note": study.epochs_note, "seed": args.seed,
           "wall_s": round(time.monotonic() - started, 1),
           "runs": [{"name": v.spec.name, "state": v.state,
                     "train_s": round(v.snapshot.last.elapsed, 1) if v.snapshot.last else None,
                     "test_loss": v.snapshot.result["figures"]["test_loss"] if v.snapshot.result else None}
                    for v in views]}
    if study.name == "code-size":
        sizes = [v.spec.model.hidden[0] for v in views]
        pca = pca_errors(data.train.images, data.test.images, sizes)
        points = code_size_results(views, lambda v: ae_test_mse(v.model, data.test.images))
        out["test_mse"] = [{"k": p.size, "autoencoder": p.test_mse, "pca": float(e)} for p, e in zip(points, pca)]
    if study.name == "beta":
        out["beta"] = [{"beta": p.beta, **(p.figures or {})}
                       for p in beta_results(views, lambda v: beta_measure(v.model, data.test.images))]
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
