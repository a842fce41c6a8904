"""Pictures of what a model learned: tile grids, feature maps, latent codes and charts.

Everything returns arrays or Plotly figures; nothing here knows about the dashboard. Grids use `tile_grid`,
our copy of `torchvision.utils.make_grid`'s layout (the app's runtime does not need torchvision; a test
checks the two agree), and are upscaled with nearest-neighbour so each pixel stays crisp on screen. The app's
chart colours are all here: PALETTE (one per class), TWO (two groups), LINES (models overlaid), NEUTRAL (guides);
so are what keeps a chart readable: log axes labelled in full numbers, and a note naming curves hidden under others.
"""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import torch
from torch import nn
from torch.nn import functional as F

from aecore.engine.data import to_float
from aecore.engine.models import ACTIVATIONS, Autoencoder, batched, inference

# One colour per class (0-9): Paul Tol's "muted" nine and pale grey, apart for colour-blind readers (tests/test_viz.py
# simulates protan-, deuter- and tritanopia; Plotly's ten fail). No ten such colours all stand out from a white and a
# near-black page: points get a NEUTRAL rim, each hover names its class, a click on the legend shows a class alone.
PALETTE = ["#CC6677", "#332288", "#DDCC77", "#117733", "#88CCEE",
           "#882255", "#44AA99", "#999933", "#AA4499", "#DDDDDD"]
# Lines drawn over a chart in the light and the dark theme alike: at least 3:1 against white and against #0f1117.
NEUTRAL = "#8a8a8a"
TWO = ("#4477AA", "#CC6677")   # two groups (normal, anomalous): Tol's blue and rose, 3.6:1 or more on both pages
# Up to eight models overlaid (Compare): Okabe & Ito's colour-blind-safe palette less black, yellow and grey last.
LINES = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#999999")


def scale_each(tiles: torch.Tensor) -> torch.Tensor:
    """Min-max scale every tile (N, ...) to [0, 1] on its own, so weak filters stay visible."""
    flat = tiles.reshape(len(tiles), -1).float()
    lo, hi = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
    return ((flat - lo) / (hi - lo).clamp_min(1e-12)).reshape(tiles.shape)


def tile_grid(tiles: torch.Tensor, nrow: int = 8, padding: int = 2, pad_value: float = 0.0) -> torch.Tensor:
    """Tiles (N, H, W) or (N, C, H, W) -> one picture (rows, cols) or (C, rows, cols), laid out as make_grid.

    min(nrow, N) tiles a row, row by row; `padding` pixels of `pad_value` before every tile and after the last
    row and column; a single tile comes back alone, unpadded, as torchvision does. Channels are kept as they
    are (make_grid turns one channel into three).
    """
    t = tiles if tiles.ndim == 4 else tiles.unsqueeze(1)                     # (N, C, H, W)
    n, c, h, w = t.shape
    if n == 1:
        out = t[0].clone()
    else:
        cols, p = min(nrow, n), padding
        rows = -(-n // cols)
        cells = t.new_full((rows * cols, c, h + p, w + p), pad_value)         # each cell: padding above, left
        cells[:n, :, p:, p:] = t
        out = (cells.reshape(rows, cols, c, h + p, w + p)                    # (rows, cols, C, h+p, w+p)
               .permute(2, 0, 3, 1, 4).reshape(c, rows * (h + p), cols * (w + p)))
        out = F.pad(out, (0, p, 0, p), value=pad_value)                       # the closing bottom and right edge
    return out if tiles.ndim == 4 else out[0]


def grid(images, nrow: int = 10, zoom: int = 3, pad: int = 1) -> np.ndarray:
    """Images (N, H, W) or (N, 1, H, W) in [0, 1] -> one uint8 (rows, cols) picture, each pixel zoom x zoom;
    colour ones (N, 3, H, W) -> one uint8 RGB picture (rows, cols, 3), as `st.image` takes it."""
    t = torch.as_tensor(np.asarray(images, dtype=np.float32))
    if t.ndim == 4 and t.shape[1] != 3:
        t = t[:, 0]
    g = tile_grid(t.clamp(0, 1), nrow=nrow, padding=pad, pad_value=0.25)     # (rows, cols) or (3, rows, cols)
    g = g.repeat_interleave(zoom, -2).repeat_interleave(zoom, -1)
    return (g.movedim(0, -1) if g.ndim == 3 else g).mul(255).round().to(torch.uint8).numpy()


def _linears(model: Autoencoder) -> list[nn.Linear]:
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


def _tiles(model: Autoencoder, w: torch.Tensor) -> torch.Tensor:
    """Weight rows (count, C*S*S) as pictures, each scaled on its own (its channels together, so a colour filter
    keeps its hue): grey (count, S, S), colour (count, 3, S, S)."""
    c, s, _ = model.config.picture_shape
    return scale_each(w.reshape(len(w), c, s, s)[:, 0] if c == 1 else w.reshape(len(w), c, s, s))


def encoder_filters(model: Autoencoder, count: int = 100) -> torch.Tensor:
    """First-layer weights as picture tiles (count, S, S), (count, 3, S, S) in colour (MLP families)."""
    return _tiles(model, _linears(model)[0].weight.detach().cpu()[:count])          # (h, C*S*S)


def decoder_filters(model: Autoencoder, count: int = 100) -> torch.Tensor:
    """Last-layer weights, transposed, as picture tiles (count, S, S) or (count, 3, S, S): what each code unit
    paints."""
    return _tiles(model, _linears(model)[-1].weight.detach().cpu().t()[:count])     # (C*S*S, h) -> (h, C*S*S)


def conv_kernels(model: Autoencoder) -> torch.Tensor:
    """First conv layer's kernels, each scaled on its own: (C, k, k) for grey pictures, small colour tiles
    (C, 3, k, k) for colour ones."""
    w = next(m for m in model.modules() if isinstance(m, nn.Conv2d)).weight.detach().cpu()   # (C, in, k, k)
    return scale_each(w if w.shape[1] == 3 else w[:, 0])


def feature_maps(model: Autoencoder, image: np.ndarray) -> list[tuple[str, torch.Tensor]]:
    """Activations of each encoder stage for one picture, (S, S) or (3, S, S): [(name, (C, H, W) scaled per map)]."""
    x = to_float(image, channel=False).reshape(1, *model.config.picture_shape)  # (1, C, S, S)
    out, layers = [], list(model.encoder)
    with inference(model):
        for layer, following in zip(layers, layers[1:] + [None]):
            x = layer(x)
            # a stage ends after its pooling (conv), or after the activation of a strided conv (conv-vae)
            stage_end = isinstance(layer, nn.MaxPool2d) or (
                isinstance(layer, tuple(ACTIVATIONS.values())) and not isinstance(following, (nn.MaxPool2d,)))
            if x.dim() == 4 and stage_end:
                out.append((f"stage {len(out) + 1}: {x.shape[1]} maps {x.shape[2]}x{x.shape[3]}", scale_each(x[0])))
    return out


def encode_all(model: Autoencoder, images, batch_size: int = 2000) -> np.ndarray:
    """Codes of uint8 pictures (N, S, S) or (N, 3, S, S), flattened to (N, d)."""
    return batched(model, lambda x: model.encode(x).flatten(1), images, batch_size).numpy()


def plane(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 2-D view of codes (N, d): returns (xy (N, 2), origin (d,), axes (2, d)).

    2-D codes are shown as they are; wider codes through their first two principal components, and
    `origin + xy @ axes` maps a point of the plane back to a code the decoder can draw.
    """
    codes = np.asarray(codes, dtype=np.float64)
    d = codes.shape[1]
    if d <= 2:
        axes = np.eye(2, d)
        origin = np.zeros(d)
        xy = codes @ axes.T if d == 2 else np.c_[codes, np.zeros(len(codes))]
        return xy, origin, axes
    origin = codes.mean(0)
    centred = codes - origin
    # The principal axes from the d×d scatter matrix: for N ≫ d its eigh is far cheaper than an SVD of the
    # N×d codes (5,000×200: ms against seconds on a busy 2-core host).
    _, vecs = np.linalg.eigh(centred.T @ centred)                  # ascending eigenvalues
    axes = vecs[:, ::-1][:, :2].T                                  # (2, d), the largest first
    axes = axes * np.where(axes[np.arange(2), np.abs(axes).argmax(1)] < 0, -1.0, 1.0)[:, None]  # a fixed sign
    return centred @ axes.T, origin, axes


def decode_plane(model: Autoencoder, origin: np.ndarray, axes: np.ndarray, lo: float, hi: float,
                 n: int = 10, y_lo: float | None = None, y_hi: float | None = None) -> np.ndarray:
    """Decoder images over an n x n grid of the latent plane, rows top (high y) to bottom: (n*n, S, S), colour
    (n*n, 3, S, S)."""
    xs = np.linspace(lo, hi, n)
    ys = np.linspace(y_hi if y_hi is not None else hi, y_lo if y_lo is not None else lo, n)
    pts = np.array([[x, y] for y in ys for x in xs])                      # (n*n, 2)
    return decode_codes(model, origin + pts @ axes)


def decode_codes(model: Autoencoder, codes: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """Flat codes (N, d) -> decoder images in [0, 1]: grey (N, S, S), colour (N, 3, S, S)."""
    z = torch.as_tensor(np.asarray(codes), dtype=torch.float32)
    return batched(model, lambda c: model.decode(c).clamp(0, 1), z.reshape(len(z), *model.config.code_shape),
                   batch_size).reshape(-1, *model.config.image_shape).numpy()


def latent_scatter(xy: np.ndarray, labels: np.ndarray, class_names, title: str) -> go.Figure:
    fig = go.Figure()
    for c in np.unique(labels):
        sel = labels == c
        fig.add_trace(go.Scatter(
            x=xy[sel, 0], y=xy[sel, 1], mode="markers", name=str(class_names[c]),
            # the grey rim keeps the darkest and the palest classes visible on the dark and the light page
            marker=dict(size=5, opacity=0.8, color=PALETTE[int(c) % 10], line=dict(width=0.5, color=NEUTRAL)),
            customdata=np.nonzero(sel)[0],
            hovertemplate=f"class {class_names[c]}<br>test #%{{customdata}}<br>(%{{x:.3f}}, %{{y:.3f}})<extra></extra>"))
    fig.update_layout(title=title, height=520, margin=dict(l=10, r=10, t=40, b=10), legend_title="class")
    return fig


def loss_figure(steps: list[tuple[int, float]], epochs: list[tuple[int, float]], steps_per_epoch: float, reference:
                float | None = None, reference_label: str = "tutorial", max_points: int = 400, marks=()) -> go.Figure:
    """Train loss per step (downsampled to max_points) and held-out loss per epoch, x in epochs; `marks`, (step,
    label) each, as labelled vertical lines (what a run changed as it trained). Plain dicts, not validated: the
    live view redraws this twice a second, and validating go.Scatter/add_hline costs ~75 ms a figure."""
    if len(steps) > max_points:
        stride = -(-len(steps) // max_points)
        steps = steps[::stride] + [steps[-1]]
    data = []
    if steps:
        data.append({"type": "scatter", "mode": "lines", "name": "train (per step)",
                     "x": [s / steps_per_epoch for s, _ in steps], "y": [v for _, v in steps]})
    if epochs:
        data.append({"type": "scatter", "mode": "lines+markers", "name": "held-out (per epoch)",
                     "x": [e for e, _ in epochs], "y": [v for _, v in epochs]})
    layout = {"xaxis": {"title": {"text": "epoch"}}, "yaxis": {"title": {"text": "loss"}}, "height": 360,
              "margin": {"l": 10, "r": 10, "t": 30, "b": 10}, "legend": {"orientation": "h", "y": 1.12},
              "uirevision": "loss"}
    shapes = [{"type": "line", "yref": "paper", "x0": s / steps_per_epoch, "x1": s / steps_per_epoch, "y0": 0, "y1": 1,
               "line": {"dash": "dot", "color": NEUTRAL}} for s, _ in marks]
    notes = [{"yref": "paper", "x": s / steps_per_epoch, "y": 1 - 0.07 * (i % 3), "text": text, "showarrow": False,
              "xanchor": "left"} for i, (s, text) in enumerate(marks)]
    if reference is not None:
        shapes.append({"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": reference, "y1": reference,
                       "line": {"dash": "dash", "color": NEUTRAL}})
        notes.append({"xref": "paper", "x": 1, "y": reference, "xanchor": "right", "yanchor": "bottom",
                      "text": f"{reference_label}: {reference:g}", "showarrow": False})
    layout.update({"shapes": shapes, "annotations": notes} if shapes else {})
    return go.Figure({"data": data, "layout": layout}, _validate=False)


def terms_figure(steps: list[tuple[int, tuple]], steps_per_epoch: float, max_points: int = 400) -> go.Figure:
    """The loss's parts per step, side by side, each panel on its own scale (a VAE's reconstruction term is ~150
    nats, its KL ~5). `steps`: (step, ((name, value), ...)) per record, x in epochs."""
    steps = [(s, dict(t)) for s, t in steps if t]
    if len(steps) > max_points:
        stride = -(-len(steps) // max_points)
        steps = steps[::stride] + [steps[-1]]
    names = list(steps[0][1]) if steps else []
    n, gap = max(len(names), 1), 0.08
    width = (1 - gap * (n - 1)) / n
    data, layout = [], {"height": 240, "margin": {"l": 10, "r": 10, "t": 30, "b": 10}, "showlegend": False,
                        "uirevision": "terms", "annotations": []}
    for i, name in enumerate(names):
        suffix = "" if i == 0 else str(i + 1)
        data.append({"type": "scatter", "mode": "lines", "name": name, "xaxis": f"x{suffix}", "yaxis": f"y{suffix}",
                     "x": [s / steps_per_epoch for s, _ in steps], "y": [t.get(name) for _, t in steps]})
        left = i * (width + gap)
        layout[f"xaxis{suffix}"] = {"domain": [left, left + width], "anchor": f"y{suffix}",
                                    "title": {"text": "epoch"}}
        layout[f"yaxis{suffix}"] = {"anchor": f"x{suffix}"}
        layout["annotations"].append({"xref": "paper", "yref": "paper", "x": left + width / 2, "y": 1.0,
                                      "xanchor": "center", "yanchor": "bottom", "text": name, "showarrow": False})
    return go.Figure({"data": data, "layout": layout}, _validate=False)


def error_heatmap(image: np.ndarray, recon: np.ndarray) -> np.ndarray:
    """Squared error per pixel (S, S), scaled to [0, 1] by the largest possible error (1); a colour picture
    (3, S, S) gets its channels' mean."""
    e = np.clip((np.asarray(recon) - np.asarray(image)) ** 2, 0, 1)
    return e.mean(0) if e.ndim == 3 else e


def colorize(a: np.ndarray, zoom: int = 8) -> np.ndarray:
    """A [0, 1] map (H, W) -> RGB uint8 (H*zoom, W*zoom, 3) in a black-red-yellow-white heat scale."""
    a = np.clip(np.asarray(a, dtype=np.float32), 0, 1)
    rgb = np.stack([np.clip(3 * a, 0, 1), np.clip(3 * a - 1, 0, 1), np.clip(3 * a - 2, 0, 1)], -1)
    return (np.kron(rgb, np.ones((zoom, zoom, 1))) * 255).astype(np.uint8)


def gallery(originals: np.ndarray, recons: np.ndarray, zoom: int = 3) -> np.ndarray:
    """Pictures (N, S, S) or (N, 3, S, S), uint8 or in [0, 1], and their reconstructions in [0, 1] -> one RGB
    uint8 picture of three rows, one column per picture: the originals, the reconstructions and their squared-error
    maps (`error_heatmap` in `colorize`'s heat scale)."""
    originals = np.asarray(originals)
    originals = (originals / 255 if originals.dtype == np.uint8 else originals).astype(np.float32)
    recons = np.asarray(recons, dtype=np.float32)
    heat = np.stack([colorize(error_heatmap(o, r), 1).transpose(2, 0, 1) / 255 for o, r in zip(originals, recons)])
    rgb = [a if a.ndim == 4 else np.repeat(a[:, None], 3, axis=1) for a in (originals, recons)]
    return grid(np.concatenate([*rgb, heat.astype(np.float32)]), nrow=len(originals), zoom=zoom)


def zoom(image: np.ndarray, factor: int = 8) -> np.ndarray:
    """A [0, 1] grey image (H, W) -> uint8 (H*factor, W*factor) upscaled with nearest neighbour; a colour one
    (3, H, W) -> RGB (H*factor, W*factor, 3)."""
    a = np.asarray(image)
    a = np.moveaxis(a, 0, -1) if a.ndim == 3 else a
    return (np.kron(np.clip(a, 0, 1), np.ones((factor, factor) + (1,) * (a.ndim - 2))) * 255).round().astype(np.uint8)


def score_histogram(scores: np.ndarray, labels: np.ndarray, normal, class_names, by_class: bool = False,
                    threshold: float | None = None) -> go.Figure:
    """Anomaly scores of the normal test images against the others (or each class), overlaid, with the threshold."""
    normal_mask = np.isin(labels, list(normal))
    groups = [("normal (" + ", ".join(class_names[c] for c in normal) + ")", normal_mask,
               PALETTE[min(normal)] if by_class else TWO[0])]
    if by_class:   # each class in its own colour, the same as on the latent scatter
        groups += [(class_names[c], labels == c, PALETTE[c]) for c in sorted(set(labels.tolist()) - set(normal))]
    else:
        groups.append(("anomalous (every other class)", ~normal_mask, TWO[1]))
    bins = dict(start=0.0, end=float(np.quantile(scores, 0.995)), size=float(np.quantile(scores, 0.995)) / 60)
    fig = go.Figure([go.Histogram(x=scores[m], name=name, xbins=bins, histnorm="probability density",
                                  marker_color=colour, opacity=0.6) for name, m, colour in groups])
    if threshold is not None:
        fig.add_vline(x=threshold, line_dash="dash", line_color=NEUTRAL, annotation_text="threshold")
    fig.update_layout(barmode="overlay", height=320, margin=dict(l=10, r=10, t=30, b=10),
                      xaxis_title="anomaly score (squared error over the 20 worst pixels)", yaxis_title="density",
                      legend=dict(orientation="h", y=1.12))
    return fig


def roc_figure(fpr: np.ndarray, tpr: np.ndarray, auc: float, point: tuple[float, float] | None = None) -> go.Figure:
    """The ROC curve with its area, the chance diagonal and, if given, the current threshold's operating point."""
    fig = go.Figure([go.Scatter(x=fpr, y=tpr, mode="lines", name=f"detector (AUC {auc:.3f})"),
                     go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance (AUC 0.5)",
                                line=dict(dash="dot", color=NEUTRAL))])
    if point is not None:
        fig.add_trace(go.Scatter(x=[point[0]], y=[point[1]], mode="markers", name="threshold",
                                 marker=dict(size=11, symbol="x")))
    fig.update_layout(height=320, margin=dict(l=10, r=10, t=30, b=10), xaxis_title="false-alarm rate",
                      yaxis_title="detection rate", legend=dict(orientation="h", y=1.12))
    return fig


# ------------------------------------------------------------------------------------------- readable charts
# Tick marks per decade, coarsest first: the first set that puts three ticks on the data's range is used.
LOG_MANTISSAS = ((1,), (1, 2, 5), (1, 2, 3, 4, 5, 6, 7, 8, 9), tuple(m / 10 for m in range(10, 100)))
LOG_PAD = 0.04          # ticks may lie this share of the data's log range beyond it (inside the autorange)
COINCIDE_RTOL = 0.005   # two curves closer than this (relative) look like one on a 420 px chart: one hides the other


def number_text(v: float, digits: int = 3) -> str:
    """A tick label in full, without exponent notation from 0.00001 to a million: 0.0003, 0.015, 2, 150."""
    v = float(f"{v:.{digits}g}")
    return np.format_float_positional(v, trim="-") if v == 0 or 1e-5 <= abs(v) < 1e6 else f"{v:.{digits}g}"


def log_ticks(values, most: int = 8) -> tuple[list[float], list[str]]:
    """Tick values and their labels in full for a log axis over the positive `values` ([] when there are none).

    Plotly's own log ticks label the minor ones by their first digit alone ("0.1, 5, 3, 2, 0.01": the 3 is 0.03);
    these are 1, 2, 5 (or every digit, or two digits in a narrow range) times a power of ten, written out."""
    v = np.asarray([x for x in np.ravel(np.asarray(values, dtype=object)) if x is not None], dtype=np.float64)
    v = v[np.isfinite(v) & (v > 0)]
    if not len(v):
        return [], []
    lo, hi = float(v.min()), float(v.max())
    pad = 10 ** (LOG_PAD * np.log10(hi / lo))       # Plotly's autorange shows about this much beyond the data
    decades = range(int(np.floor(np.log10(lo / pad))), int(np.floor(np.log10(hi * pad))) + 1)
    for mantissas in LOG_MANTISSAS:
        ticks = [float(f"{m * 10.0 ** d:.3g}") for d in decades for m in mantissas]
        ticks = [t for t in ticks if lo / pad * (1 - 1e-9) <= t <= hi * pad * (1 + 1e-9)]
        if len(ticks) >= 3:
            break
    if len(ticks) < 2:          # narrower than two-digit steps: the data's two ends, to four digits
        ends = sorted({float(f"{lo:.4g}"), float(f"{hi:.4g}")})
        return ends, [number_text(t, 4) for t in ends]
    if mantissas is LOG_MANTISSAS[0] and len(ticks) > most:   # every second (third, ...) power of ten
        ticks = ticks[::-(-len(ticks) // most)]
    elif len(ticks) > most or mantissas is LOG_MANTISSAS[-1]:   # thinned: the nearest to evenly spaced points
        want = min(most, 4) if mantissas is LOG_MANTISSAS[-1] else most
        logs = np.log10(ticks)
        ticks = sorted({ticks[int(np.abs(logs - t).argmin())]
                        for t in np.linspace(np.log10(lo), np.log10(hi), want)})
    return ticks, [number_text(t) for t in ticks]


def readable_log_axes(fig: go.Figure) -> go.Figure:
    """Every log axis of `fig` without tick values of its own gets `log_ticks` of the data drawn on it (in
    place; returns `fig`)."""
    layout = fig.layout
    for name in [k for k in layout if k.startswith(("xaxis", "yaxis"))]:   # xaxis, yaxis2, ...
        axis = layout[name]
        if axis.type != "log" or axis.tickvals is not None:
            continue
        letter, suffix = name[0], name[5:]                                  # "y", "2" for yaxis2
        drawn = [t for t in fig.data if (getattr(t, f"{letter}axis", None) or letter) == letter + suffix]
        ticks, labels = log_ticks([v for t in drawn for v in (getattr(t, letter) or ())])
        if ticks:
            fig.update_layout({name: {"tickmode": "array", "tickvals": ticks, "ticktext": labels}})
    return fig


def coincident(curves: list[dict], rtol: float = COINCIDE_RTOL) -> list[tuple[int, int, bool]]:
    """Curves drawn over one another: `curves`, each {x: y} (None values left out), in drawing order (a later
    one is drawn on top). Returns (below, top, whole) for each pair whose y agree within `rtol` (relative) at
    every x they share: `whole` when every point of the lower curve is covered, so that it cannot be seen."""
    points = [{x: float(y) for x, y in c.items() if y is not None} for c in curves]
    found = []
    for top, b in enumerate(points):
        for below, a in enumerate(points[:top]):
            shared = a.keys() & b.keys()
            if shared and all(abs(a[x] - b[x]) <= rtol * max(abs(a[x]), abs(b[x])) for x in shared):
                found.append((below, top, a.keys() <= b.keys()))
    return found


def coincidence_note(names: list[str], curves: list[dict], groups: list[str] | None = None,
                     rtol: float = COINCIDE_RTOL) -> str:
    """One sentence naming the curves that hide one another ("X lies exactly under Y"), "" when none do.

    `names` and `curves` as `coincident` takes them; with `groups` (a group per curve, e.g. one model's train and
    held-out curves), a group whose every curve lies under another group's is named once, by its group. Each
    hidden curve (or group) is named once, with the topmost one that covers it."""
    groups = groups or names
    size = {g: groups.count(g) for g in groups}
    covers: dict[tuple[str, str], list[tuple[int, int, bool]]] = {}
    for below, top, whole in coincident(curves, rtol):
        if groups[below] != groups[top]:
            covers.setdefault((groups[below], groups[top]), []).append((below, top, whole))
    told, parts = set(), []
    for (g_below, g_top), found in sorted(covers.items(), key=lambda kv: -max(t for _, t, _ in kv[1])):
        if len(found) == size[g_below] > 1 and all(whole for *_, whole in found):
            if g_below not in told:
                told.add(g_below)
                parts.append(f"{g_below} lies exactly under {g_top} "
                             f"({'both' if size[g_below] == 2 else f'all {size[g_below]} of'} its curves)")
            continue
        for below, top, whole in found:
            if names[below] not in told:
                told.add(names[below])
                parts.append(f"{names[below]} lies exactly under {names[top]}" if whole else
                             f"{names[top]} lies exactly on {names[below]} where both have points")
    return f"{'; '.join(parts)}: equal within {rtol:.1%} at every point they share." if parts else ""
