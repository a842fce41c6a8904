"""The latent space of a code of any size: the codes on a plane (PCA, t-SNE or UMAP), a point's nearest neighbours
in code space, a point of the plane back to a code the decoder can draw, and walks along one code dimension.

PCA is numpy's (`aecore.engine.viz.plane`); t-SNE is scikit-learn's and UMAP umap-learn's, both seeded (the same
codes and settings give the same plane) and imported only when asked for. A plane of t-SNE or UMAP has no map back
to the codes: a point of it is turned into a code as the distance-weighted mean of the codes of the pictures
nearest to it on the plane, and the page says so.
"""
from __future__ import annotations

import base64
import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image

from aecore.engine import viz

METHODS = {"pca": "PCA", "tsne": "t-SNE", "umap": "UMAP"}
MOST_POINTS = {"pca": 10_000, "tsne": 2_000, "umap": 2_000}   # t-SNE takes ~9 s and UMAP ~5 s for 2,000 here
NEAREST = 5                                                    # plane neighbours averaged into a code


class ProjectionUnavailable(RuntimeError):
    """The library a projection needs is not installed; the message says which and how to get it."""


@dataclass(frozen=True)
class ProjectionConfig:
    """How codes are put on a plane; every choice is a widget of the Latent page (`latent.<field>`)."""
    method: str = "pca"          # pca, tsne or umap
    perplexity: float = 30.0     # t-SNE's: about how many neighbours each point keeps close (5-50)
    n_neighbors: int = 15        # UMAP's: the size of the neighbourhood it keeps (local 5 … global 50)
    seed: int = 0

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"ProjectionConfig.method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if not 5 <= self.perplexity <= 50:
            raise ValueError(f"ProjectionConfig.perplexity must be in [5, 50], got {self.perplexity!r}")
        if not 5 <= self.n_neighbors <= 50:
            raise ValueError(f"ProjectionConfig.n_neighbors must be in [5, 50], got {self.n_neighbors!r}")

    @property
    def label(self) -> str:
        """The method and its main setting, as a chart's title names them."""
        return {"pca": "PCA: the first two principal components",
                "tsne": f"t-SNE, perplexity {self.perplexity:g}, seed {self.seed}",
                "umap": f"UMAP, {self.n_neighbors} neighbours, seed {self.seed}"}[self.method]


@dataclass(frozen=True)
class Plane:
    """Codes (N, d) on a plane (N, 2); with PCA also its `origin` (d,) and `axes` (2, d), for which
    origin + xy @ axes is a code."""
    codes: np.ndarray
    xy: np.ndarray
    config: ProjectionConfig
    origin: np.ndarray | None = None
    axes: np.ndarray | None = None


def project(codes: np.ndarray, cfg: ProjectionConfig) -> Plane:
    """Codes (N, d) on a plane. A 2-D code is its own plane whatever the method; more than MOST_POINTS[method] codes
    are refused (ValueError), since t-SNE and UMAP grow with the square of the points' count."""
    codes = np.asarray(codes, dtype=np.float64)
    if codes.ndim != 2 or len(codes) < 3:
        raise ValueError(f"codes must be (N, d) with N >= 3, got shape {codes.shape}")
    if len(codes) > MOST_POINTS[cfg.method]:
        raise ValueError(f"{METHODS[cfg.method]} takes at most {MOST_POINTS[cfg.method]:,} codes, got {len(codes):,}")
    if cfg.method == "pca" or codes.shape[1] <= 2:
        xy, origin, axes = viz.plane(codes)
        return Plane(codes, xy, cfg, origin, axes)
    if cfg.method == "tsne":
        try:
            from sklearn.manifold import TSNE
        except ImportError as e:
            raise ProjectionUnavailable("t-SNE needs scikit-learn: pip install scikit-learn") from e
        xy = TSNE(2, perplexity=min(cfg.perplexity, (len(codes) - 1) / 3), init="pca",
                  random_state=cfg.seed).fit_transform(codes)
    else:
        try:
            import umap
        except ImportError as e:
            raise ProjectionUnavailable("UMAP needs umap-learn: pip install umap-learn") from e
        with warnings.catch_warnings():   # "n_jobs overridden to 1 by setting random_state": seeded is the point
            warnings.simplefilter("ignore", UserWarning)
            xy = umap.UMAP(n_neighbors=min(cfg.n_neighbors, len(codes) - 1), random_state=cfg.seed,
                           n_components=2).fit_transform(codes)
    return Plane(codes, np.asarray(xy, dtype=np.float64), cfg)


def neighbours(codes: np.ndarray, i: int, k: int = 8) -> list[int]:
    """The k codes nearest code i (Euclidean, in the code space, not on the plane), nearest first, without i."""
    d = np.linalg.norm(np.asarray(codes, dtype=np.float64) - codes[i], axis=1)
    d[i] = np.inf
    return np.argsort(d, kind="stable")[:k].tolist()


def code_at(plane: Plane, point) -> np.ndarray:
    """The code (d,) behind a point (x, y) of the plane: exact for PCA (and a 2-D code), else the mean of the
    NEAREST pictures' codes, each weighted by one over its distance on the plane."""
    p = np.asarray(point, dtype=np.float64)
    if plane.axes is not None:
        return plane.origin + p @ plane.axes
    d = np.linalg.norm(plane.xy - p, axis=1)
    near = np.argsort(d)[:NEAREST]
    w = 1 / np.maximum(d[near], 1e-9)
    return (plane.codes[near] * w[:, None]).sum(0) / w.sum()


def walk(code: np.ndarray, dims: list[int], offsets: np.ndarray) -> np.ndarray:
    """Codes along each of `dims`, one after another: `code` (d,) with that dimension moved by each of
    `offsets` (k,), the others kept; (len(dims) * k, d)."""
    code = np.asarray(code, dtype=np.float64)
    bad = [i for i in dims if not 0 <= i < len(code)]
    if bad:
        raise ValueError(f"code dimensions must be in 0..{len(code) - 1}, got {bad}")
    out = np.repeat(code[None], len(dims) * len(offsets), axis=0)
    for j, dim in enumerate(dims):
        out[j * len(offsets):(j + 1) * len(offsets), dim] += offsets
    return out


def thumbnails(images, zoom: int = 3) -> list[str]:
    """Pictures (N, S, S) or (N, 3, S, S), uint8, as PNG data URLs zoomed `zoom` times: a chart's hover shows
    them (its tooltip field named "image")."""
    out = []
    for a in np.asarray(images):
        a = np.moveaxis(a, 0, -1) if a.ndim == 3 else a
        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(a.repeat(zoom, 0).repeat(zoom, 1))).save(buf, "PNG")
        out.append("data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii"))
    return out
