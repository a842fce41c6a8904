"""The own-pictures detector run end to end on an MVTec-layout ImageSet: `detect` trains the PCA floor and a
recipe of `aecore.labs.pictures` on the good training pictures and measures both on the test pictures.

`detection_steps` is the same as a generator of `fit`'s Metrics; `detection_spec(DetectConfig(...), file)` is the
`TaskSpec` the app submits, so that a detector trains through the run service (cap, queue, stop) as every
training does: its task `detection` reads the set's description from the set's file and returns the figures and
the arrays the page draws (`Detection.from_result`).

A share of the good training pictures (HELD_OUT, picked by the seed) is kept out of training: the good-only
threshold comes from their scores, so it is set without seeing a single defect, as it must be in a factory.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np
import torch

from aecore.engine.data import IMAGES, Data, DataConfig, to_float
from aecore.engine.images import ImageSet, saved_set
from aecore.engine.models import Autoencoder, build
from aecore.engine.train import fit
from aecore.runs.task import TaskSpec
from aecore.labs.pictures import (DEFAULT_RECIPE, FALSE_ALARM, PCA_COMPONENTS, RECIPES, WORST_PIXELS,
                                  best_f1_threshold, error_maps, fit_gaussian, fit_pca, gallery, good_threshold,
                                  image_figures, model_outputs, pixel_auroc, threshold_report, worst_pixels)

HELD_OUT = 0.2          # the share of good training pictures kept out of training, for the good-only threshold
MIN_TRAIN = 5           # fewer good training pictures than this cannot make a detector and its threshold


class DetectorError(ValueError):
    """A picture set this detector cannot use (no good class, too few pictures, no defects to test on)."""


@dataclass(frozen=True, eq=False)
class Detection:
    """What `detect` found: `figures` (JSON-ready, as the command line prints them) and the arrays behind them."""
    figures: dict
    scores: np.ndarray          # (N_test,) the recipe's score per test picture
    pca_scores: np.ndarray      # (N_test,)
    labels: np.ndarray          # (N_test,) class indices into the set's class_names
    maps: np.ndarray            # (N_test, S, S) the recipe's reconstruction error per pixel
    pca_maps: np.ndarray        # (N_test, S, S)
    model: Autoencoder | None   # None when it came back from a run (`from_result`): the page needs only the maps

    def result(self) -> dict:
        """What a detection run returns: the figures and the arrays behind them (not the model)."""
        return {"figures": self.figures, "scores": self.scores, "pca_scores": self.pca_scores,
                "labels": self.labels, "maps": self.maps, "pca_maps": self.pca_maps}

    @classmethod
    def from_result(cls, result: dict) -> Detection:
        return cls(**{k: result[k] for k in ("figures", "scores", "pca_scores", "labels", "maps", "pca_maps")},
                   model=None)

    def gallery_maps(self, which: str = "most_anomalous") -> tuple[list[int], np.ndarray]:
        """A gallery of `figures["gallery"]` ("most_anomalous" or "least_typical_good"): the test indices and
        their error maps (n, S, S)."""
        index = self.figures["gallery"][which]
        return index, self.maps[index]


def detect(images: ImageSet, recipe: str = DEFAULT_RECIPE, epochs: int | None = None, seed: int = 0,
           k: int = WORST_PIXELS, false_alarm: float = FALSE_ALARM, device: str = "auto", log=None,
           gallery_size: int = 8) -> Detection:
    """Train on `images`' good training pictures, score its test pictures, and measure. `log(line)` hears the
    progress. Raises DetectorError for a set without a good class, defects or enough pictures."""
    steps = detection_steps(images, recipe, epochs, seed, k, false_alarm, device, log, gallery_size)
    while True:
        try:
            next(steps)
        except StopIteration as end:
            return end.value


def detection_steps(images: ImageSet, recipe: str = DEFAULT_RECIPE, epochs: int | None = None, seed: int = 0,
                    k: int = WORST_PIXELS, false_alarm: float = FALSE_ALARM, device: str = "auto", log=None,
                    gallery_size: int = 8):
    """`detect` as a generator: yields the recipe's training Metrics (step, total_steps, elapsed...) and returns
    the Detection."""
    t0 = time.perf_counter()
    say = log or (lambda line: None)
    if recipe not in RECIPES:
        raise DetectorError(f"unknown recipe {recipe!r}; choose one of {sorted(RECIPES)}")
    r, good = RECIPES[recipe], images.good_class
    if good is None:
        raise DetectorError(f"the set's layout is {images.layout!r}: anomaly detection needs the MVTec layout "
                            f"(train/good/, test/good/, test/<defect>/)")
    train, test = images.data.train, images.data.test
    train = train.take(train.labels == good)
    labels = test.labels.numpy()
    if len(train) < MIN_TRAIN:
        raise DetectorError(f"train/good holds {len(train)} usable pictures; a detector needs at least {MIN_TRAIN}")
    if not (labels == good).any() or (labels == good).all():
        raise DetectorError("the test pictures need both good ones (test/good/) and defects (test/<defect>/)")
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
    n_held = max(2, int(round(len(train) * HELD_OUT)))
    held, kept = train.take(order[:n_held]), train.take(order[n_held:])
    say(f"{len(kept)} good pictures to learn, {n_held} held out for the threshold, {len(test)} to test "
        f"({images.config.side}x{images.config.side} {images.config.color})")

    x_kept, x_held, x_test = (to_float(s.images).numpy() for s in (kept, held, test))   # (N, C, S, S)
    pca = fit_pca(x_kept, PCA_COMPONENTS)
    pca_maps, pca_held = (error_maps(x, pca.reconstruct(x)) for x in (x_test, x_held))
    pca_scores, pca_held_scores = worst_pixels(pca_maps, k), worst_pixels(pca_held, k)
    say(f"PCA ({len(pca.components)} components): image AUROC "
        f"{image_figures(pca_scores, labels, images.class_names, good)['image_auroc']:.3f}")

    model_cfg = replace(r.model, side=images.config.side, color=images.config.color)
    train_cfg = replace(r.train, seed=seed, device=device, **({"epochs": epochs} if epochs else {}))
    model = build(model_cfg, seed=seed)
    t_fit = time.perf_counter()
    for m in fit(model, Data(kept, held, test), train_cfg):
        yield m
        if m.epoch_end:
            say(f"{recipe}: epoch {m.epoch}/{train_cfg.epochs} loss {m.epoch_loss:.4f} "
                f"held-out {m.val_loss:.4f} ({m.elapsed:.0f} s)")
    train_seconds = time.perf_counter() - t_fit
    model.cpu().eval()
    maps, codes = model_outputs(model, test.images)
    held_maps, held_codes = model_outputs(model, held.images)
    if r.scoring == "code":
        gaussian = fit_gaussian(model_outputs(model, kept.images)[1])
        scores, held_scores = gaussian.distance(codes), gaussian.distance(held_codes)
    else:
        scores, held_scores = worst_pixels(maps, k), worst_pixels(held_maps, k)

    def figures(s, held_s, m) -> dict:
        is_anomaly = labels != good
        return {**image_figures(s, labels, images.class_names, good),
                "pixel_auroc": pixel_auroc(m, images.masks, labels, good),
                "threshold": {"false_alarm": false_alarm,
                              "good_only": threshold_report(good_threshold(held_s, false_alarm), s, is_anomaly),
                              "best_f1": threshold_report(best_f1_threshold(s, is_anomaly), s, is_anomaly)}}

    ours, floor = figures(scores, held_scores, maps), figures(pca_scores, pca_held_scores, pca_maps)
    pixel_score = image_figures(worst_pixels(maps, k), labels, images.class_names, good)
    say(f"{recipe}: image AUROC {ours['image_auroc']:.3f} (PCA {floor['image_auroc']:.3f})")
    result = {
        "recipe": recipe, "scoring": r.scoring, **ours,
        "pca_image_auroc": floor["image_auroc"], "pca_per_defect_auroc": floor["per_defect_auroc"],
        "pca_pixel_auroc": floor["pixel_auroc"], "pca_threshold": floor["threshold"],
        "pca_components": len(pca.components),
        "pixel_score_image_auroc": pixel_score["image_auroc"],
        "pixel_score_per_defect_auroc": pixel_score["per_defect_auroc"],
        "worst_pixels": k, "epochs": train_cfg.epochs, "seed": seed,
        "gallery": gallery(scores, labels, good, gallery_size),
        "counts": {"train": len(kept), "held_out": n_held, "test": len(test)},
        "set": images.describe(),
        "skipped": [{"file": s.file, "reason": s.reason} for s in images.skipped],
        "train_seconds": round(train_seconds, 1), "seconds": round(time.perf_counter() - t0, 1)}
    return Detection(result, scores, pca_scores, labels, maps, pca_maps, model)


# ------------------------------------------------------------------------------------------- through the run service
@dataclass(frozen=True)
class DetectConfig:
    """A detection run's settings: the set's file (data.save_picture_set), the recipe, its epochs (None: the
    recipe's), the class of good pictures, the seed of the held-out split and of the model."""
    images: str
    recipe: str = DEFAULT_RECIPE
    epochs: int | None = None
    good_class: int = 0
    seed: int = 0

    def __post_init__(self):
        if self.recipe not in RECIPES:
            raise ValueError(f"DetectConfig.recipe must be one of {sorted(RECIPES)}, got {self.recipe!r}")
        if self.epochs is not None and (isinstance(self.epochs, bool) or not isinstance(self.epochs, int)
                                        or self.epochs < 1):
            raise ValueError(f"DetectConfig.epochs must be a whole number >= 1 or None, got {self.epochs!r}")
        if isinstance(self.good_class, bool) or not isinstance(self.good_class, int) or self.good_class < 0:
            raise ValueError(f"DetectConfig.good_class must be a class index >= 0, got {self.good_class!r}")

    @property
    def data(self) -> DataConfig:
        return DataConfig(dataset=IMAGES, images=self.images)


def detection_spec(cfg: DetectConfig, set_name: str, estimate_s: float = 60.0) -> TaskSpec:
    """The run that finds the anomalies of a set: queued, capped and stoppable as a training is."""
    return TaskSpec(name=f"anomalies · {cfg.recipe} · {set_name}", task="aecore.labs.picturerun:detection",
                    config=cfg, data=cfg.data, estimate_s=estimate_s)


def detection(cfg: DetectConfig, data: Data):
    """The task a detection run runs: `detection_steps` on the set `cfg` names (its splits as the run service
    hands them over, its description and masks from its file); returns `Detection.result()`."""
    images = replace(saved_set(cfg.images, Data(data.train, None, data.test)), good_class=cfg.good_class)
    found = yield from detection_steps(images, cfg.recipe, cfg.epochs, cfg.seed, device="cpu")
    return found.result()
