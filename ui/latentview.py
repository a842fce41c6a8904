"""The Latent page's interactive plane and what a click on it opens: the picked picture with its nearest
neighbours in code space, a point of the plane decoded, and walks along chosen code dimensions."""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from aecore.engine import viz
from aecore.labs import latent
from ui import datasets, panels

THUMBS = 1_000    # points whose picture shows on hover and that a click picks (the first ones)
CELLS = 40        # the plane is cut in CELLS × CELLS squares; a click on one decodes its centre
STEPS = 9         # pictures along one code dimension
MAX_DIMS = 6      # code dimensions walked at once
PICK, SPOT = "pick", "spot"


def _extent(xy: np.ndarray) -> tuple[float, float, float, float]:
    lo, hi = xy.min(0), xy.max(0)
    pad = 0.05 * np.maximum(hi - lo, 1e-9)
    return lo[0] - pad[0], hi[0] + pad[0], lo[1] - pad[1], hi[1] + pad[1]


def spec(plane: latent.Plane, labels: np.ndarray, class_names, thumbs: list[str], title: str) -> tuple[dict, dict]:
    """The data and the Vega-Lite spec: every point coloured by class; the first len(thumbs) again on top, each
    with its picture in the tooltip and a click that picks it (PICK); below them a grid of CELLS² squares, a click
    on which marks that spot of the plane (SPOT)."""
    x0, x1, y0, y1 = _extent(plane.xy)
    xs, ys = np.linspace(x0, x1, CELLS + 1), np.linspace(y0, y1, CELLS + 1)
    cells = [{"cx": float((xs[i] + xs[i + 1]) / 2), "cy": float((ys[j] + ys[j + 1]) / 2), "a": float(xs[i]),
              "b": float(xs[i + 1]), "c": float(ys[j]), "d": float(ys[j + 1])}
             for i in range(CELLS) for j in range(CELLS)]
    names = [datasets.class_name(class_names, c) for c in labels]
    points = pd.DataFrame({"x": plane.xy[:, 0], "y": plane.xy[:, 1], "class": names,
                           "picture": np.arange(len(labels))})
    top = points.iloc[:len(thumbs)].assign(image=thumbs).to_dict("records")
    scale_x = {"domain": [x0, x1], "nice": False, "zero": False}
    scale_y = {"domain": [y0, y1], "nice": False, "zero": False}
    present = sorted(set(labels.tolist()))
    order = [datasets.class_name(class_names, c) for c in present]
    colour = {"field": "class", "type": "nominal", "sort": order,     # class order, one colour each as elsewhere
              "scale": {"domain": order, "range": [viz.PALETTE[c % len(viz.PALETTE)] for c in present]}}
    grid = {"data": {"values": cells}, "mark": {"type": "rect", "cursor": "crosshair", "fill": "#888"},
            "params": [{"name": SPOT, "select": {"type": "point", "fields": ["cx", "cy"]}}],
            "encoding": {"x": {"field": "a", "type": "quantitative", "scale": scale_x, "title": "x"},
                         "x2": {"field": "b"},
                         "y": {"field": "c", "type": "quantitative", "scale": scale_y, "title": "y"},
                         "y2": {"field": "d"},
                         "opacity": {"condition": {"param": SPOT, "empty": False, "value": 0.35}, "value": 0.01},
                         "tooltip": [{"field": "cx", "format": ".3f", "title": "x"},
                                     {"field": "cy", "format": ".3f", "title": "y"}]}}
    xy = {"x": {"field": "x", "type": "quantitative", "scale": scale_x},
          "y": {"field": "y", "type": "quantitative", "scale": scale_y}}
    every = {"mark": {"type": "circle", "size": 18, "opacity": 0.55},
             "encoding": {**xy, "color": colour, "tooltip": [{"field": "class"}, {"field": "picture"}]}}
    near = {"data": {"values": top}, "mark": {"type": "circle", "size": 30, "cursor": "pointer", "stroke": "#808495",
                                              "strokeWidth": 0.5},
            "params": [{"name": PICK, "select": {"type": "point", "fields": ["picture"]}}],
            "encoding": {**xy, "color": colour,
                         "size": {"condition": {"param": PICK, "empty": False, "value": 160}, "value": 30},
                         "tooltip": [{"field": "class"}, {"field": "picture", "title": "test picture"},
                                     {"field": "image"}]}}
    return points, {"title": title, "layer": [grid, every, near]}


def clicked(key: str) -> tuple[int | None, tuple[float, float] | None]:
    """What the chart under `key` has picked: a test picture's index and a spot of the plane, each None when
    nothing is; of the two, the one clicked last (the other is forgotten)."""
    pick, spot = panels.selected(key, PICK, "picture"), panels.selected(key, SPOT, "cx", "cy")
    now = (int(pick["picture"]) if pick else None, (float(spot["cx"]), float(spot["cy"])) if spot else None)
    before = st.session_state.get(key + ".last", (None, None))
    st.session_state[key + ".last"] = now
    if now[0] is not None and now[1] is not None:      # both marked: keep the one that changed
        return (now[0], None) if now[0] != before[0] else (None, now[1])
    return now


def picked(model, plane: latent.Plane, test, class_names, i: int, zoom: int, noun: str) -> None:
    """Test picture i beside its reconstruction, then its nearest neighbours in code space."""
    near = latent.neighbours(plane.codes, i, 8)
    recon = viz.decode_codes(model, plane.codes[[i]])[0]
    label = datasets.class_name(class_names, test.labels[i])
    a, b = st.columns([1, 4])
    a.image(viz.grid(np.stack([test.images[i].numpy() / 255, recon]), nrow=2, zoom=zoom),
            caption=f"test {noun} #{i} ({label}) and its code decoded",
            alt=f"Test {noun} #{i}, a {label}, beside what the decoder draws from its code.")
    b.image(viz.grid(test.images[near].numpy() / 255, nrow=len(near), zoom=zoom),
            caption="nearest in code space: " + ", ".join(f"#{j} ({datasets.class_name(class_names, test.labels[j])})"
                                                          for j in near),
            alt=f"The {len(near)} test {noun}s whose codes are nearest to #{i}'s, nearest first.")


def spot(model, plane: latent.Plane, point: tuple[float, float], zoom: int) -> None:
    """The code behind a clicked spot of the plane, decoded."""
    code = latent.code_at(plane, point)
    how = ("exact: the plane's two components, the other directions at the codes' mean" if plane.axes is not None
           else f"{latent.METHODS[plane.config.method]} has no map back to codes: the mean of the "
                f"{latent.NEAREST} nearest pictures' codes, weighted by closeness on the plane")
    st.image(viz.zoom(viz.decode_codes(model, code[None])[0], zoom), width=140,
             caption=f"decoded at ({point[0]:.2f}, {point[1]:.2f}); the code: {how}",
             alt=f"What the decoder draws for the code at ({point[0]:.2f}, {point[1]:.2f}) of the plane.")


def walk(model, codes: np.ndarray, test, i: int, zoom: int, key: str) -> None:
    """Sliders for chosen code dimensions around test picture i's code, the picture they decode to, and for each
    dimension the strip of pictures along it (± 3 standard deviations of that dimension over the test codes)."""
    d = codes.shape[1]
    spread = codes.std(0)
    default = np.argsort(-spread, kind="stable")[:min(3, d)].tolist()   # the dimensions that vary most
    dims = st.multiselect("Code dimensions", list(range(d)), default=default, max_selections=MAX_DIMS,
                          key=key + "dims", help="The code's numbers to move; the first shown are those that vary "
                                                 "most over the test pictures.")
    if not dims:
        st.info("Choose at least one code dimension.", icon=":material/tune:")
        return
    code = codes[i].astype(np.float64).copy()
    columns = st.columns(min(len(dims), 3))
    for n, dim in enumerate(dims):
        s = float(max(spread[dim], 1e-6))
        code[dim] = columns[n % len(columns)].slider(
            f"dimension {dim}", float(codes[i, dim] - 3 * s), float(codes[i, dim] + 3 * s), float(codes[i, dim]),
            step=s / 10, format="%.3f", key=f"{key}dim.{i}.{dim}")
    st.image(viz.zoom(viz.decode_codes(model, code[None])[0], zoom), width=140,
             caption=f"#{i}'s code with the sliders' values",
             alt=f"What the decoder draws for test picture #{i}'s code with the chosen dimensions moved.")
    offsets = np.linspace(-3, 3, STEPS)
    for dim in dims:
        strip = latent.walk(code, [dim], offsets * spread[dim] - (code[dim] - codes[i, dim]))
        st.image(viz.grid(viz.decode_codes(model, strip), nrow=STEPS, zoom=zoom),
                 caption=f"dimension {dim}: from {codes[i, dim] - 3 * spread[dim]:.3f} to "
                         f"{codes[i, dim] + 3 * spread[dim]:.3f} around #{i}'s {codes[i, dim]:.3f} (the others as "
                         f"the sliders set them)",
                 alt=f"{STEPS} pictures decoded along code dimension {dim}, left to right.")
