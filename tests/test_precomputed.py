"""The shipped precomputed figures (models/precomputed/, aecore.labs.precomputed) are what the code computes from
the shipped models: recomputed here from MNIST and compared. A lookup answers only for the exact weights, images
and judge an entry was computed from, and the pages' first views use the files (with real MNIST, computing is
made to fail and the pages still show the same figures)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from aecore.engine import checkpoint
from aecore.engine.data import DataConfig, load_split
from aecore.engine.models import ModelConfig, build
from aecore.labs import anomaly, classifier, generative, precomputed

from app_helpers import APP, goto, open_app, texts, use_data
from idx_helpers import real_mnist_dir

MNIST = pytest.mark.mnist


@pytest.fixture(scope="module")
def recomputed() -> dict:
    """Both files' contents, computed again now from the shipped models and the real MNIST (skipped without it)."""
    if real_mnist_dir() is None:
        pytest.skip("real MNIST not available: set AECORE_DATA_DIR to a folder with the four IDX files")
    quiet = lambda s: None   # noqa: E731
    return {"scores": precomputed.compute_scores(real_mnist_dir(), quiet),
            **precomputed.compute_generate(real_mnist_dir(), quiet)}


# ------------------------------------------------------------------------------------------- the files are true
@MNIST
def test_the_shipped_anomaly_scores_are_the_shipped_models_scores(recomputed):
    test = load_split("mnist", "test", real_mnist_dir())
    models = {precomputed.SCORED: checkpoint.load(precomputed.MODELS_DIR / f"{precomputed.SCORED}.safetensors")[0],
              **{name: anomaly.load_detector(path)[0] for name, path in anomaly.shipped_detectors().items()}}
    assert set(recomputed["scores"]) == set(models) and len(models) == 11   # conv-digit0 and ten detectors
    for name, model in models.items():
        shipped = precomputed.anomaly_scores(model, test.images)
        assert shipped is not None, f"no shipped scores for {name}: python -m aecore.labs.precomputed"
        np.testing.assert_allclose(shipped, recomputed["scores"][name]["scores"], rtol=1e-5, atol=1e-8,
                                   err_msg=name)


def same_verdict(shipped: dict, now: dict) -> None:
    """Equal up to a float32 difference flipping one image's verdict: counts within 1, shares within 0.001."""
    assert shipped["n"] == now["n"]
    assert np.abs(np.subtract(shipped["class_counts"], now["class_counts"])).max() <= 1
    assert shipped["confident_share"] == pytest.approx(now["confident_share"], abs=1e-3)
    assert shipped["inception_score"] == pytest.approx(now["inception_score"], rel=1e-3)


@MNIST
def test_the_shipped_verdicts_are_the_judges_verdicts_on_the_shipped_models_samples(recomputed):
    judge = classifier.digit_classifier()[0]
    mnist_models = {name: (model, meta) for name, (model, meta) in precomputed.shipped_autoencoders().items()
                    if (meta.get("data") or DataConfig()).dataset == "mnist"}
    assert {e["model"] for e in recomputed["samples"]} == set(mnist_models)
    for e in recomputed["samples"]:
        model, meta = mnist_models[e["model"]]
        fitted_on = None if model.config.variational else precomputed.digest(
            precomputed.fit_images(meta, real_mnist_dir()))
        shipped = precomputed.judged_samples(model, judge, precomputed.SEED, precomputed.SAMPLES, fitted_on)
        assert shipped is not None, f"no shipped verdict for {e['model']}: python -m aecore.labs.precomputed"
        same_verdict(shipped, e["verdict"])
    real = load_split("mnist", "test", real_mnist_dir()).images[:precomputed.SAMPLES]
    same_verdict(precomputed.judged_reference(real, judge), recomputed["reference"][0]["verdict"])


# ------------------------------------------------------------------------------------------- lookups
def test_digest_names_the_content():
    a = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert precomputed.digest(a) == precomputed.digest(torch.from_numpy(a.copy()))
    assert precomputed.digest(a) != precomputed.digest(a.reshape(4, 3))           # shape
    assert precomputed.digest(a) != precomputed.digest(a.astype(np.int16))        # dtype
    b = a.copy()
    b[2, 3] += 1
    assert precomputed.digest(a) != precomputed.digest(b)                         # one value
    model = build(ModelConfig(family="shallow", hidden=(8,)), seed=0)
    same = build(ModelConfig(family="shallow", hidden=(8,)), seed=0)
    assert precomputed.digest(model) == precomputed.digest(same)
    with torch.no_grad():
        same.decoder[0].bias[0] += 1e-6
    assert precomputed.digest(model) != precomputed.digest(same)


def test_a_lookup_answers_only_for_what_an_entry_was_computed_from():
    model, _ = checkpoint.load(precomputed.MODELS_DIR / f"{precomputed.SCORED}.safetensors")
    images = torch.zeros(5, 28, 28, dtype=torch.uint8)
    assert precomputed.anomaly_scores(model, images) is None                      # other images
    judge = classifier.digit_classifier()[0]
    vae, _ = checkpoint.load(precomputed.MODELS_DIR / "keras-vae-2d.safetensors")
    assert precomputed.judged_samples(vae, judge) is not None                     # the shipped first view
    assert precomputed.judged_samples(vae, judge, seed=1) is None                 # other samples
    assert precomputed.judged_samples(vae, judge, n=999) is None
    with torch.no_grad():
        next(vae.parameters())[0].add_(1e-3)                                      # other weights
    assert precomputed.judged_samples(vae, judge) is None
    other_judge = classifier.build(classifier.ClassifierConfig(channels=(2, 4), dense=8))
    assert precomputed.judged_reference(images, other_judge) is None


def test_without_the_files_every_lookup_is_none(tmp_path, monkeypatch):
    monkeypatch.setattr(precomputed, "SCORES", tmp_path / "none.npz")
    monkeypatch.setattr(precomputed, "GENERATE", tmp_path / "none.json")
    model, _ = checkpoint.load(precomputed.MODELS_DIR / "keras-vae-2d.safetensors")
    judge = classifier.digit_classifier()[0]
    assert precomputed.anomaly_scores(model, torch.zeros(2, 28, 28, dtype=torch.uint8)) is None
    assert precomputed.judged_samples(model, judge) is None
    assert precomputed.judged_reference(torch.zeros(2, 28, 28, dtype=torch.uint8), judge) is None


# ------------------------------------------------------------------------------------------- the pages use them
def refuse(*args, **kwargs):
    raise AssertionError("computed although the figures are shipped")


@MNIST
@pytest.mark.usefixtures("app_environment")
def test_the_first_views_read_the_shipped_figures(tmp_path, monkeypatch, recomputed):
    """Anomalies, Start and Generate on a fresh server with the real MNIST: nothing is scored or judged, and the
    figures shown are the recomputed ones."""
    use_data(monkeypatch, tmp_path, real_mnist_dir())
    monkeypatch.setattr(anomaly, "score", refuse)
    monkeypatch.setattr(generative, "judge_images", refuse)
    at = goto(open_app(), "app_pages/anomalies.py")
    assert not at.exception and not at.error
    zeros = recomputed["scores"]["dense-bn-16-mnist-0"]
    labels = load_split("mnist", "test", real_mnist_dir()).labels.numpy()
    auc = anomaly.auc(zeros["scores"], labels != 0)
    assert f"{auc:.3f}" in [m.value for m in at.metric if m.label == "AUC, 0s vs all other digits"]
    at = AppTest.from_file(str(APP), default_timeout=60).run()   # a new visitor on Start (open_app's Train
    assert not at.exception and [t.value for t in at.title][0].startswith("AE Lab")   # keeps its form in the URL)
    six = labels[(labels == 0) | (labels == 6)] == 6
    conv = recomputed["scores"][precomputed.SCORED]["scores"][(labels == 0) | (labels == 6)]
    assert any(f"ROC-AUC {anomaly.auc(conv, six):.3f}" in t for t in texts(at.markdown))
    goto(at, "app_pages/generate.py")                    # pytorch-784-200 beside the first shipped VAE
    assert not at.exception and not at.error
    verdicts = {e["model"]: e["verdict"] for e in recomputed["samples"]}
    shown = [m.value for m in at.metric if m.label == "Inception score (max 10)"]
    compare = at.selectbox(key="generate.compare").value.removeprefix("shipped:")
    assert shown == [f"{verdicts[name]['inception_score']:.2f}" for name in ("pytorch-784-200", compare)]
    bars = json.loads(at.get("vega_lite_chart")[0].proto.spec)["layer"][0]["data"]["values"]   # the class shares
    assert [b["share"] for b in bars if b["of"] == "samples"] == verdicts["pytorch-784-200"]["class_share"]
