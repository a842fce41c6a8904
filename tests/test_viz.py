"""aecore.engine.viz: our tile grid against torchvision's make_grid (the oracle), and a runtime without torchvision."""
from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import aecore
from aecore.engine.viz import grid, tile_grid

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------- layout
@pytest.mark.parametrize("n, h, w", [(1, 28, 28), (2, 28, 28), (7, 5, 3), (10, 28, 28), (23, 4, 6), (100, 28, 28)])
def test_tile_grid_matches_make_grid(n, h, w):
    make_grid = pytest.importorskip("torchvision.utils").make_grid
    tiles = torch.rand(n, h, w, generator=torch.Generator().manual_seed(n))
    for nrow in (1, 3, 8, 10, 32):
        for padding in (0, 1, 2, 5):
            ours = tile_grid(tiles, nrow=nrow, padding=padding, pad_value=0.25)
            theirs = make_grid(tiles.unsqueeze(1), nrow=nrow, padding=padding, pad_value=0.25)[0]  # 1 -> 3 channels
            assert ours.shape == theirs.shape and torch.equal(ours, theirs), f"nrow={nrow} padding={padding}"


@pytest.mark.parametrize("n, nrow, padding", [(1, 8, 2), (5, 2, 1), (12, 4, 3)])
def test_tile_grid_keeps_channels_like_make_grid(n, nrow, padding):
    make_grid = pytest.importorskip("torchvision.utils").make_grid
    tiles = torch.rand(n, 3, 9, 7, generator=torch.Generator().manual_seed(n))
    assert torch.equal(tile_grid(tiles, nrow, padding, pad_value=0.5),
                       make_grid(tiles, nrow=nrow, padding=padding, pad_value=0.5))


def test_tile_grid_by_hand():
    """Three 2x2 tiles, two a row, padding 1: written out pixel by pixel (runs without torchvision)."""
    tiles = torch.tensor([1.0, 2.0, 3.0]).view(3, 1, 1).expand(3, 2, 2)
    p = 9.0
    expected = torch.tensor([
        [p, p, p, p, p, p, p],
        [p, 1, 1, p, 2, 2, p],
        [p, 1, 1, p, 2, 2, p],
        [p, p, p, p, p, p, p],
        [p, 3, 3, p, p, p, p],
        [p, 3, 3, p, p, p, p],
        [p, p, p, p, p, p, p]])
    assert torch.equal(tile_grid(tiles, nrow=2, padding=1, pad_value=p), expected)
    assert torch.equal(tile_grid(tiles[:1], nrow=2, padding=1, pad_value=p), tiles[0])   # one tile: unpadded


def test_grid_zooms_and_accepts_channel_dim():
    images = np.random.default_rng(0).random((6, 28, 28)).astype(np.float32)
    g = grid(images, nrow=4, zoom=3, pad=1)
    assert g.dtype == np.uint8 and g.shape == (3 * (2 * 29 + 1), 3 * (4 * 29 + 1))
    assert g[0, 0] == round(0.25 * 255)                                          # the padding colour
    assert g[3, 3] == round(float(images[0, 0, 0]) * 255)                        # first tile, top-left pixel
    assert np.array_equal(g, grid(images[:, None], nrow=4, zoom=3, pad=1))       # (N, 1, H, W) is the same


@pytest.mark.parametrize("n, nrow, pad, zoom", [(6, 4, 1, 3), (1, 8, 2, 2), (12, 5, 0, 1)])
def test_colour_grid_matches_make_grid(n, nrow, pad, zoom):
    make_grid = pytest.importorskip("torchvision.utils").make_grid
    images = torch.rand(n, 3, 8, 6, generator=torch.Generator().manual_seed(n))
    theirs = make_grid(images, nrow=nrow, padding=pad, pad_value=0.25)                  # (3, rows, cols)
    theirs = theirs.repeat_interleave(zoom, 1).repeat_interleave(zoom, 2).permute(1, 2, 0)
    ours = grid(images.numpy(), nrow=nrow, zoom=zoom, pad=pad)                           # (rows, cols, 3) RGB
    assert ours.dtype == np.uint8 and np.array_equal(ours, (theirs * 255).round().to(torch.uint8).numpy())


def test_colour_grid_by_hand():
    """Two 1x1 colour tiles, padding 1, zoom 1 (runs without torchvision): red then blue on the padding grey."""
    tiles = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]).view(2, 3, 1, 1)
    g = grid(tiles, nrow=2, zoom=1, pad=1)
    assert g.shape == (3, 5, 3) and g[0, 0].tolist() == [64, 64, 64]
    assert g[1, 1].tolist() == [255, 0, 0] and g[1, 3].tolist() == [0, 0, 255]


def scaled(w: torch.Tensor) -> torch.Tensor:
    """The oracle for one filter: its numbers min-max scaled to [0, 1] together."""
    return (w - w.min()) / (w.max() - w.min())


def test_first_layer_filters_of_a_colour_model_are_colour_tiles():
    from aecore.engine.models import ModelConfig, build
    from aecore.engine.viz import conv_kernels, decoder_filters, encoder_filters

    dense = build(ModelConfig(side=32, color="rgb", hidden=(6,)), seed=0)
    tiles = encoder_filters(dense, 4)
    assert tiles.shape == (4, 3, 32, 32)
    w = dense.encoder[0].weight.detach()                                            # (6, 3*32*32)
    for i in range(4):
        assert torch.allclose(tiles[i], scaled(w[i].reshape(3, 32, 32)), atol=1e-6)
    back = dense.decoder[0].weight.detach().t()                                     # (6, 3*32*32)
    assert torch.allclose(decoder_filters(dense, 6)[5], scaled(back[5].reshape(3, 32, 32)), atol=1e-6)
    assert encoder_filters(build(ModelConfig(side=64, hidden=(5,)), seed=0)).shape == (5, 64, 64)   # grey: tiles
    conv = build(ModelConfig(family="conv", side=64, color="rgb", channels=(5, 2)), seed=0)
    kernels = conv_kernels(conv)
    assert kernels.shape == (5, 3, 3, 3)
    assert torch.allclose(kernels[2], scaled(conv.encoder[0].weight.detach()[2]), atol=1e-6)
    assert grid(kernels, nrow=5, zoom=4).shape == (4 * 5, 4 * 21, 3)               # a row of small colour tiles
    assert conv_kernels(build(ModelConfig(family="conv", channels=(5, 2)), seed=0)).shape == (5, 3, 3)


def test_colour_reconstructions_decodes_and_feature_maps():
    from aecore.engine.models import ModelConfig, build
    from aecore.engine.viz import decode_codes, error_heatmap, feature_maps, zoom

    model = build(ModelConfig(family="conv-vae", side=64, color="rgb", channels=(4, 8), hidden=(8,)), seed=0)
    assert decode_codes(model, np.zeros((3, 2))).shape == (3, 3, 64, 64)
    picture = np.random.default_rng(0).integers(0, 256, (3, 64, 64), dtype=np.uint8)
    assert [maps.shape for _, maps in feature_maps(model, picture)] == [(4, 32, 32), (8, 16, 16)]
    image = np.zeros((3, 2, 2))
    image[0, 0, 1] = 1.0                                                             # one red pixel
    assert zoom(image, 2).shape == (4, 4, 3) and zoom(image, 2)[0, 2].tolist() == [255, 0, 0]
    assert error_heatmap(image, np.zeros_like(image)).tolist() == [[0, 1 / 3], [0, 0]]   # the channels' mean


# ---------------------------------------------------------------------------------------------- colours
# Colour-vision deficiencies at full severity, as 3x3 matrices on linear RGB (Machado, Oliveira & Fernandes 2009).
CVD = {"protanopia": [[0.152286, 1.052583, -0.204868], [0.114503, 0.786281, 0.099216],
                      [-0.003882, -0.048116, 1.051998]],
       "deuteranopia": [[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413],
                        [-0.011820, 0.042940, 0.968881]],
       "tritanopia": [[1.255528, -0.076749, -0.178779], [-0.078411, 0.930809, 0.147602],
                      [0.004733, 0.691367, 0.303900]]}
PLOTLY_TEN = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
              "#17becf"]


def linear(hexes) -> np.ndarray:
    """'#rrggbb' colours -> linear RGB (N, 3)."""
    c = np.array([[int(h[i:i + 2], 16) / 255 for i in (1, 3, 5)] for h in hexes])
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def lab(lin: np.ndarray) -> np.ndarray:
    """Linear RGB (N, 3), clipped to the screen's gamut -> CIELAB (D65)."""
    xyz = np.clip(lin, 0, 1) @ np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722],
                                         [0.0193, 0.1192, 0.9505]]).T / [0.95047, 1.0, 1.08883]
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], 1)


def closest_pair(hexes, matrix) -> float:
    """The smallest CIELAB distance (ΔE76) between two of the colours, as a reader with that vision sees them."""
    seen = lab(linear(hexes) @ np.array(matrix).T)
    d = np.linalg.norm(seen[:, None] - seen[None], axis=-1)
    return float(d[np.triu_indices(len(hexes), 1)].min())


def contrast(a: str, b: str) -> float:
    """WCAG contrast ratio of two colours."""
    la, lb = sorted((linear([h])[0] @ [0.2126, 0.7152, 0.0722] for h in (a, b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


@pytest.mark.parametrize("vision", list(CVD))
def test_class_colours_stay_apart_for_colour_blind_readers(vision):
    from aecore.engine.viz import PALETTE

    assert len(PALETTE) == len(set(PALETTE)) == 10
    assert closest_pair(PALETTE, CVD[vision]) > 15                   # Tol's muted ten: 15.6 at the worst
    if vision == "protanopia":
        assert closest_pair(PLOTLY_TEN, CVD[vision]) < 5             # the measure can fail: Plotly's default ten


def test_lines_over_charts_stand_out_on_both_themes():
    from aecore.engine.viz import NEUTRAL, TWO

    for colour in (NEUTRAL, *TWO):
        for page in ("#ffffff", "#0f1117"):                            # config.toml's light and dark backgrounds
            assert contrast(colour, page) >= 3.0, (colour, page)


def test_latent_scatter_names_each_points_class():
    from aecore.engine.viz import PALETTE, latent_scatter

    xy = np.arange(12, dtype=np.float64).reshape(6, 2)
    fig = latent_scatter(xy, np.array([3, 0, 3, 9, 0, 3]), [f"digit {c}" for c in range(10)], "t")
    assert [t.name for t in fig.data] == ["digit 0", "digit 3", "digit 9"]
    assert [t.marker.color for t in fig.data] == [PALETTE[0], PALETTE[3], PALETTE[9]]
    assert [list(t.customdata) for t in fig.data] == [[1, 4], [0, 2, 5], [3]]         # test-set indices
    assert all(t.hovertemplate.startswith(f"class {t.name}<br>") for t in fig.data)


# ---------------------------------------------------------------------------------------------- readable charts
@pytest.mark.parametrize("values, expected", [
    ([0.0104, 0.05, 0.12], ["0.01", "0.02", "0.05", "0.1"]),      # Compare's losses: Plotly wrote 0.1, 5, 3, 2, 0.01
    ([0.0105, 0.0131], ["0.011", "0.012", "0.013"]),               # within a decade: every step of 0.001
    ([0.001, 0.5, 30.0], ["0.001", "0.01", "0.1", "1", "10"]),     # many decades: the powers of ten
    ([0.0095, 0.011], ["0.0095", "0.01", "0.011"]),                # two digits, thinned to even steps
    ([0.01034, 0.01045], ["0.01034", "0.01045"]),                  # narrower still: the two ends
    ([147.0, 150.0], ["147", "150"]),
    ([2.0, None, 0.0, -1.0], ["2"]),                               # only positive values count on a log axis
    ([], []),
])
def test_log_ticks_are_written_in_full(values, expected):
    from aecore.engine.viz import log_ticks

    ticks, labels = log_ticks(values)
    assert labels == expected
    assert [float(t) for t in labels] == pytest.approx(ticks)     # each label is its value, not a minor digit
    assert ticks == sorted(ticks)
    positive = [v for v in values if v is not None and v > 0]
    if ticks:       # within the data, or as little beyond it as Plotly's autorange shows (4 % of its log range)
        lo, hi = np.log10(min(positive)), np.log10(max(positive))
        assert all(lo - 0.04 * (hi - lo) - 1e-9 <= np.log10(t) <= hi + 0.04 * (hi - lo) + 1e-9 for t in ticks)


def test_readable_log_axes_sets_ticks_on_log_axes_only():
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from aecore.engine.viz import readable_log_axes

    # As Compare's figure is built: plain dicts, without validation.
    fig = go.Figure({"data": [{"type": "scatter", "x": [1, 2, 3], "y": [0.12, 0.03, 0.0093]},
                              {"type": "scatter", "x": [1, 2], "y": [0.05, None]}],
                     "layout": {"yaxis": {"type": "log"}}}, _validate=False)
    assert readable_log_axes(fig) is fig
    assert list(fig.layout.yaxis.ticktext) == ["0.01", "0.02", "0.05", "0.1"]
    assert fig.layout.xaxis.tickvals is None                                   # a linear axis keeps Plotly's
    # Subplots: each log axis from its own traces; an axis with tick values of its own keeps them.
    fig = make_subplots(rows=1, cols=2)
    fig.add_trace(go.Scatter(x=[1, 4], y=[100.0, 150.0]), row=1, col=1)
    fig.add_trace(go.Scatter(x=[1, 4], y=[0.001, 0.1]), row=1, col=2)
    fig.update_yaxes(type="log")
    fig.update_xaxes(type="log", tickvals=[1, 4], ticktext=["one", "four"])
    readable_log_axes(fig)
    assert list(fig.layout.yaxis.ticktext) == ["100", "110", "130", "150"]
    assert list(fig.layout.yaxis2.ticktext) == ["0.001", "0.01", "0.1"]
    assert list(fig.layout.xaxis.ticktext) == ["one", "four"] and list(fig.layout.xaxis2.tickvals) == [1, 4]


def test_coincident_curves_are_named():
    from aecore.engine.viz import coincidence_note, coincident

    a, b = {1: 0.5, 2: 0.25, 3: 0.2}, {1: 0.5, 2: 0.25, 3: 0.2}
    assert coincident([a, b]) == [(0, 1, True)]
    assert coincidence_note(["mine", "shipped"], [a, b]) == \
        "mine lies exactly under shipped: equal within 0.5% at every point they share."
    near = {x: y * 1.003 for x, y in a.items()}                    # 0.3 % apart: one line on the chart
    far = {x: y * 1.02 for x, y in a.items()}                      # 2 % apart: two lines
    assert coincident([a, near]) == [(0, 1, True)] and coincident([a, far]) == []
    assert coincidence_note(["mine", "shipped"], [a, far]) == ""
    # A shorter curve drawn on top of a longer one hides only part of it.
    assert coincidence_note(["long", "short"], [a, {1: 0.5, 2: 0.25}]) == \
        "short lies exactly on long where both have points: equal within 0.5% at every point they share."
    assert coincident([a, {1: 0.5, 2: 0.25, 3: None}]) == [(0, 1, False)]   # a missing point is not a point
    # By group: a model whose train and held-out curves both lie under another's is named once; a third copy on
    # top hides both others, each named with the topmost.
    train, held = {1: 0.3, 2: 0.2}, {1: 0.35, 2: 0.3}
    names = ["A · train", "A · held-out", "B · train", "B · held-out"]
    assert coincidence_note(names, [train, held, train, held], ["A", "A", "B", "B"]) == \
        "A lies exactly under B (both its curves): equal within 0.5% at every point they share."
    assert coincidence_note(names, [train, held, train, {1: 0.5, 2: 0.4}], ["A", "A", "B", "B"]) == \
        "A · train lies exactly under B · train: equal within 0.5% at every point they share."
    assert coincidence_note(["A", "B", "C"], [train, train, train]) == \
        "A lies exactly under C; B lies exactly under C: equal within 0.5% at every point they share."


# ---------------------------------------------------------------------------------------------- no torchvision
def test_every_aecore_module_imports_without_torchvision():
    """The app's runtime (CPU hosts get torch+cpu, beside which PyPI's torchvision cannot import) needs none."""
    modules = sorted(m.name for m in pkgutil.walk_packages(aecore.__path__, "aecore."))
    code = ("import importlib, sys; sys.modules['torchvision'] = None\n"
            f"for m in {modules!r}: importlib.import_module(m)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
