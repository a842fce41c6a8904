"""The own-pictures detector: the generated MVTec-layout set, the scores and thresholds against hand-worked cases
and a pairwise oracle, PCA on a generated set, and `python -m aecore.anomaly` end to end.

The set is made from a stand-in Fashion-MNIST written into tmp_path (class 7 a wide, low blob like a sneaker,
class 5 thin straps like a sandal, other classes noise), so no test depends on the real files."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aecore import anomaly as anomaly_cli
from aecore.engine.data import DataError
from aecore.engine.images import ImageSetConfig, load_images
from aecore.labs import pictures as pic
from aecore.labs.anomaly import auc
from aecore.labs.pictureset import make_set
from idx_helpers import png_bytes, write_dataset

ROOT = Path(__file__).resolve().parents[1]
SMALL = dict(side=32, n_train=40, n_test_good=10, n_scratch=8, n_other=8)


def _shoe(rng, kind: int) -> np.ndarray:
    """One 28 x 28 stand-in picture: 7 a sneaker-like blob, 5 sandal-like straps, else speckle."""
    img = np.zeros((28, 28), np.float32)
    if kind == 7:
        top, left, right = rng.integers(11, 15), rng.integers(2, 5), rng.integers(23, 27)
        img[top:22, left:right] = rng.uniform(0.6, 1.0)
        img[top - 4:top, left + 8:left + 14] = rng.uniform(0.5, 0.9)        # the ankle
    elif kind == 5:
        for x in rng.integers(3, 25, 3):
            img[6:22, x:x + 1] = rng.uniform(0.6, 1.0)
        img[21:23, 2:26] = 0.8
    else:
        img = rng.uniform(0, 1, (28, 28)).astype(np.float32)
    return np.round(img * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def fashion_dir(tmp_path_factory) -> Path:
    rng = np.random.default_rng(3)
    arrays = {}
    for split, n in (("train", 160), ("test", 120)):
        labels = np.array([7, 5, 7, 0] * (n // 4), np.uint8)
        arrays[f"{split}-images"] = np.stack([_shoe(rng, k) for k in labels])
        arrays[f"{split}-labels"] = labels
    root = tmp_path_factory.mktemp("fashion")
    write_dataset(root, arrays, layout="fashion")
    return root


@pytest.fixture(scope="module")
def small_set(fashion_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("set") / "shoes"
    make_set(out, seed=0, data_dir=fashion_dir, **SMALL)
    return out


# ---------------------------------------------------------------------------------------------- the set maker
def test_set_layout_counts_and_masks(small_set):
    counts = {d: len(list((small_set / d).glob("*.png"))) for d in
              ("train/good", "test/good", "test/scratch", "test/sandal", "ground_truth/scratch")}
    assert counts == {"train/good": 40, "test/good": 10, "test/scratch": 8, "test/sandal": 8,
                      "ground_truth/scratch": 8}
    assert not (small_set / "ground_truth" / "sandal").exists()       # a wrong object: no located defect
    for i in range(8):
        picture = np.asarray(Image.open(small_set / "test/scratch" / f"{i:03d}.png"))
        mask = np.asarray(Image.open(small_set / "ground_truth/scratch" / f"{i:03d}_mask.png"))
        assert picture.shape == (32, 32, 3) and mask.shape == (32, 32)
        assert set(np.unique(mask)) == {0, 255}
        assert 32 <= (mask > 0).sum() <= 4 * 32 * 2                      # 2 px wide, edge to edge
        on_line = picture[mask > 0]
        assert (on_line.max(axis=1) >= 64).all()                          # drawn in a bright colour
    good = np.asarray(Image.open(small_set / "train/good/000.png"))
    assert good.shape == (32, 32, 3) and good.max() > 100


def test_set_is_deterministic_and_seeded(fashion_dir, tmp_path):
    a, b, c = (make_set(tmp_path / n, seed=s, data_dir=fashion_dir, **SMALL).root
               for n, s in (("a", 4), ("b", 4), ("c", 5)))
    files = sorted(p.relative_to(a) for p in a.rglob("*.png"))
    assert files == sorted(p.relative_to(b) for p in b.rglob("*.png"))
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    assert any((a / f).read_bytes() != (c / f).read_bytes() for f in files)


def test_set_refuses_counts_it_cannot_fill(fashion_dir, tmp_path):
    with pytest.raises(DataError, match="class 7"):
        make_set(tmp_path / "big", data_dir=fashion_dir, side=32, n_train=1000)


def test_loader_reads_the_set_as_mvtec(small_set):
    images = load_images(small_set, ImageSetConfig(side=32, color="rgb"))
    assert images.layout == "mvtec" and images.class_names[images.good_class] == "good"
    assert tuple(images.data.train.images.shape) == (40, 3, 32, 32)
    labels = images.data.test.labels.numpy()
    scratch = images.class_names.index("scratch")
    masks = images.masks.numpy()
    assert masks[labels == scratch].reshape(8, -1).any(axis=1).all() and not masks[labels != scratch].any()


# ---------------------------------------------------------------------------------------------- scores
def test_auroc_against_pairwise_oracle():
    rng = np.random.default_rng(0)
    s = rng.integers(0, 6, 60).astype(float)             # many ties
    y = rng.random(60) < 0.4
    pos, neg = s[y], s[~y]
    oracle = ((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (len(pos) * len(neg))
    assert auc(s, y) == pytest.approx(oracle)
    assert auc([1, 2, 3, 4], [0, 0, 1, 1]) == 1.0 and auc([1, 2, 3, 4], [1, 1, 0, 0]) == 0.0
    try:
        from sklearn.metrics import roc_auc_score
    except ImportError:
        return
    assert auc(s, y) == pytest.approx(roc_auc_score(y, s))


def test_worst_pixels_and_error_maps():
    maps = np.zeros((2, 4, 4), np.float32)
    maps[0, 0, :3] = [9, 6, 3]
    maps[1] = 1.0
    assert pic.worst_pixels(maps, 2).tolist() == [7.5, 1.0]
    assert pic.worst_pixels(maps, 100).tolist() == pytest.approx([18 / 16, 1.0])   # k capped at S*S
    x, x_hat = np.zeros((1, 3, 2, 2)), np.full((1, 3, 2, 2), 0.5)
    assert pic.error_maps(x, x_hat).tolist() == [[[0.75, 0.75], [0.75, 0.75]]]    # summed over channels


def test_good_only_threshold_has_its_false_alarm_rate():
    good = np.arange(1, 101, dtype=float)                # held-out good scores 1..100
    t = pic.good_threshold(good, 0.05)
    assert (good > t).sum() == 5                          # 5% of good pictures above
    report = pic.threshold_report(t, np.r_[good, [200, 50]], np.r_[np.zeros(100, bool), [True, True]])
    assert (report["tp"], report["fn"], report["fp"], report["tn"]) == (1, 1, 5, 95)
    assert report["false_alarm_rate"] == pytest.approx(0.05)
    with pytest.raises(ValueError, match="false_alarm"):
        pic.good_threshold(good, 0.0)


def test_best_f1_threshold_in_hindsight():
    scores = np.array([0.1, 0.2, 0.3, 0.9, 0.35, 0.8])
    y = np.array([0, 0, 0, 1, 1, 1], bool)
    t = pic.best_f1_threshold(scores, y)
    r = pic.threshold_report(t, scores, y)
    assert 0.3 < t < 0.35 and (r["tp"], r["fp"], r["fn"], r["tn"]) == (3, 0, 0, 3) and r["f1"] == 1.0


def test_pixel_auroc_uses_only_classes_with_masks():
    maps = np.zeros((3, 2, 2))
    maps[1, 0, 0] = 1.0                                   # the scratch's pixel is its worst
    maps[2] = 5.0                                         # the sandal scores high everywhere, without a mask
    masks = np.zeros((3, 2, 2), np.uint8)
    masks[1, 0, 0] = 1
    assert pic.pixel_auroc(maps, masks, [0, 1, 2], 0) == 1.0
    assert pic.pixel_auroc(maps, None, [0, 1, 2], 0) is None
    assert pic.pixel_auroc(maps, np.zeros_like(masks), [0, 1, 2], 0) is None


def test_code_gaussian_invertible_with_fewer_pictures_than_numbers():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(10, 50))                        # 10 codes of 50 numbers: a singular covariance
    g = pic.fit_gaussian(z)
    assert np.isfinite(g.precision).all()
    assert g.distance(z.mean(0, keepdims=True))[0] == pytest.approx(0.0, abs=1e-9)
    assert g.distance(z.mean(0, keepdims=True) + 10)[0] > g.distance(z).max()


def test_pca_beats_chance_on_a_generated_set(small_set):
    images = load_images(small_set, ImageSetConfig(side=32, color="rgb"))
    x_train = images.data.train.images.float().numpy() / 255
    x_test = images.data.test.images.float().numpy() / 255
    pca = pic.fit_pca(x_train, 64)
    assert pca.components.shape == (39, 3 * 32 * 32)     # fewer pictures than 64: N - 1 components
    assert np.allclose(pca.components @ pca.components.T, np.eye(39), atol=1e-4)
    scores = pic.worst_pixels(pic.error_maps(x_test, pca.reconstruct(x_test)))
    figures = pic.image_figures(scores, images.data.test.labels.numpy(), images.class_names, images.good_class)
    assert figures["image_auroc"] > 0.8
    assert set(figures["per_defect_auroc"]) == {"scratch", "sandal"}


# ---------------------------------------------------------------------------------------------- command line
def _cli(*args, cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "aecore.anomaly", *map(str, args)], capture_output=True,
                          text=True, timeout=300, cwd=cwd, env=env)


@pytest.mark.slow
def test_cli_trains_and_ends_with_one_json_line(small_set):
    done = _cli("--folder", small_set, "--side", 32, "--epochs", 2)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) > 3 and any("epoch 2/2" in line for line in lines)
    out = json.loads(lines[-1])
    assert {"image_auroc", "pca_image_auroc", "per_defect_auroc", "pixel_auroc", "threshold", "skipped",
            "seconds"} <= set(out)
    assert set(out["per_defect_auroc"]) == {"scratch", "sandal"} and 0 <= out["image_auroc"] <= 1
    assert out["pca_image_auroc"] > 0.8 and out["pixel_auroc"] is not None and out["skipped"] == []
    good_only = out["threshold"]["good_only"]
    assert good_only["tp"] + good_only["fn"] == 16 and good_only["fp"] + good_only["tn"] == 10
    assert out["counts"] == {"train": 32, "held_out": 8, "test": 26}


# The refusals run in-process (`main` is what the module runs), so they stay fast.
def test_cli_refuses_an_escaping_zip_with_status_2(tmp_path, capsys):
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("train/good/a.png", png_bytes(np.zeros((8, 8), np.uint8)))
        z.writestr("../x.png", png_bytes(np.zeros((8, 8), np.uint8)))
    assert anomaly_cli.main(["--folder", str(archive)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1 and err.startswith("aecore.anomaly: ")


def test_cli_refuses_a_set_without_the_mvtec_layout(tmp_path, capsys):
    folder = tmp_path / "flat"
    folder.mkdir()
    for i in range(6):
        Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(folder / f"{i}.png")
    assert anomaly_cli.main(["--folder", str(folder), "--side", "32"]) == 2
    err = capsys.readouterr().err
    assert "MVTec" in err and len(err.strip().splitlines()) == 1


def test_cli_refuses_bad_options_in_one_line(small_set, capsys):
    with pytest.raises(SystemExit) as stop:
        anomaly_cli.main(["--folder", str(small_set), "--false-alarm", "1.5"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and len(err.strip().splitlines()) == 1 and "--false-alarm" in err


@pytest.mark.slow
def test_detect_galleries_and_held_out_split(small_set):
    from aecore.labs.picturerun import detect
    images = load_images(small_set, ImageSetConfig(side=32, color="rgb"))
    found = detect(images, "conv-code", epochs=1, gallery_size=4)
    f, labels = found.figures, found.labels
    assert f["counts"] == {"train": 32, "held_out": 8, "test": 26} and f["pca_components"] == 31
    index, maps = found.gallery_maps("most_anomalous")
    assert maps.shape == (4, 32, 32) and list(index) == np.argsort(-found.scores, kind="stable")[:4].tolist()
    good_index, _ = found.gallery_maps("least_typical_good")
    assert (labels[good_index] == images.good_class).all()
    assert found.scores[good_index].tolist() == sorted(found.scores[labels == images.good_class])[::-1][:4]
    t = f["threshold"]["good_only"]
    assert t["tp"] + t["fn"] == 16 and t["fp"] + t["tn"] == 10


@pytest.mark.parametrize("backend", [pytest.param("processes", marks=pytest.mark.slow), "threads"])
def test_a_detection_run_through_the_run_service_finds_what_detect_finds(small_set, tmp_path, backend):
    """The app's detector runs as a run of the service (a TaskSpec: capped, queued, stoppable); what it returns is
    what `detect` finds on the same set with the same seed, and the page rebuilds the Detection from it."""
    import time

    from aecore.engine.data import load, save_picture_set
    from aecore.labs.picturerun import DetectConfig, Detection, detect, detection_spec
    from aecore.runs import RegistryConfig, RunRegistry, TaskSpec
    images = load_images(small_set, ImageSetConfig(side=32, color="rgb"))
    path = save_picture_set(tmp_path / "shoes.npz", images.data, images.describe(), images.masks)
    cfg = DetectConfig(images=str(path), recipe="conv-code", epochs=1, good_class=images.good_class)
    spec = detection_spec(cfg, images.source_name)
    assert isinstance(spec, TaskSpec) and spec.name == "anomalies · conv-code · shoes"
    reg = RunRegistry(RegistryConfig(max_runs=1, backend=backend), sweep_every=None)
    try:
        run_id = reg.submit(spec, load(cfg.data), "v1")
        deadline = time.monotonic() + 300
        while (view := reg.view(run_id)).active:
            assert time.monotonic() < deadline, "the detection run did not end"
            time.sleep(0.2)
        assert view.state == "finished", view.snapshot.error
        records = view.snapshot.records
        assert records and records[-1].step == records[-1].total_steps and view.snapshot.progress == 1.0
        found = Detection.from_result(view.snapshot.result)
    finally:
        reg.shutdown(wait=60)
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)                 # as a run trains: one thread (float sums in the same order)
    try:
        oracle = detect(images, "conv-code", epochs=1, device="cpu")
    finally:
        torch.set_num_threads(threads)
    drop = ("seconds", "train_seconds", "skipped")        # timings; the file does not keep the skipped list
    ours, theirs = (flat({k: v for k, v in f.items() if k not in drop}) for f in (found.figures, oracle.figures))
    assert ours.keys() == theirs.keys()
    for k in ours:
        assert ours[k] == (pytest.approx(theirs[k], rel=1e-3) if isinstance(theirs[k], float) else theirs[k]), k
    np.testing.assert_allclose(found.scores, oracle.scores, rtol=1e-3)
    assert found.maps.shape == oracle.maps.shape == (26, 32, 32) and found.model is None


def test_a_detection_config_refuses_what_it_cannot_run():
    from aecore.labs.picturerun import DetectConfig
    for bad, words in ((dict(recipe="nope"), "recipe"), (dict(epochs=0), "epochs"), (dict(good_class=-1), "good")):
        with pytest.raises(ValueError, match=words):
            DetectConfig(images="set.npz", **bad)


def flat(d: dict, prefix: str = "") -> dict:
    """A nested dict's leaves, keyed by their paths."""
    out = {}
    for k, v in d.items():
        out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out
