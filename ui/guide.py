"""What each page shows, in plain words: the line under its title and its "What am I looking at?" expander.

The texts are Markdown files, one per page (ui/guides/<page>.md): the first line is the line under the title, the
rest the expander's body, with `{placeholders}` for the figures this module reads when the page is shown. A figure
beside a claim names both sides: the tutorial's number (aecore.engine.presets, `{compared[<preset>]}`) and ours,
read from what the shipped files record (checkpoint metadata from the safetensors header, the classifier's and the
pretraining's results), so a retrained file changes the text. A few figures only a full measurement over MNIST
gives are written in the texts as the README's measured tables quote them ("measured once"); MNIST is never loaded
here. A missing file reads "not available": the guide still renders.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import streamlit as st

from aecore.engine import checkpoint, presets
from aecore.labs import anomaly, classifier, pretrain, studies

MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
TEXTS = Path(__file__).resolve().parent / "guides"
LABEL = "What am I looking at?"
NOT_AVAILABLE = "not available"


# ------------------------------------------------------------------------------------------- reading the files
def file_meta(path, key: str = "aecore") -> dict | None:
    """The JSON object a safetensors file keeps under `key` in its header metadata ("aecore" for autoencoders,
    "classifier" for the digit judge), without loading its weights; None when the file is missing or is not one
    of ours. Cached per file version: do not modify the result."""
    path = Path(path)
    try:
        version = path.stat().st_mtime_ns
    except OSError:
        return None
    return _read_meta(str(path), version, key)


@functools.lru_cache(maxsize=64)
def _read_meta(path: str, version: int, key: str) -> dict | None:   # version: a retrained file is read again
    try:
        return checkpoint.metadata(path, key)
    except checkpoint.CheckpointError:
        return None


def shipped(name: str) -> dict:
    """A shipped autoencoder's metadata (models/<name>.safetensors); {} when it is not there."""
    return file_meta(MODELS_DIR / f"{name}.safetensors") or {}


def number(value) -> float | None:
    """A figure as a float; None for anything else a file may hold there (null, text)."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def figure(name: str, metric: str) -> float | None:
    """One of a shipped model's final figures ('train_loss', 'val_loss', 'test_loss'), or None."""
    return number((shipped(name).get("figures") or {}).get(metric))


def versus(name: str) -> str:
    """A preset's figure: 'the tutorial: 0.066 · ours: 0.06622 (shipped pytorch-784-200, 10 epochs)'."""
    p = presets.get(name)
    ours = figure(name, p.figure_metric)
    if ours is None:
        return presets.versus(p.figure, f"{NOT_AVAILABLE} (no shipped {name} checkpoint: train the preset)")
    epochs = (shipped(name).get("train") or {}).get("epochs")
    return presets.versus(p.figure, ours) + f" (shipped {name}" + (f", {epochs} epochs)" if epochs else ")")


def compared(name: str) -> str:
    """'**PyTorch 784-200-784**, final train BCE: the tutorial: 0.066 · ours: …'"""
    p = presets.get(name)
    return f"**{p.title}**, {p.figure_label}: {versus(name)}"


def detector_aucs() -> dict[int, float]:
    """normal class -> test AUC of the shipped one-class MNIST detectors of the recommended recipe."""
    out = {}
    for path in anomaly.shipped_detectors().values():
        a = (file_meta(path) or {}).get("anomaly") or {}
        one_class = a.get("dataset") == "mnist" and len(a.get("normal") or ()) == 1
        if one_class and a.get("recipe") == anomaly.DEFAULT_RECIPE and number(a.get("auc")) is not None:
            out[int(a["normal"][0])] = number(a["auc"])
    return out


def judge() -> dict:
    """The digit classifier's figures, as its file records them; {} when it is missing."""
    return file_meta(classifier.SHIPPED, "classifier") or {}


def few_labels() -> dict | None:
    """The pretraining table (models/pretrain/results.json), or None when it is missing or malformed."""
    try:
        version = pretrain.RESULTS.stat().st_mtime_ns
    except OSError:
        return None
    return _results(str(pretrain.RESULTS), version)


@functools.lru_cache(maxsize=4)
def _results(path: str, version: int) -> dict | None:
    try:
        return pretrain.load_results(path)
    except pretrain.ResultsError:
        return None


def percent(value) -> str:
    value = number(value)
    return NOT_AVAILABLE if value is None else f"{value:.1%}"


# ------------------------------------------------------------------------------------------- each page's figures
class _Compared:
    """`{compared[keras-784-32]}` in a text: that preset's figure, the tutorial's and ours (see `compared`)."""
    def __getitem__(self, name: str) -> str:
        return compared(name)


def _train() -> dict:
    return {"preset_figures": "\n".join(f"- {compared(p.name)}" for p in presets.PRESETS.values()
                                        if p.figure is not None)}


def _generate() -> dict:
    j = judge()
    score = number(j.get("test_inception_score"))
    judged = (f"The judge (from its file): test accuracy {percent(j.get('test_accuracy'))}, sure (≥ 0.9) of "
              f"{percent(j.get('test_confident_share'))} of real test digits, inception score {score:.2f} on them."
              if j and score is not None else f"The judge's figures: {NOT_AVAILABLE} (no classifier file).")
    return {"judge": judged, "betas": len(studies.BETAS)}


DRAWN = {"mnist": "enlarged MNIST test digits", "font digit": "digits typed in fonts",
         "stroke digit": "digits drawn as pen strokes"}


def _draw() -> dict:
    a = (file_meta(anomaly.DIGIT_DETECTOR) or {}).get("anomaly") or {}
    d = a.get("drawings") or {}
    reads = (judge().get("drawings") or {}).get("accuracy_by_kind") or {}
    counts = (judge().get("drawings") or {}).get("count_by_kind") or {}
    read = ("The classifier reads right " + ", ".join(f"{percent(v)} of {counts.get(k, '?')} {DRAWN.get(k, k + 's')}"
                                                      for k, v in reads.items()) + " (from its file)."
            if reads else f"The classifier's figures on drawings: {NOT_AVAILABLE}.")
    line = number(a.get("verdict_false_alarm"))
    detector = NOT_AVAILABLE if number(d.get("auc")) is None else (
        f"AUC {d['auc']:.3f} for digits against the rest, {percent(d.get('non_digits_unusual'))} of the non-digits "
        f"flagged, {percent(d.get('digits_typical'))} of the digits passed "
        f"({sum((d.get('count_by_kind') or {}).values()):,} drawings)")
    return {"classifier": read, "detector": detector,
            "verdict_line": NOT_AVAILABLE if line is None else f"{line:.0%}"}


def _anomalies() -> dict:
    aucs = detector_aucs()
    if aucs:
        worst = min(aucs, key=aucs.get)
        recipe = (f"mean AUC {sum(aucs.values()) / len(aucs):.3f} over the {len(aucs)} shipped one-class detectors "
                  f"(worst {aucs[worst]:.3f}, with {worst}s as normal), from their files")
    else:
        recipe = f"{NOT_AVAILABLE} (no shipped detectors in models/anomaly/)"
    return {"recipe": recipe}


def _compare() -> dict:
    losses = []
    for name in ("pytorch-784-200", "stacked-2d"):
        loss, value = (shipped(name).get("model") or {}).get("loss"), figure(name, "test_loss")
        losses.append(f"shipped {name}: {NOT_AVAILABLE}" if value is None or not loss else
                      f"shipped {name}: test {loss.upper()} {value:.4g}")
    return {"losses": "; ".join(losses)}


def _studies() -> dict:
    took = "\n".join(f"- {s.title} — {studies.MINUTES[name]:g} min, {s.epochs} of the tutorial's "
                     f"{s.tutorial_epochs} epochs per run" for name, s in
                     ((name, studies.get(name)) for name in studies.STUDIES if name in studies.MINUTES))
    case1 = presets.get("chainer-case1")
    return {"study_minutes": took, "case1_figure": f"{case1.figure:g}", "case1_epochs": case1.train.epochs,
            "chainer_epochs": studies.CHAINER_EPOCHS, "code_size_epochs": studies.CODE_SIZE_EPOCHS}


def _pretrain() -> dict:
    res = few_labels()
    if res is None:
        table = f"{NOT_AVAILABLE} (no measured table in {pretrain.RESULTS.parent.name}/{pretrain.RESULTS.name})"
    else:
        table = "; ".join(f"{r['labels']:,} labels: pretrained {r['pretrained_mean']:.1%} · random init "
                          f"{r['random_mean']:.1%} ({100 * (r['pretrained_mean'] - r['random_mean']):+.1f} points)"
                          for r in (res["rows"][0], res["rows"][-1])) + " (from models/pretrain/results.json)"
    return {"table": table, "published": "; ".join(f"{name} {acc:.1%}" for name, acc in pretrain.REFERENCES)}


def _none() -> dict:
    return {}


# ------------------------------------------------------------------------------------------- rendering
def _text(page: str) -> tuple[str, str]:
    """A page's (line, body template), from ui/guides/<page>.md."""
    line, body = (TEXTS / f"{page}.md").read_text(encoding="utf-8").split("\n\n", 1)
    return line, body.rstrip("\n")


@dataclass(frozen=True)
class Guide:
    page: str                         # its file's name ("train"), and its text's (ui/guides/train.md)
    figures: Callable[[], dict]       # the body's placeholders, read from the shipped files when shown

    @property
    def line(self) -> str:
        """One sentence under the title: what the page shows."""
        return _text(self.page)[0]

    def body(self) -> str:
        """The expander's markdown, its figures filled in."""
        return _text(self.page)[1].format_map({"compared": _Compared()} | self.figures())


GUIDES = {page: Guide(page, figures) for page, figures in (
    ("start", _none), ("train", _train), ("inspect", _none), ("latent", _none), ("generate", _generate),
    ("draw", _draw), ("anomalies", _anomalies), ("compare", _compare), ("studies", _studies),
    ("pretrain", _pretrain), ("images", _none), ("classroom", _none))}


def intro(page: str) -> None:
    """The page's line and its collapsed "What am I looking at?" expander; `page` is its file's name ("train")."""
    try:
        guide = GUIDES[page]
    except KeyError:
        raise ValueError(f"page: no guide for {page!r}; choose one of: {', '.join(GUIDES)}") from None
    st.markdown(guide.line)
    with st.expander(LABEL, expanded=False, icon=":material/help:"):
        st.markdown(guide.body())
