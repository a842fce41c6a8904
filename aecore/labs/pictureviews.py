"""What the Your images page draws of a picture set and of a detection, as arrays and figures (the page and
ui.pictures only place them): a few pictures of each class, a few test pictures for reconstructions, both
detectors' ROC curves, and test pictures with their error maps over them."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import torch

from aecore.engine import scoring, viz
from aecore.engine.data import Data, Split, to_float
from aecore.labs import anomaly
from aecore.labs.picturerun import Detection


def class_samples(data: Data, classes: int, most: int = 10) -> list[np.ndarray]:
    """Per class, its first `most` pictures (training ones first, then test ones) as floats in [0, 1]:
    (n, S, S) grey, (n, 3, S, S) colour; n may be 0 for a class without pictures."""
    train, test = data.train, data.test
    return [to_float(torch.cat([s.images[s.labels == c][:most] for s in (train, test)])[:most]).numpy()
            for c in range(classes)]


def test_picks(test: Split, classes: int, most: int = 10) -> list[int]:
    """Test pictures of every class, as evenly as `most` allows: indices, class by class."""
    each = max(1, most // max(1, classes))
    picks = torch.cat([torch.nonzero(test.labels == c).flatten()[:each] for c in range(classes)])[:most]
    return picks.tolist()


def originals_and_reconstructions(model, test: Split, picks: list[int]) -> np.ndarray:
    """The picked test pictures and `model`'s reconstructions of them, one block (2n, C, S, S) in [0, 1]: a grid
    of two rows."""
    x = to_float(test.images[picks]).numpy()                                    # (n, C, S, S)
    r = scoring.reconstruct(model, test.images[picks]).reshape(x.shape)
    return np.concatenate([x, r])


def roc_figure(det: Detection, good: int) -> go.Figure:
    """Both detectors' ROC curves, the recipe's good-only threshold marked on its curve."""
    is_anomaly = det.labels != good
    f = det.figures
    point = f["threshold"]["good_only"]
    fpr, tpr, _ = anomaly.roc_curve(det.scores, is_anomaly)
    fig = viz.roc_figure(fpr, tpr, f["image_auroc"], (point["false_alarm_rate"], point["recall"]))
    fig.data[0].name = f"{f['recipe']} (AUROC {f['image_auroc']:.3f})"
    fpr, tpr, _ = anomaly.roc_curve(det.pca_scores, is_anomaly)
    fig.add_trace(go.Scatter(x=fpr, y=tpr, mode="lines", name=f"PCA (AUROC {f['pca_image_auroc']:.3f})",
                             line=dict(color=viz.LINES[1])))
    fig.data[2].name = "good-only threshold"
    return fig


def overlays(test: Split, det: Detection, indices: list[int], zoom: int = 3) -> list[np.ndarray]:
    """Test pictures with their error maps over them: RGB uint8 (S*zoom, S*zoom, 3) each, the picture at half
    strength under the heat scale (viz.colorize). One scale for all, from the test maps' median error (black: as
    well rebuilt as a typical pixel) to their 99.9th percentile (white)."""
    low, high = (float(v) for v in np.quantile(det.maps, [0.5, 0.999]))
    out = []
    for i in indices:
        picture = viz.zoom(to_float(test.images[i : i + 1])[0].numpy(), zoom)   # (H, W[, 3])
        if picture.ndim == 2:
            picture = np.repeat(picture[..., None], 3, axis=2)
        heat = viz.colorize((det.maps[i] - low) / max(high - low, 1e-12), zoom)
        out.append(np.maximum(picture // 2, heat))
    return out
