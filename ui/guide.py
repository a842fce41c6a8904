"""What each page shows, in plain words: the line under its title and its "What am I looking at?" expander.

A figure beside a claim names both sides: the tutorial's number (aecore.engine.presets) and ours, read from what the
shipped files record (checkpoint metadata from the safetensors header, the classifier's and the pretraining's
results), so a retrained file changes the text. A few figures only a full measurement over MNIST gives are quoted
from the README's measured tables (marked below); MNIST is never loaded here. A missing file reads "not
available": the guide still renders.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import streamlit as st

from aecore.labs import anomaly, classifier, pretrain, studies
from aecore.engine import checkpoint, presets

MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
LABEL = "What am I looking at?"
NOT_AVAILABLE = "not available"


# ------------------------------------------------------------------------------------------- reading the files
def file_meta(path, key: str = "aecore") -> dict | None:
    """The JSON object a safetensors file keeps under `key` in its header metadata ("aecore" for autoencoders,
    "classifier" for the digit judge), without loading its weights; None when the file is missing or is not one
    of ours. Cached per file version: do not modify the result."""
    path = Path(path)
    try:
        version = path.stat().st_mtime_ns
    except OSError:
        return None
    return _read_meta(str(path), version, key)


@functools.lru_cache(maxsize=64)
def _read_meta(path: str, version: int, key: str) -> dict | None:   # version: a retrained file is read again
    try:
        return checkpoint.metadata(path, key)
    except checkpoint.CheckpointError:
        return None


def shipped(name: str) -> dict:
    """A shipped autoencoder's metadata (models/<name>.safetensors); {} when it is not there."""
    return file_meta(MODELS_DIR / f"{name}.safetensors") or {}


def number(value) -> float | None:
    """A figure as a float; None for anything else a file may hold there (null, text)."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def figure(name: str, metric: str) -> float | None:
    """One of a shipped model's final figures ('train_loss', 'val_loss', 'test_loss'), or None."""
    return number((shipped(name).get("figures") or {}).get(metric))


def versus(name: str) -> str:
    """A preset's figure: 'the tutorial: 0.066 · ours: 0.06622 (shipped pytorch-784-200, 10 epochs)'."""
    p = presets.get(name)
    theirs = f"{p.figure:g}" if p.figure is not None else "a picture, no number"   # as the tutorial wrote it
    ours = figure(name, p.figure_metric)
    if ours is None:
        return f"the tutorial: {theirs} · ours: {NOT_AVAILABLE} (no shipped {name} checkpoint: train the preset)"
    epochs = (shipped(name).get("train") or {}).get("epochs")
    return f"the tutorial: {theirs} · ours: {ours:.4g} (shipped {name}" + (f", {epochs} epochs)" if epochs else ")")


def compared(name: str) -> str:
    """'**PyTorch 784-200-784**, final train BCE: the tutorial: 0.066 · ours: …'"""
    p = presets.get(name)
    return f"**{p.title}**, {p.figure_label}: {versus(name)}"


def detector_aucs() -> dict[int, float]:
    """normal class -> test AUC of the shipped one-class MNIST detectors of the recommended recipe."""
    out = {}
    for path in anomaly.shipped_detectors().values():
        a = (file_meta(path) or {}).get("anomaly") or {}
        one_class = a.get("dataset") == "mnist" and len(a.get("normal") or ()) == 1
        if one_class and a.get("recipe") == anomaly.DEFAULT_RECIPE and number(a.get("auc")) is not None:
            out[int(a["normal"][0])] = number(a["auc"])
    return out


def judge() -> dict:
    """The digit classifier's figures, as its file records them; {} when it is missing."""
    return file_meta(classifier.SHIPPED, "classifier") or {}


def few_labels() -> dict | None:
    """The pretraining table (models/pretrain/results.json), or None when it is missing or malformed."""
    try:
        version = pretrain.RESULTS.stat().st_mtime_ns
    except OSError:
        return None
    return _results(str(pretrain.RESULTS), version)


@functools.lru_cache(maxsize=4)
def _results(path: str, version: int) -> dict | None:
    try:
        return pretrain.load_results(path)
    except pretrain.ResultsError:
        return None


def percent(value) -> str:
    value = number(value)
    return NOT_AVAILABLE if value is None else f"{value:.1%}"


# ------------------------------------------------------------------------------------------- the pages
def _start() -> str:
    return f"""**The idea.** The row under "An autoencoder at work" is one real model at work, the shipped
keras-784-32 (784 → 32 → 784): a digit goes in, the encoder turns it into 32 numbers, and the decoder draws the
digit again from those 32 numbers alone. What it keeps is what digits share; what it drops shows as blur.

**How to read it.**
- *The code*: 32 cells, one per number, from black (0) to white (the largest); its units are ReLUs, so a
  number is never negative, and many are exactly 0 for a given digit.
- *The error*: the mean squared difference per pixel between the digit and its reconstruction (pixels from 0 to
  1): 0 is a perfect copy.
- *The cards*: each picture comes from a shipped model's weights: first-layer filters (the pattern a hidden unit
  responds to), or the decoder's images over a grid of codes.

**The figure behind the example.** {compared("keras-784-32")}."""


def _train() -> str:
    figures = "\n".join(f"- {compared(p.name)}" for p in presets.PRESETS.values() if p.figure is not None)
    return f"""**The idea.** An autoencoder is a network in two halves. The *encoder* squeezes each 28×28 image (784
numbers) into a short *code*; the *decoder* rebuilds the image from that code alone. Training nudges both halves,
batch after batch, so that the rebuilt image comes closer to the original. The *loss* measures how far off it still
is: lower is better. With fewer code numbers than pixels, the network has to learn what digits have in common.

**How to read it.**
- *Model summary*: each layer, the shape it outputs and how many weights it holds.
- *Loss chart*: the training loss every few batches, and the held-out loss after each epoch (one pass over the
  training images), measured on images the model never trains on. The grey dashed line is the tutorial's figure,
  when the form holds its preset.
- *Digits*: the top row is eight fixed test digits, the bottom row the model's rebuild after the last epoch.
- A VAE or a sparse model gets a second chart: the parts of its loss, each on its own scale.

**The tutorials' figures against ours** (ours: the shipped model trained with that preset, from its checkpoint):
{figures}"""


def _inspect() -> str:
    return f"""**The idea.** Each first-layer unit adds up the 784 pixels, each with its own weight; drawn as a 28×28
picture, those weights show the pattern the unit responds to. The last layer works the other way: each unit adds its
own 28×28 pattern to the output. Rebuilding chosen digits shows what the model keeps and what it blurs.

**How to read it.**
- *Encoder and decoder filters*: one tile per unit, each scaled on its own (light: its largest weights, dark: its
  most negative). Stroke-like tiles are learned features; noise-like tiles, units that learned little. A conv model
  shows its 3×3 kernels, and feature maps per digit, instead.
- *Reconstructions*: the originals, the inputs as the model saw them in training (when it trained on noise or on
  deformed inputs) and the rebuilds, with each digit's error (mean squared error per pixel: lower is better).
- *How sparse is the code?*: the mean code activation, the share of code numbers that are exactly 0 (per unit, most
  often 0 first) and a histogram of the code values, beside a second model.
- *Last run's timeline*: the last run of this session, its eight digits rebuilt after each epoch.

**The figures.** Mean code activation, a sparse 784-32 (an L1 penalty on the code) against the plain one: the
Keras blog: 3.33 against 7.30 · ours: 1.26 against 8.94 (shipped sparse-784-32 and keras-784-32, all 10,000 test
digits, measured once; the page measures it again on its images). {compared("sparse-784-32")}. The Chainer tutorial
compares its cases by these filter pictures, not by a number."""


def _latent() -> str:
    return f"""**The idea.** The encoder turns every image into a code: a point in a space with one dimension per code
number. Digits that look alike should land close together. The decoder turns any point into an image, even points
no digit was ever encoded to.

**How to read it.**
- *Scatter*: one dot per test digit, coloured by its class. A 2-number code is drawn as it is; a longer one through
  its first two principal components (the two directions in which the codes vary most), which hides the rest.
- *Decoder grid*: points spread evenly over the plane, each decoded (top row: the largest y). Where neighbouring
  images change smoothly, the code space is continuous.
- *Codes outside the range* (a code bounded by tanh or sigmoid): points the encoder can never produce, which the
  decoder still draws.
- *Code strips*: each digit's code numbers as coloured cells, and its decoded image.

**The figures.** {compared("stacked-2d")}. The Keras VAE example shows this scatter and the decoded manifold as
pictures; {compared("keras-vae-2d")}."""


# Measured once over 1,000 samples per model (README, "Generative autoencoders"): it needs the decoders and MNIST.
SAMPLES_SURE = (("real test digits", 0.978), ("conv-vae-2d", 0.607), ("keras-vae-2d", 0.526),
                ("stacked-2d", 0.657), ("pytorch-784-200", 0.349))


def _generate() -> str:
    j = judge()
    sure = ", ".join(f"{name} {share:.1%}" for name, share in SAMPLES_SURE)
    score = number(j.get("test_inception_score"))
    judged = (f"The judge (from its file): test accuracy {percent(j.get('test_accuracy'))}, sure (≥ 0.9) of "
              f"{percent(j.get('test_confident_share'))} of real test digits, inception score {score:.2f} on them."
              if j and score is not None else f"The judge's figures: {NOT_AVAILABLE} (no classifier file).")
    return f"""**The idea.** A decoder turns any code into an image, so random codes give new pictures, provided they
are drawn where the training digits' codes lie. A *VAE* (variational autoencoder) is trained so that its codes
follow a standard Gaussian N(0, I), which says where to draw. A plain autoencoder promises nothing of the kind: its
codes are drawn here from a Gaussian fitted to its training codes.

**How to read it.**
- *Samples*: decoded random codes. A separate digit classifier judges every sample drawn: the share it reads with
  confidence ≥ 0.9, the inception score (1: every sample reads as the same thing; 10: sure readings spread evenly
  over the ten digits) and how often it reads each digit, against real test digits.
- *Interpolation*: codes on the way from one digit's code to another's, decoded; for a 2-number code, the path is
  drawn over the test codes.
- *The decoded manifold*: for a 2-number code, a 15×15 grid of codes, decoded.
- *β study*: {len(studies.BETAS)} VAE runs, followed on the Studies page.

**The figures.** {judged} Samples read with confidence ≥ 0.9, measured once over 1,000 per model: {sure}. So
"a VAE samples better" does not hold against a 2-number plain code. {compared("conv-vae-2d")}."""


# Measured once (README, "Draw" and "The Draw page's verdict"): they need MNIST and the drawing set.
CENTRE_PX, CORRELATION, ACTIVE_MODEL_AUC = 0.16, 0.935, 0.686
DRAWN = {"mnist": "enlarged MNIST test digits", "font digit": "digits typed in fonts",
         "stroke digit": "digits drawn as pen strokes"}


def _draw() -> str:
    a = (file_meta(anomaly.DIGIT_DETECTOR) or {}).get("anomaly") or {}
    d = a.get("drawings") or {}
    reads = (judge().get("drawings") or {}).get("accuracy_by_kind") or {}
    counts = (judge().get("drawings") or {}).get("count_by_kind") or {}
    read = ("The classifier reads right " + ", ".join(f"{percent(v)} of {counts.get(k, '?')} {DRAWN.get(k, k + 's')}"
                                                      for k, v in reads.items()) + " (from its file)."
            if reads else f"The classifier's figures on drawings: {NOT_AVAILABLE}.")
    line = number(a.get("verdict_false_alarm"))
    detector = NOT_AVAILABLE if number(d.get("auc")) is None else (
        f"AUC {d['auc']:.3f} for digits against the rest, {percent(d.get('non_digits_unusual'))} of the non-digits "
        f"flagged, {percent(d.get('digits_typical'))} of the digits passed "
        f"({sum((d.get('count_by_kind') or {}).values()):,} drawings)")
    return f"""**The idea.** An autoencoder rebuilds well what looks like its training images. Your drawing is first
brought into MNIST's form (cropped, scaled to 20×20, centred in 28×28 by its centre of mass), then rebuilt by the
active model. Two other shipped networks answer the other questions: a digit classifier reads which digit it is,
and a digit detector (an autoencoder trained on all ten digits, measured on drawings) says whether it is a digit at
all.

**How to read it.**
- *Input, reconstruction, error*: your drawing in 28×28, the model's rebuild, and the squared error per pixel
  (black: none; red, yellow, white: ever larger).
- *Reconstruction error and its percentile*: the share of test digits the active model rebuilt better.
- *The reading*: the classifier's likeliest digit and its probability; under 90 % it says unsure.
- *Is it a digit?*: the detector's score, its percentile among real digits, and its verdict (the line:
  {NOT_AVAILABLE if line is None else f"{line:.0%}"} of real digits score above it).

**The figures.** Preprocessing: 1,000 test digits enlarged onto the canvas come back centred within {CENTRE_PX} px,
with a mean correlation of {CORRELATION} to the originals (measured once). {read} The detector, on its set of
canvas drawings (from its file): {detector}. The active model's error alone is a poor judge: the default
pytorch-784-200, with a line at its 95th percentile, reaches AUC {ACTIVE_MODEL_AUC} on the same drawings (measured
once)."""


# Measured once (README, "Anomaly detection"): conv-digit0's AUC needs the whole test set; Deep SVDD is published.
TUTORIAL_AUC, DEEP_SVDD_AUC = 0.673, 0.948


def _anomalies() -> str:
    aucs = detector_aucs()
    if aucs:
        worst = min(aucs, key=aucs.get)
        recipe = (f"mean AUC {sum(aucs.values()) / len(aucs):.3f} over the {len(aucs)} shipped one-class detectors "
                  f"(worst {aucs[worst]:.3f}, with {worst}s as normal), from their files")
    else:
        recipe = f"{NOT_AVAILABLE} (no shipped detectors in models/anomaly/)"
    return f"""**The idea.** A model trained on normal images only (say, 0s) rebuilds them well and other images worse,
so its reconstruction error can flag the odd ones out. Here an image's score is its squared error averaged over
its 20 worst-rebuilt pixels. One example proves little; the ROC-AUC measures the whole test set: the chance that a
random anomaly scores above a random normal image (1: always; 0.5: a coin toss).

**How to read it.**
- *The tutorial's case*: where the first test 6 falls among the 0s' scores, and each model's AUC for 0s against all
  other digits.
- *False-alarm target*: sets the threshold from held-out normal training images; precision (flagged images that are
  anomalies), recall (anomalies caught) and the table of counts follow it.
- *Histogram*: the scores of normal and anomalous test images, the threshold dashed. *ROC curve*: the detection rate
  against the false-alarm rate over every threshold; the cross is the current one.
- *Most and least anomalous*: the 20 highest- and lowest-scoring test images.

**The figures.** The tutorial: one 6 flagged, a picture without a number · ours: its conv autoencoder (shipped
conv-digit0) tells 0s from all other digits with AUC {TUTORIAL_AUC} only (measured once; the page measures it
again). The recommended recipe, dense-bn-16: {recipe}; Deep SVDD, published on the same protocol: {DEEP_SVDD_AUC}
(Ruff et al., 2018)."""


def _compare() -> str:
    losses = []
    for name in ("pytorch-784-200", "stacked-2d"):
        loss, value = (shipped(name).get("model") or {}).get("loss"), figure(name, "test_loss")
        losses.append(f"shipped {name}: {NOT_AVAILABLE}" if value is None or not loss else
                      f"shipped {name}: test {loss.upper()} {value:.4g}")
    return f"""**The idea.** Two runs that differ in one setting show what that setting does. The table lists every
model you can compare; the sections below show the ones you pick.

**How to read it.**
- *Loss per epoch*: solid, the training loss; dashed, the held-out loss. Each model in its own loss: a BCE curve and
  an MSE curve are not on one scale.
- *Settings that differ*: only the settings whose values are not all the same.
- *Figures*: each model's losses as it measured them, and the median squared error per test image, the one column
  every model shares.
- *Reconstructions* of the same test digits, and the *first-layer filters*, side by side.

**The figures.** Losses compare only within one loss: {'; '.join(losses)}. These are different measures: the
smaller number does not make the better model. The median squared error column compares them."""


# Measured once (README, "Studies"): each needs a whole study on MNIST.
CHAINER_CASE1_3_EPOCHS, CHAINER_CASE1_20_EPOCHS, CODE_32_AE, CODE_32_PCA = 0.0477, 0.0447, 0.0113, 0.0168


def _studies() -> str:
    took = "\n".join(f"- {s.title} — {studies.MINUTES[name]:g} min, {s.epochs} of the tutorial's "
                     f"{s.tutorial_epochs} epochs per run" for name, s in
                     ((name, studies.get(name)) for name in studies.STUDIES if name in studies.MINUTES))
    case1 = presets.get("chainer-case1")
    return f"""**The idea.** One training shows one setting; a study trains several that differ in one thing and puts
their results side by side. Its runs go through the server's queue one at a time, with fewer epochs than the
tutorials, so that a study takes minutes.

**How to read it.**
- *Progress*: each run's state; results appear as runs finish.
- *Chainer study*: one row per case, its test MSE (lower is better) and its first-layer and transposed last-layer
  filters as tiles.
- *Code size*: the test error (mean squared error per pixel) against the code size k, for the autoencoder and for
  PCA, the classic linear method, on the same axes.
- *β study*: a VAE's reconstruction term and KL against β, and how often its samples are digits the classifier is
  sure of.

**The figures.** Each whole study, measured once on a 2-core CPU:
{took}

Chainer case 1, test MSE (measured once):
the tutorial: {case1.figure:g} after {case1.train.epochs} epochs · ours: {CHAINER_CASE1_3_EPOCHS} after
{studies.CHAINER_EPOCHS}, {CHAINER_CASE1_20_EPOCHS} after {case1.train.epochs}. Code size k = 32 after
{studies.CODE_SIZE_EPOCHS} epochs (measured once): autoencoder {CODE_32_AE} against PCA {CODE_32_PCA}."""


def _pretrain() -> str:
    res = few_labels()
    if res is None:
        table = f"{NOT_AVAILABLE} (no measured table in {pretrain.RESULTS.parent.name}/{pretrain.RESULTS.name})"
    else:
        table = "; ".join(f"{r['labels']:,} labels: pretrained {r['pretrained_mean']:.1%} · random init "
                          f"{r['random_mean']:.1%} ({100 * (r['pretrained_mean'] - r['random_mean']):+.1f} points)"
                          for r in (res["rows"][0], res["rows"][-1])) + " (from models/pretrain/results.json)"
    refs = "; ".join(f"{name} {acc:.1%}" for name, acc in pretrain.REFERENCES)
    return f"""**The idea.** Labels are expensive, images are cheap. *Pretraining* first trains an autoencoder on all
60,000 training images without their labels: to rebuild each digit where it was from a masked, slightly turned,
scaled and moved copy through a narrow code, its encoder must learn what shapes digits are made of, whatever their
pose. A classifier then starts from that encoder, adds a
softmax layer, and trains on only N labelled images. From random weights the same network has to learn everything
from those N images; the pretrained one starts from features that already group similar digits together.

**How to read it.**
- *The table*: test accuracy (the share of the 10,000 test digits classified right) for each N, mean ± standard
  deviation over several draws of the labelled images, and the gain in percentage points.
- *The chart*: the same against N on a log scale, with published figures at 100 labels as grey lines.
- *The labelled images*: the 100 images one draw gives the classifiers.

**The figures.** {table}. Published at 100 labels: {refs}."""


# ------------------------------------------------------------------------------------------- rendering
@dataclass(frozen=True)
class Guide:
    line: str                    # one sentence under the title: what the page shows
    body: Callable[[], str]      # the expander's markdown, built when shown (it reads the shipped files)


GUIDES = {
    "start": Guide("Meet the autoencoder in one row, then open a tutorial or a lab ready to use.", _start),
    "train": Guide("Pick a tutorial's setup or your own, train an autoencoder on the server and watch it learn to "
                   "rebuild digits.", _train),
    "inspect": Guide("Look inside the active model: the patterns its units respond to, how well it rebuilds chosen "
                     "test digits, and how sparse its code is.", _inspect),
    "latent": Guide("See where the test digits land in the model's code space, and what the decoder draws at every "
                    "point of it.", _latent),
    "generate": Guide("Use the model as a generator: decode random codes, have a digit classifier judge them, and "
                      "walk the path between two digits.", _generate),
    "draw": Guide("Draw a digit (or upload one) and see how the active model rebuilds it, which digit a classifier "
                  "reads, and whether a detector takes it for a digit at all.", _draw),
    "anomalies": Guide("Train an autoencoder on one kind of image only and call what it rebuilds badly an anomaly; "
                       "the ROC-AUC over the whole test set says how well that works.", _anomalies),
    "compare": Guide("Your finished and stopped runs, your uploads and the shipped models in one table: pick two to "
                     "eight to see them side by side.", _compare),
    "studies": Guide("Run a tutorial's whole comparison in one click: several trainings, queued one after another, "
                     "with their results side by side.", _studies),
    "pretrain": Guide("How much does an autoencoder trained on unlabelled images help a classifier that sees only a "
                      "few labelled ones?", _pretrain),
}


def intro(page: str) -> None:
    """The page's line and its collapsed "What am I looking at?" expander; `page` is its file's name ("train")."""
    try:
        guide = GUIDES[page]
    except KeyError:
        raise ValueError(f"page: no guide for {page!r}; choose one of: {', '.join(GUIDES)}") from None
    st.markdown(guide.line)
    with st.expander(LABEL, expanded=False, icon=":material/help:"):
        st.markdown(guide.body())
