"""Anomaly detection on one's own pictures (an MVTec-layout set): a PCA floor beside an autoencoder recipe.

Both learn the good training pictures only. Each picture gets a score, higher = stranger:
- "pixels": the squared error of its reconstruction per pixel (summed over channels), averaged over its k worst
  pixels (k = WORST_PIXELS); a thin scratch changes a few pixels a lot, and a mean over all of them would drown it.
- "code": the Mahalanobis distance of the encoder's code to the good training codes (a Gaussian with a shrunk
  covariance). The recommended recipe scores this way: a conv encoder's 4 x 16 x 16 map is wide enough to rebuild
  a sandal about as well as a sneaker, so its pixel score misses wrong objects, yet it still says *where* each part
  of the shoe lies: a sandal's code is far from every good code, and a scratch puts a pattern in a few cells of
  the map that the covariance of good codes has never seen.
PCA is scored the "pixels" way (its components as a linear autoencoder).

What a detector is worth: image AUROC (good vs every defect, and per defect class); a threshold chosen from good
pictures alone (the (1 - alpha) quantile of held-out good training pictures' scores: alpha is the false-alarm rate
one accepts) beside the best-F1 threshold in hindsight, each with its confusion counts; pixel AUROC of the error
maps against the defect masks, where masks exist; and the pictures to look at (the most anomalous, the least
typical good ones) with their error maps. Training goes through the engine's `fit`; `aecore.labs.picturerun`
runs it all on an ImageSet, and `python -m aecore.anomaly` is the command line.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from aecore.engine.models import Autoencoder, ModelConfig, batched
from aecore.engine.scoring import pixel_errors
from aecore.engine.train import TrainConfig
from aecore.labs import anomaly
from aecore.labs.anomaly import auc, confusion

WORST_PIXELS = 20       # a picture's pixel score averages its squared error over this many worst pixels
PCA_COMPONENTS = 64     # the PCA floor keeps this many components (fewer when fewer pictures)
SHRINK = 0.1            # the code Gaussian's covariance is pulled this far towards a multiple of the identity
FALSE_ALARM = 0.05      # the good-only threshold lets this share of good pictures through as anomalous
SCORINGS = ("pixels", "code")


@dataclass(frozen=True)
class Recipe(anomaly.Recipe):
    """The one-class lab's recipe (a model, its training, a note) and how its pictures are scored; side and colour
    come from the picture set."""
    scoring: str = "pixels"     # "pixels" or "code" (see the module's docstring)


RECIPES = {r.name: r for r in [
    Recipe("conv-code", "Conv AE 32→4 channels, batch norm, BCE; score: Mahalanobis distance of its code",
           ModelConfig(family="conv", channels=(32, 4), batch_norm=True, loss="bce"),
           TrainConfig(epochs=30, batch_size=32, lr=1e-3),
           "Chosen on a validation set (aecore.labs.pictureset --seed 100) among 23 variants; above PCA on the "
           "sets of seeds 0, 1 and 2 (README).", scoring="code"),
    Recipe("conv-pixels", "The same conv AE scored by its 20 worst pixels",
           ModelConfig(family="conv", channels=(32, 4), batch_norm=True, loss="bce"),
           TrainConfig(epochs=30, batch_size=32, lr=1e-3),
           "Its 16 x 16 code rebuilds almost anything, sandals too: the pixel score misses wrong objects."),
    Recipe("dense-pixels", "Dense 512-128-64 with batch norm, MSE; score: its 20 worst pixels",
           ModelConfig(family="deep", hidden=(512, 128, 64), batch_norm=True, loss="mse"),
           TrainConfig(epochs=30, batch_size=32, lr=1e-3),
           "A plain pixel autoencoder: about as good as PCA at best, and slower."),
]}
DEFAULT_RECIPE = "conv-code"


# ---------------------------------------------------------------------------------------------- scores
def error_maps(x: np.ndarray, x_hat: np.ndarray) -> np.ndarray:
    """Squared error per pixel summed over channels: float32 (N, S, S) from pictures (N, C, S, S) in [0, 1]."""
    return ((np.asarray(x_hat, np.float32) - np.asarray(x, np.float32)) ** 2).sum(axis=1)


def worst_pixels(maps: np.ndarray, k: int = WORST_PIXELS) -> np.ndarray:
    """One score per picture: the mean of its k largest values, float64 (N,), from maps (N, S, S)."""
    flat = np.asarray(maps).reshape(len(maps), -1)
    k = min(k, flat.shape[1])
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    return np.partition(flat, -k, axis=1)[:, -k:].mean(axis=1, dtype=np.float64)


@dataclass(frozen=True)
class Pca:
    """A linear autoencoder: the mean picture and the top components, both over C*S*S numbers."""
    mean: np.ndarray          # (D,)
    components: np.ndarray    # (K, D), orthonormal rows

    def reconstruct(self, x: np.ndarray) -> np.ndarray:
        """Pictures (N, C, S, S) in [0, 1] -> their projection on the components, same shape, clipped to [0, 1]."""
        flat = x.reshape(len(x), -1) - self.mean
        return np.clip((flat @ self.components.T) @ self.components + self.mean, 0, 1).reshape(x.shape)


def fit_pca(x: np.ndarray, components: int = PCA_COMPONENTS) -> Pca:
    """PCA of pictures (N, C, S, S): min(components, N - 1) components (at least 1)."""
    flat = torch.from_numpy(x.reshape(len(x), -1)).double()
    mean = flat.mean(0)
    k = max(1, min(components, len(x) - 1))
    _, _, v = torch.linalg.svd(flat - mean, full_matrices=False)    # v (min(N, D), D)
    return Pca(mean.float().numpy(), v[:k].float().numpy())


@dataclass(frozen=True)
class CodeGaussian:
    """The good codes as a Gaussian: `distance` is the squared Mahalanobis distance to it."""
    mean: np.ndarray          # (D,)
    precision: np.ndarray     # (D, D)

    def distance(self, z: np.ndarray) -> np.ndarray:
        d = np.asarray(z, np.float64).reshape(len(z), -1) - self.mean
        return np.einsum("ij,jk,ik->i", d, self.precision, d)


def fit_gaussian(z: np.ndarray, shrink: float = SHRINK) -> CodeGaussian:
    """Mean and inverse covariance of codes (N, ...) flattened to (N, D). With fewer pictures than numbers the
    covariance is singular; `shrink` blends it with (trace / D) * I, which keeps it invertible and its scale."""
    z = np.asarray(z, np.float64).reshape(len(z), -1)
    if len(z) < 2:
        raise ValueError("a code Gaussian needs at least two pictures")
    cov = np.cov(z, rowvar=False).reshape(z.shape[1], z.shape[1])
    cov = (1 - shrink) * cov + shrink * (np.trace(cov) / len(cov) + 1e-12) * np.eye(len(cov))
    return CodeGaussian(z.mean(0), np.linalg.inv(cov))


def model_outputs(model: Autoencoder, images) -> tuple[np.ndarray, np.ndarray]:
    """(error maps (N, S, S), codes (N, D)) of uint8 pictures (N, S, S) or (N, C, S, S)."""
    c, side = model.config.in_channels, model.config.side
    maps = pixel_errors(model, images).reshape(len(images), c, side, side).sum(axis=1)    # (N, S, S)
    codes = batched(model, model.encode, images, 256).reshape(len(images), -1).numpy()   # (N, D)
    return maps, codes


# ---------------------------------------------------------------------------------------------- thresholds
def good_threshold(good_scores, false_alarm: float = FALSE_ALARM) -> float:
    """The (1 - false_alarm) quantile of good pictures' scores: about that share of good pictures score above."""
    if not 0.0 < false_alarm < 1.0:
        raise ValueError(f"false_alarm must be between 0 and 1 (exclusive), got {false_alarm}")
    s = np.asarray(good_scores, np.float64)
    if len(s) == 0:
        raise ValueError("a good-only threshold needs at least one held-out good picture")
    return float(np.quantile(s, 1.0 - false_alarm))


def best_f1_threshold(scores, is_anomaly) -> float:
    """The threshold (pictures scoring above it are flagged) with the best F1 on these pictures: in hindsight."""
    s, y = np.asarray(scores, np.float64), np.asarray(is_anomaly, bool)
    order = np.argsort(-s, kind="mergesort")
    tp, fp = np.cumsum(y[order]), np.cumsum(~y[order])
    last = np.r_[np.flatnonzero(np.diff(s[order])), len(s) - 1]       # flag everything down to each distinct score
    f1 = 2 * tp[last] / (tp[last] + fp[last] + y.sum())
    i = last[int(np.argmax(f1))]
    below = s[order][i + 1] if i + 1 < len(s) else -np.inf
    return float((s[order][i] + below) / 2 if np.isfinite(below) else s[order][i] - 1.0)


def threshold_report(threshold: float, scores, is_anomaly) -> dict:
    """A threshold and its confusion counts (tp, fp, tn, fn) with precision, recall, false-alarm rate and F1."""
    c = confusion(scores, is_anomaly, threshold)
    f1 = 2 * c["tp"] / (2 * c["tp"] + c["fp"] + c["fn"]) if c["tp"] else 0.0
    return {"value": float(threshold), **c, "f1": f1}


# ---------------------------------------------------------------------------------------------- figures
def image_figures(scores, labels, class_names, good_class: int) -> dict:
    """Image AUROC, good vs all defects and per defect class: {"image_auroc", "per_defect_auroc": {name: auc}}."""
    s, labels = np.asarray(scores, np.float64), np.asarray(labels)
    good = labels == good_class
    per = {class_names[c]: auc(np.r_[s[good], s[labels == c]],
                               np.r_[np.zeros(good.sum()), np.ones((labels == c).sum())])
           for c in sorted(set(labels.tolist()) - {good_class})}
    return {"image_auroc": auc(s, ~good), "per_defect_auroc": per}


def pixel_auroc(maps: np.ndarray, masks, labels, good_class: int) -> float | None:
    """AUROC of per-pixel error against the masks, over the good pictures and the defect classes that have
    masks (a class whose every mask is empty, like a wrong-object class, has none); None when none has."""
    if masks is None:
        return None
    masks, labels = np.asarray(masks) > 0, np.asarray(labels)
    with_masks = [c for c in set(labels.tolist()) - {good_class} if masks[labels == c].any()]
    if not with_masks:
        return None
    keep = np.isin(labels, [good_class, *with_masks])
    return auc(np.asarray(maps)[keep].ravel(), masks[keep].ravel())


def gallery(scores, labels, good_class: int, n: int = 8) -> dict:
    """Test-picture indices to look at: the n most anomalous (any class), and the n good ones scoring highest
    (the least typical good pictures: where false alarms come from)."""
    s, labels = np.asarray(scores), np.asarray(labels)
    order = np.argsort(-s, kind="stable")
    return {"most_anomalous": order[:n].tolist(),
            "least_typical_good": [int(i) for i in order if labels[i] == good_class][:n]}
