"""aecore.labs.latent (projections of any code size, neighbours, a plane's point back to a code, walks, hover
pictures) and the Latent page's projection choice and walks."""
from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from aecore.engine import viz
from aecore.labs import latent

from app_helpers import goto, open_app, texts


def blobs(n: int = 60, d: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three well-separated clusters of codes (n, d) and their labels."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    return rng.normal(size=(n, d)) * 0.1 + np.eye(3, d)[labels] * 5, labels


# ------------------------------------------------------------------------------------------- projections
def test_pca_is_the_plane_of_viz_and_maps_back_exactly():
    codes, _ = blobs()
    plane = latent.project(codes, latent.ProjectionConfig())
    xy, origin, axes = viz.plane(codes)
    assert np.allclose(plane.xy, xy) and np.allclose(plane.origin, origin) and np.allclose(plane.axes, axes)
    # a point of the plane back to a code: the code's projection onto the plane
    back = latent.code_at(plane, plane.xy[4])
    assert np.allclose(back, origin + (codes[4] - origin) @ axes.T @ axes)


@pytest.mark.parametrize("method", ["tsne", "umap"])
def test_tsne_and_umap_are_seeded_and_keep_clusters_apart(method):
    pytest.importorskip({"tsne": "sklearn", "umap": "umap"}[method])
    codes, labels = blobs()
    cfg = latent.ProjectionConfig(method=method, perplexity=10, n_neighbors=10, seed=3)
    a, b = latent.project(codes, cfg), latent.project(codes, cfg)
    assert a.xy.shape == (60, 2) and a.axes is None
    assert np.array_equal(a.xy, b.xy)                                   # the same seed, the same plane
    if method == "umap":   # t-SNE starts from the PCA plane: its layout does not depend on the seed at all
        other = latent.project(codes, latent.ProjectionConfig(method=method, n_neighbors=10, seed=4))
        assert not np.allclose(a.xy, other.xy)
    centres = np.array([a.xy[labels == c].mean(0) for c in range(3)])
    within = max(np.linalg.norm(a.xy[labels == c] - centres[c], axis=1).max() for c in range(3))
    between = min(np.linalg.norm(centres[i] - centres[j]) for i in range(3) for j in range(i + 1, 3))
    assert between > within                                             # the three clusters stay apart


def test_a_two_number_code_is_its_own_plane_and_bad_requests_are_refused():
    codes = np.random.default_rng(0).normal(size=(10, 2))
    plane = latent.project(codes, latent.ProjectionConfig(method="tsne"))
    assert np.allclose(plane.xy, codes)
    with pytest.raises(ValueError, match="at most 2,000 codes"):
        latent.project(np.zeros((2001, 5)), latent.ProjectionConfig(method="umap"))
    with pytest.raises(ValueError, match="N >= 3"):
        latent.project(np.zeros((2, 5)), latent.ProjectionConfig())
    with pytest.raises(ValueError, match="method must be one of pca, tsne, umap"):
        latent.ProjectionConfig(method="lda")
    with pytest.raises(ValueError, match="perplexity must be in"):
        latent.ProjectionConfig(perplexity=2)


def test_neighbours_code_at_and_walk_against_hand_computations():
    codes = np.array([[0.0, 0], [1, 0], [0, 2], [5, 5], [0.5, 0]])
    assert latent.neighbours(codes, 0, 3) == [4, 1, 2]
    plane = latent.Plane(codes, xy=np.array([[0.0, 0], [1, 0], [0, 1], [9, 9], [3, 3]]),
                         config=latent.ProjectionConfig(method="umap"))
    near = [0, 1, 2, 4, 3]                                              # by distance from (0.1, 0) on the plane
    d = np.linalg.norm(plane.xy[near] - [0.1, 0], axis=1)
    want = (codes[near] / d[:, None]).sum(0) / (1 / d).sum()
    assert np.allclose(latent.code_at(plane, (0.1, 0)), want)
    steps = latent.walk(np.array([1.0, 2.0, 3.0]), [0, 2], np.array([-1.0, 0.0, 1.0]))
    assert steps.tolist() == [[0, 2, 3], [1, 2, 3], [2, 2, 3], [1, 2, 2], [1, 2, 3], [1, 2, 4]]
    with pytest.raises(ValueError, match=r"in 0\.\.2"):
        latent.walk(np.zeros(3), [3], np.zeros(2))


def test_thumbnails_are_the_pictures_zoomed():
    pictures = np.random.default_rng(1).integers(0, 256, (2, 28, 28), dtype=np.uint8)
    urls = latent.thumbnails(pictures, zoom=2)
    assert len(urls) == 2 and all(u.startswith("data:image/png;base64,") for u in urls)
    back = np.asarray(Image.open(io.BytesIO(base64.b64decode(urls[1].split(",", 1)[1]))))
    assert np.array_equal(back, pictures[1].repeat(2, 0).repeat(2, 1))


# ------------------------------------------------------------------------------------------- the page
def test_the_projection_is_chosen_computed_once_and_the_walk_follows_its_sliders(tiny_idx, monkeypatch):
    pytest.importorskip("sklearn")
    calls = []
    project = latent.project
    monkeypatch.setattr(latent, "project", lambda codes, cfg: calls.append(cfg) or project(codes, cfg))
    at = goto(open_app(), "app_pages/latent.py")
    assert at.radio(key="latent.method").value == "pca"
    at.radio(key="latent.method").set_value("tsne").run()
    assert not at.exception
    at.slider(key="latent.perplexity").set_value(8).run()
    assert not at.exception and not at.error
    spec = at.get("vega_lite_chart")[0].proto.spec
    assert "t-SNE, perplexity 8, seed 0" in spec
    tsne_calls = [c for c in calls if c.method == "tsne"]
    at.slider(key="latent.grid.shipped:pytorch-784-200").set_value(5).run()   # another widget: no new t-SNE
    assert [c for c in calls if c.method == "tsne"] == tsne_calls
    # The walk: the three dimensions that vary most, one slider each, the picture and one strip per dimension.
    assert "Walk along one code dimension" in texts(at.header)
    dims = at.multiselect(key="latent.walk.dims").value
    assert len(dims) == 3
    strips = [c for img in at.get("image") for c in [img.proto.imgs[0].caption] if c.startswith("dimension ")]
    assert [int(c.split(":")[0].split()[1]) for c in strips] == dims
    picture = next(img for img in at.get("image") if img.proto.imgs[0].caption.startswith("#0's code"))
    before = picture.proto.imgs[0].url
    slider = at.slider(key=f"latent.walk.dim.0.{dims[0]}")
    slider.set_value(slider.max).run()
    after = next(img for img in at.get("image") if img.proto.imgs[0].caption.startswith("#0's code"))
    assert after.proto.imgs[0].url != before                      # the decoded picture follows the slider
