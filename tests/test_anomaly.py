"""One-class detection: AUC and ROC against hand-computed values, thresholds, a tiny one-class run that
separates an easy anomaly, the checkpoint carrying what `score` needs, the CLI."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from aecore.labs import anomaly
from aecore.engine import checkpoint
from aecore.labs.anomaly import auc, confusion, roc_curve, threshold_for
from aecore.engine.data import Split

from idx_helpers import STEMS, write_idx

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------- AUC oracle
def test_auc_by_hand():
    # anomalies score 0.9, 0.4, 0.6; normals 0.1, 0.5, 0.3. Pairs (anomaly > normal): 0.9 beats 3, 0.4 beats 2
    # (0.1, 0.3), 0.6 beats 3 -> 8 of 9.
    scores = [0.9, 0.4, 0.6, 0.1, 0.5, 0.3]
    is_anomaly = [1, 1, 1, 0, 0, 0]
    assert auc(scores, is_anomaly) == pytest.approx(8 / 9)


def test_auc_counts_ties_as_half_and_matches_pair_counting():
    assert auc([1, 1, 0], [1, 0, 0]) == pytest.approx(0.75)          # the tie between the 1s counts half
    rng = np.random.default_rng(0)
    s = rng.integers(0, 5, 300).astype(float)                         # many ties
    y = rng.random(300) < 0.3
    pos, neg = s[y], s[~y]
    pairs = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    assert auc(s, y) == pytest.approx(pairs)


def test_auc_extremes_and_errors():
    assert auc([3, 4, 1, 2], [1, 1, 0, 0]) == 1.0
    assert auc([1, 2, 3, 4], [1, 1, 0, 0]) == 0.0
    with pytest.raises(ValueError, match="both normal and anomalous"):
        auc([1, 2], [0, 0])


def test_roc_curve_ends_and_area():
    scores = np.array([0.9, 0.4, 0.6, 0.1, 0.5, 0.3])
    y = np.array([1, 1, 1, 0, 0, 0], bool)
    fpr, tpr, thr = roc_curve(scores, y)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert np.trapezoid(tpr, fpr) == pytest.approx(auc(scores, y))
    assert list(thr[1:]) == sorted(scores, reverse=True)


def test_confusion_at_a_threshold():
    c = confusion([0.9, 0.4, 0.6, 0.1, 0.5, 0.3], [1, 1, 1, 0, 0, 0], threshold=0.45)
    assert (c["tp"], c["fp"], c["fn"], c["tn"]) == (2, 1, 1, 2)
    assert c["precision"] == pytest.approx(2 / 3) and c["recall"] == pytest.approx(2 / 3)
    assert c["false_alarm_rate"] == pytest.approx(1 / 3)


def test_threshold_for_a_false_alarm_rate():
    normal = np.linspace(0, 1, 1001)
    q = np.quantile(normal, np.linspace(0, 1, 1001))
    assert threshold_for(q, 0.05) == pytest.approx(0.95)
    assert threshold_for(q, 0.0) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        threshold_for(q, 1.5)


# ---------------------------------------------------------------------------------------------- a tiny run
def easy_split(n: int, seed: int) -> Split:
    """Class 0: a horizontal bar; class 1 (the anomaly): a vertical bar; a little speckle on both."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    images = (rng.random((n, 28, 28)) < 0.02).astype(np.uint8) * 40
    for i, c in enumerate(labels):
        r = 8 + rng.integers(0, 12)
        if c == 0:
            images[i, r:r + 3, 4:24] = 255
        else:
            images[i, 4:24, r:r + 3] = 255
    return Split(torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64)))


def write_easy(folder: Path, n_train: int, n_test: int) -> tuple[Split, Split]:
    """The easy set as the four IDX files in `folder`."""
    splits = {"train": easy_split(n_train, 1), "test": easy_split(n_test, 2)}
    for name, sp in splits.items():
        write_idx(folder / (STEMS[name][0] + ".gz"), sp.images.numpy())
        write_idx(folder / (STEMS[name][1] + ".gz"), sp.labels.numpy().astype(np.uint8))
    return splits["train"], splits["test"]


def test_a_tiny_one_class_run_separates_an_easy_anomaly(tmp_path):
    folder = tmp_path / "idx"
    train, test = write_easy(folder, 400, 200)
    model, meta = anomaly.train("dense-bn-16", "mnist", (0,), epochs=15, device="cpu", data_dir=folder)
    a = meta["anomaly"]
    assert a["normal"] == [0] and a["recipe"] == "dense-bn-16" and a["dataset"] == "mnist"
    assert a["auc"] > 0.9 and set(a["per_class_auc"]) == {"1"}
    assert len(a["held_out_quantiles"]) == 1001
    # The checkpoint alone gives everything `score` needs: the same scores after a round trip.
    path = checkpoint.save(tmp_path / "det.safetensors", model, meta)
    loaded, meta2 = anomaly.load_detector(path)
    np.testing.assert_allclose(anomaly.score(loaded, test.images), anomaly.score(model, test.images), rtol=1e-5)
    assert meta2["anomaly"]["auc"] == a["auc"] and meta2["data"].classes == (0,)


def test_load_detector_rejects_a_plain_model(tmp_path):
    from aecore.engine.models import ModelConfig, build
    path = checkpoint.save(tmp_path / "plain.safetensors", build(ModelConfig(hidden=(8,)), seed=0), {"name": "x"})
    with pytest.raises(checkpoint.CheckpointError, match="not a one-class detector"):
        anomaly.load_detector(path)


def test_cli_prints_json_and_saves_the_detector(tmp_path):
    folder = tmp_path / "idx"
    write_easy(folder, 200, 100)
    out = tmp_path / "d.safetensors"
    r = subprocess.run([sys.executable, "-m", "aecore.labs.anomaly", "--normal", "0", "--epochs", "2", "--device", "cpu",
                        "--data-dir", str(folder), "--out", str(out)], cwd=REPO, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    row = json.loads(r.stdout.strip().splitlines()[-1])
    assert row["normal"] == [0] and 0.0 <= row["auc"] <= 1.0 and row["recipe"] == anomaly.DEFAULT_RECIPE
    assert anomaly.load_detector(out)[1]["anomaly"]["auc"] == row["auc"]
    bad = subprocess.run([sys.executable, "-m", "aecore.labs.anomaly", "--normal", "12"], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 2 and "0-9" in bad.stderr


# ---------------------------------------------------------------------------------------------- real MNIST
@pytest.mark.mnist
def test_one_short_real_one_class_run():
    model, meta = anomaly.train("dense-bn-16", "mnist", (1,), epochs=2, device="cpu")
    assert meta["anomaly"]["auc"] > 0.9          # ones are the easiest normal class


def test_the_recommended_recipe_has_batch_norm_and_the_expected_size():
    from aecore.engine.models import build, count_params
    model = build(anomaly.RECIPES["dense-bn-16"].model, seed=0)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert [n.num_features for n in norms] == [256, 64, 16, 64, 256]     # every hidden layer, not the output
    # linear 784-256-64-16 and back (218,448 + 219,216) + two numbers per batch-norm unit (2 x 656)
    assert count_params(model) == 218_448 + 219_216 + 2 * 656
    out = model(torch.rand(5, 1, 28, 28))
    assert out.z.shape == (5, 16) and out.x_hat.shape == (5, 1, 28, 28)


# ---------------------------------------------------------------------------------------------- the score
class _Zeros(torch.nn.Module):
    """A stand-in model whose reconstruction is always black: the score is then read off the image alone."""
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        from aecore.engine.models import Output
        return Output(z=None, raw=torch.zeros_like(x) + self.w, output="identity")


def test_score_is_the_squared_error_over_the_worst_pixels():
    a = np.zeros((3, 28, 28), np.float32)
    a[0].flat[:30] = 1.0                        # 30 wrong pixels: the worst 20 are all 1 -> 1.0
    a[1].flat[:10], a[1].flat[10:20] = 1.0, 0.5  # 10 at 1.0 and 10 at 0.25 squared -> 0.625
    a[2].flat[:5] = 1.0                         # 5 wrong pixels among the worst 20 -> 0.25
    s = anomaly.score(_Zeros(), a)
    np.testing.assert_allclose(s, [1.0, 0.625, 0.25], rtol=1e-6)
    assert anomaly.WORST_PIXELS == 20
    np.testing.assert_allclose(anomaly.score(_Zeros(), (a * 255).astype(np.uint8)), s, rtol=1e-2)  # uint8 too


# ---------------------------------------------------------------------------------------------- digit detector
@pytest.mark.slow
def test_the_cli_trains_a_digit_detector_with_a_verdict_threshold(tmp_path):
    folder = tmp_path / "idx"
    write_easy(folder, 200, 100)
    out = tmp_path / "digits.safetensors"
    r = subprocess.run([sys.executable, "-m", "aecore.labs.anomaly", "--digits", "--epochs", "2", "--device", "cpu",
                        "--data-dir", str(folder), "--out", str(out)], cwd=REPO, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    row = json.loads(r.stdout.strip().splitlines()[-1])
    model, meta = anomaly.digit_detector(out)
    a = meta["anomaly"]
    assert a["normal"] == list(range(10)) and a["auc"] is None        # no anomalies in the test set to rank
    assert a["verdict_threshold"] == pytest.approx(threshold_for(a["canvas_quantiles"], 0.01))
    assert a["verdict_threshold"] < a["held_out_quantiles"][-1]
    assert row["verdict_threshold"] == a["verdict_threshold"] and row["auc"] == a["drawings"]["auc"]
    # the test folder's test split holds 0s and 1s: 20 enlarged digits, and the generated drawings
    assert a["drawings"]["count_by_kind"]["mnist"] == 20 and a["drawings"]["count_by_kind"]["letter"] > 0
    bad = subprocess.run([sys.executable, "-m", "aecore.labs.anomaly", "--digits", "--normal", "3"], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--digits trains on all ten" in bad.stderr


def test_digit_detector_refuses_a_detector_without_threshold(tmp_path):
    model, meta = anomaly.load_detector(next(iter(anomaly.shipped_detectors().values())))
    path = checkpoint.save(tmp_path / "one-class.safetensors", model, meta)
    with pytest.raises(checkpoint.CheckpointError, match="without a verdict threshold"):
        anomaly.digit_detector(path)


def test_the_shipped_digit_detector_meets_its_targets_on_the_drawing_set():
    model, meta = anomaly.digit_detector()
    a = meta["anomaly"]
    assert a["recipe"] == anomaly.DEFAULT_RECIPE and a["normal"] == list(range(10))
    d = a["drawings"]
    assert d["auc"] >= 0.97 and d["non_digits_unusual"] >= 0.80 and d["digits_typical"] >= 0.90
    # its likeliest mistakes, named for the page: non-digits that score lowest, digits that score highest
    assert len(d["most_digit_like_non_digits"]) == len(d["least_digit_like_digits"]) == anomaly.CONFUSED
    assert not any(w[0].isdigit() for w in d["most_digit_like_non_digits"])
    assert all(w[0].isdigit() for w in d["least_digit_like_digits"])
    assert anomaly.DIGIT_DETECTOR.stat().st_size < 5_000_000
    # Recomputed here without MNIST (fonts, strokes and the rest): the same scores the stored figures came from.
    from aecore.labs import drawset
    drawings = drawset.build()
    again = anomaly.drawing_figures(model, a["verdict_threshold"], drawings)
    for kind in set(again["unusual_by_kind"]) - {"mnist"}:
        assert again["unusual_by_kind"][kind] == pytest.approx(d["unusual_by_kind"][kind], abs=1e-4), kind
    assert again["auc"] >= 0.96


@pytest.mark.mnist
def test_the_shipped_digit_detector_figures_reproduce_with_mnist():
    from aecore.labs import drawset
    from aecore.engine.data import load_split
    model, meta = anomaly.digit_detector()
    a = meta["anomaly"]
    again = anomaly.drawing_figures(model, a["verdict_threshold"], drawset.build(load_split("mnist", "test")))
    for key in ("auc", "non_digits_unusual", "digits_typical"):
        assert again[key] == pytest.approx(a["drawings"][key], abs=1e-4), key
    assert again["unusual_by_kind"] == pytest.approx(a["drawings"]["unusual_by_kind"], abs=1e-4)
    assert again["count_by_kind"] == a["drawings"]["count_by_kind"]
    assert again["most_digit_like_non_digits"] == a["drawings"]["most_digit_like_non_digits"]
