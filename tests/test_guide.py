"""The pages' guides (ui/guide.py, texts in ui/guides/): every page app.py navigates to opens with its line and a collapsed "What
am I looking at?" expander whose figures are the shipped files' own (read here again, through the loaders), with
data and without any; a missing or broken file reads "not available" and the guide still renders."""
from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest

from aecore.labs import anomaly, classifier, pretrain, studies
from aecore.engine import checkpoint, presets
from aecore.engine.models import ModelConfig, build

from app_helpers import APP, ROOT, open_app
from ui import guide  # noqa: E402 (app_helpers puts the repository root on the path)

# Fixtures (conftest.py): app_environment for every test here, as every AppTest needs it.
pytestmark = pytest.mark.usefixtures("app_environment")

MODELS = ROOT / "models"


def flat(text: str) -> str:
    """Markdown as it reads: the source's line breaks inside a paragraph are spaces."""
    return " ".join(text.split())


def app_pages() -> list[str]:
    """The page files app.py hands to st.navigation, in its order."""
    return re.findall(r'st\.Page\(\s*"(app_pages/[^"]+\.py)"', APP.read_text())


def shipped(name: str) -> dict:
    """A shipped checkpoint's metadata through the full loader (weights and all)."""
    return checkpoint.load(MODELS / f"{name}.safetensors")[1]


def expected_figures() -> dict[str, list[str]]:
    """Per page, texts its guide must hold: each a tutorial's figure and ours, read independently of guide.py."""
    pytorch, sparse, stacked, conv_vae = (shipped(n) for n in ("pytorch-784-200", "sparse-784-32", "stacked-2d",
                                                                "conv-vae-2d"))
    aucs = [anomaly.load_detector(p)[1]["anomaly"]["auc"] for p in anomaly.shipped_detectors().values()]
    detector = anomaly.digit_detector()[1]["anomaly"]["drawings"]
    judge = classifier.digit_classifier()[1]
    rows = json.loads(pretrain.RESULTS.read_text())["rows"]
    keras = shipped("keras-784-32")
    return {
        "start": [f"the tutorial: 0.093 · ours: {keras['figures']['val_loss']:.4g} (shipped keras-784-32, "
                  f"{keras['train'].epochs} epochs)"],
        "train": [f"the tutorial: {presets.get('pytorch-784-200').figure:g} · ours: "
                  f"{pytorch['figures']['train_loss']:.4g} (shipped pytorch-784-200, "
                  f"{pytorch['train'].epochs} epochs)"],
        "inspect": [f"the tutorial: 0.1 · ours: {sparse['figures']['test_loss']:.4g} (shipped sparse-784-32"],
        "latent": [f"the tutorial: 0.0347 · ours: {stacked['figures']['test_loss']:.4g} (shipped stacked-2d"],
        "generate": [f"test accuracy {judge['test_accuracy']:.1%}",
                     f"the tutorial: 148.87 · ours: {conv_vae['figures']['train_loss']:.4g} (shipped conv-vae-2d, "
                     f"{conv_vae['train'].epochs} epochs)"],
        "draw": [f"AUC {detector['auc']:.3f} for digits against the rest"],
        "anomalies": [f"mean AUC {np.mean(aucs):.3f} over the {len(aucs)} shipped one-class detectors (worst "
                      f"{min(aucs):.3f}"],
        "compare": [f"shipped pytorch-784-200: test BCE {pytorch['figures']['test_loss']:.4g}"],
        "studies": [f"{studies.MINUTES['chainer']:g} min, 3 of the tutorial's 20 epochs",
                    "the tutorial: 0.044 after 20"],
        "pretrain": [f"100 labels: pretrained {rows[0]['pretrained_mean']:.1%} · random init "
                     f"{rows[0]['random_mean']:.1%}"],
        "images": [],                                  # a visitor's own pictures: nothing measured ahead
        "classroom": [],                               # a class's runs: measured when they end
    }


def test_every_page_has_a_guide():
    assert len(guide.GUIDES) == 12
    assert {f"app_pages/{name}.py" for name in guide.GUIDES} == set(app_pages())


def check_intros(at, figures: dict[str, list[str]]) -> None:
    """Visit every guided page in one session: its line right under the title, then the collapsed expander."""
    for name, g in guide.GUIDES.items():
        at.query_params.clear()      # as the browser's navigation does (Start sends a ?preset= link to Train)
        at.switch_page(f"app_pages/{name}.py").run()
        assert not at.exception, (name, at.exception)
        assert at.main.markdown[0].value == g.line, name
        box = at.main.expander[0]
        assert (box.label, box.icon, box.proto.expanded) == (guide.LABEL, ":material/help:", False), name
        body = flat(box.markdown[0].value)
        for text in figures[name]:
            assert text in body, (name, text, body)
        # Only the presets with no shipped checkpoint lack our figure (chainer-case1, iwae-vae-50).
        unshipped = [p for p in presets.PRESETS.values()
                     if p.figure is not None and not (MODELS / f"{p.name}.safetensors").exists()]
        assert body.count(guide.NOT_AVAILABLE) == (len(unshipped) if name == "train" else 0), (name, body)


def test_every_page_opens_with_its_guide_with_data(tiny_idx):
    check_intros(open_app(), expected_figures())


def test_every_page_opens_with_its_guide_without_data(no_data):
    check_intros(open_app(), expected_figures())


# ------------------------------------------------------------------------------------------- reading the figures
def test_a_preset_figure_names_both_sides():
    meta = shipped("keras-784-32")
    assert guide.versus("keras-784-32") == (f"the tutorial: 0.093 · ours: {meta['figures']['val_loss']:.4g} "
                                            f"(shipped keras-784-32, {meta['train'].epochs} epochs)")
    assert guide.versus("keras-vae-2d").startswith("the tutorial: a picture, no number · ours: ")


def test_a_figure_is_read_from_the_header_and_read_again_when_the_file_changes(tmp_path, monkeypatch):
    monkeypatch.setattr(guide, "MODELS_DIR", tmp_path)
    path = tmp_path / "pytorch-784-200.safetensors"
    model = build(ModelConfig(family="shallow", hidden=(3,)))
    checkpoint.save(path, model, {"figures": {"train_loss": 0.0712}, "train": {"epochs": 2}})
    assert guide.versus("pytorch-784-200") == "the tutorial: 0.066 · ours: 0.0712 (shipped pytorch-784-200, 2 epochs)"
    checkpoint.save(path, model, {"figures": {"train_loss": 0.0651}})
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000_000))   # a later version
    assert guide.versus("pytorch-784-200") == "the tutorial: 0.066 · ours: 0.0651 (shipped pytorch-784-200)"


@pytest.mark.parametrize("content", [b"\x80\x04\x95pickle", b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\"", b""])
def test_a_broken_checkpoint_reads_not_available(tmp_path, monkeypatch, content):
    monkeypatch.setattr(guide, "MODELS_DIR", tmp_path)
    (tmp_path / "stacked-2d.safetensors").write_bytes(content)
    assert guide.figure("stacked-2d", "test_loss") is None
    assert guide.versus("stacked-2d") == ("the tutorial: 0.0347 · ours: not available (no shipped stacked-2d "
                                          "checkpoint: train the preset)")


def test_with_no_shipped_files_every_guide_still_renders_and_says_not_available(tmp_path, monkeypatch):
    monkeypatch.setattr(guide, "MODELS_DIR", tmp_path)
    monkeypatch.setattr(anomaly, "MODELS_DIR", tmp_path / "anomaly")
    monkeypatch.setattr(anomaly, "DIGIT_DETECTOR", tmp_path / "digits" / "digit-detector.safetensors")
    monkeypatch.setattr(classifier, "SHIPPED", tmp_path / "classifier" / "digits-cnn.safetensors")
    monkeypatch.setattr(pretrain, "RESULTS", tmp_path / "pretrain" / "results.json")
    bodies = {name: flat(g.body()) for name, g in guide.GUIDES.items()}
    assert "- **PyTorch 784-200-784**, final train BCE: the tutorial: 0.066 · ours: not available (no shipped " \
           "pytorch-784-200 checkpoint: train the preset)" in bodies["train"]
    assert "The judge's figures: not available (no classifier file)." in bodies["generate"]
    assert "The detector, on its set of canvas drawings (from its file): not available." in bodies["draw"]
    assert "The classifier's figures on drawings: not available." in bodies["draw"]
    assert "dense-bn-16: not available (no shipped detectors in models/anomaly/)" in bodies["anomalies"]
    assert "shipped pytorch-784-200: not available; shipped stacked-2d: not available" in bodies["compare"]
    assert "**The figures.** not available (no measured table in pretrain/results.json)" in bodies["pretrain"]
    # Figures that live in the code, not in the shipped files, stay.
    assert f"{studies.MINUTES['code-size']:g} min" in bodies["studies"] and "the tutorial: 0.1 ·" in bodies["inspect"]


def test_an_unknown_page_is_named():
    with pytest.raises(ValueError, match="page: no guide for 'home'; choose one of: start, train, inspect"):
        guide.intro("home")
