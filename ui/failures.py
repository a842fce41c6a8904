"""Where a model fails: its test error class by class, each mean with its 95 % interval, and for one class (clicked
on the chart, or chosen in the list beside it) the pictures it rebuilds worst and best, with their error maps. One
model on Inspect, two side by side on Compare; the models must have learned the same test set."""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from aecore.engine import scoring, viz
from aecore.engine.data import DATASETS
from ui import caches, datasets, panels, session

SHOWN = 6        # worst and best pictures shown per class and model
Z95 = 1.96       # the whiskers: mean ± 1.96 standard errors, a 95 % interval for the class's mean error
PICK = "pick"    # the chart's selection parameter


def _errors(m, test, dataset: str, cache: str) -> np.ndarray:
    """Every test picture's error (MSE in pixel space) under model `m`: a shipped model's once per server, a
    visitor's (or one of a picture set) once per model in their session."""
    if m.key.startswith("shipped:") and dataset in DATASETS:   # a picture set is no server-wide split
        return caches.test_errors(m.key, m.model, dataset)
    return session.cached(cache, (m.key, dataset), lambda: scoring.reconstruction_error(m.model, test.images),
                          most=8, owner=m.model)


def _spec(two: bool) -> dict:
    """Bars of the mean error per class with 95 % whiskers; a click on a class picks it (selection PICK)."""
    x = {"field": "class", "type": "nominal", "sort": None, "title": "class", "axis": {"labelAngle": 0}}
    colour = {"field": "model", "type": "nominal", "legend": {"orient": "top", "title": None}} if two else {}
    offset = {"xOffset": {"field": "model"}} if two else {}
    bar = {"mark": {"type": "bar", "tooltip": True, "cursor": "pointer"},
           "params": [{"name": PICK, "select": {"type": "point", "fields": ["class"]}}],
           "encoding": {"x": x, "y": {"field": "mean error", "type": "quantitative",
                                      "title": "mean error (MSE)"},
                        **({"color": colour} if two else {}), **offset,
                        "opacity": {"condition": {"param": PICK, "value": 1, "empty": True}, "value": 0.45}}}
    whiskers = {"mark": {"type": "rule", "color": "#31333F"},
                "encoding": {"x": x, **offset, "y": {"field": "low", "type": "quantitative"},
                             "y2": {"field": "high"}}}
    return {"layer": [bar, whiskers]}


def section(models: list, test, dataset: str, class_names, key: str, header: bool = True) -> None:
    """The section for one or two models of the same test split `test` (images and labels) of data set `dataset`
    (its key); `key` namespaces its widgets and cache on the page that shows it. Without `header`, the page has
    written one above."""
    if header:
        st.header("Where it fails" if len(models) == 1 else "Where they fail")
    errors = [_errors(m, test, dataset, key + "errors") for m in models]
    tables = [scoring.by_class(e, test.labels.numpy(), SHOWN) for e in errors]

    def name(c: int) -> str:
        return datasets.class_name(class_names, c)
    classes = [name(r["class"]) for r in tables[0]]
    rows = [{"model": m.name, "class": name(r["class"]), "mean error": r["mean"], "pictures": r["count"],
             "low": r["mean"] - Z95 * r["sem"], "high": r["mean"] + Z95 * r["sem"]}
            for m, t in zip(models, tables) for r in t]
    pick_key, chart_key = key + "class", key + "chart"
    worst = max(tables[0], key=lambda r: r["mean"])
    if st.session_state.get(pick_key) not in classes:
        st.session_state[pick_key] = name(worst["class"])

    def picked_on_chart() -> None:
        chosen = panels.selected(chart_key, PICK, "class")
        if chosen and str(chosen["class"]) in classes:
            st.session_state[pick_key] = str(chosen["class"])

    st.vega_lite_chart(pd.DataFrame(rows), _spec(len(models) == 2), width="stretch", height=260, key=chart_key,
                       on_select=picked_on_chart, selection_mode=PICK)
    hardest = "; ".join(f"{m.name}: {name(max(t, key=lambda r: r['mean'])['class'])} worst, "
                        f"{name(min(t, key=lambda r: r['mean'])['class'])} best" for m, t in zip(models, tables))
    st.caption(f"Each bar is a class's mean error over its {min(r['count'] for t in tables for r in t):,} to "
               f"{max(r['count'] for t in tables for r in t):,} test pictures; the whiskers are the 95 % interval "
               f"of that mean (± {Z95} standard errors), so two classes whose whiskers overlap are not told apart "
               f"by this test set. {hardest}. Click a bar, or choose the class below.")
    picked = st.selectbox("Class to look at", classes, key=pick_key)
    at = classes.index(picked)
    for column, m, t, e in zip(st.columns(len(models)), models, tables, errors):
        row = t[at]
        with column:
            if len(models) == 2:
                st.markdown(f"**{m.name}**")
            for which, title in (("worst", "rebuilt worst"), ("best", "rebuilt best")):
                idx = row[which]
                images = test.images[idx].numpy()
                recon = scoring.reconstruct(m.model, images)
                st.image(viz.gallery(images, recon, zoom=max(1, 84 // images.shape[-1])),
                         caption=f"{picked}, {title}: rows original, reconstruction, squared error; test pictures "
                                 + ", ".join(f"#{i} ({e[i]:.4f})" for i in idx),
                         alt=f"The {len(idx)} {picked} test pictures {m.name} {title}, one a column: the "
                             f"picture, its reconstruction and a heat map of where they differ.")
