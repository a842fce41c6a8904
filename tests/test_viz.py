"""aecore.viz: our tile grid against torchvision's make_grid (the oracle), and a runtime without torchvision."""
from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import aecore
from aecore.viz import grid, tile_grid

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


# ---------------------------------------------------------------------------------------------- no torchvision
def test_every_aecore_module_imports_without_torchvision():
    """The app's runtime (CPU hosts get torch+cpu, beside which PyPI's torchvision cannot import) needs none."""
    modules = sorted(m.name for m in pkgutil.walk_packages(aecore.__path__, "aecore."))
    code = ("import importlib, sys; sys.modules['torchvision'] = None\n"
            f"for m in {modules!r}: importlib.import_module(m)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
