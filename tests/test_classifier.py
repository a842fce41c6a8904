"""The digit judge: parameter count, probabilities and their checks, the inception score and `judge` on hand-made
tables, a tiny training run, the file format and its refusals, the shipped model, the command line."""
from __future__ import annotations

import io
import json
import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from aecore.engine import checkpoint
from aecore.labs import classifier, drawset
from aecore.labs.classifier import ClassifierConfig, ClassifierFileError, inception_score, judge, predict_proba
from aecore.engine.data import load_split
from aecore.engine.models import ModelConfig, build as build_autoencoder

from idx_helpers import real_mnist_dir, tiny_data, write_idx_folder

REPO = Path(__file__).resolve().parents[1]
# Small and unaugmented: the synthetic digits are bars two pixels apart, which a shift of 2 px would confuse.
TINY = ClassifierConfig(channels=(8, 16), dense=32, dropout=0.0, epochs=6, batch=20, lr=5e-3, shift=0, scale=0,
                        rotate=0)


def one_hot(classes, k: int = 10) -> np.ndarray:
    return np.eye(k)[np.asarray(classes)]


class Always(nn.Module):
    """A stand-in classifier that says `digit` with certainty, whatever the image."""

    def __init__(self, digit: int):
        super().__init__()
        self.logits = nn.Parameter(torch.where(torch.arange(10) == digit, 30.0, 0.0))

    def forward(self, x):
        return self.logits.expand(len(x), 10)


# ---------------------------------------------------------------------------------------------- the network
def test_parameter_count_and_output_shape():
    # conv 1->16 (3x3): 144 + 16; conv 16->32: 4,608 + 32; dense 32*7*7 -> 128: 200,704 + 128; 128 -> 10: 1,290
    model = classifier.build(ClassifierConfig())
    assert classifier.count_params(model) == 160 + 4_640 + 200_832 + 1_290 == 206_922
    assert model(torch.rand(7, 1, 28, 28)).shape == (7, 10)
    small = classifier.build(replace(ClassifierConfig(), channels=(8, 16), dense=64))
    assert classifier.count_params(small) == (72 + 8) + (1_152 + 16) + (784 * 64 + 64) + (640 + 10) == 52_138


def test_the_same_seed_builds_the_same_weights_without_touching_the_global_generator():
    state = torch.random.get_rng_state()
    a, b = classifier.build(TINY), classifier.build(TINY)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    c = classifier.build(replace(TINY, seed=1))
    assert not torch.equal(a.features[0].weight, c.features[0].weight)


@pytest.mark.parametrize("change, name", [({"channels": (8,)}, "channels"), ({"dense": 0}, "dense"),
                                          ({"dropout": 1.0}, "dropout"), ({"epochs": 0}, "epochs"),
                                          ({"lr": 0.0}, "lr"), ({"shift": 9}, "shift"), ({"scale": 0.5}, "scale"),
                                          ({"rotate": 46}, "rotate")])
def test_a_bad_config_names_its_field(change, name):
    with pytest.raises(ValueError, match=f"ClassifierConfig.{name} must be"):
        ClassifierConfig(**change)


def test_augment_moves_the_ink_by_at_most_the_shift_and_keeps_it():
    x = torch.zeros(200, 1, 28, 28)
    x[:, 0, 12:16, 12:16] = 1.0
    g = torch.Generator().manual_seed(0)
    off = replace(TINY, shift=0, scale=0, rotate=0)
    assert classifier.augment(x, off, g) is x
    out = classifier.augment(x, replace(off, shift=2.0), g)
    assert out.shape == x.shape and torch.allclose(out.sum((1, 2, 3)), torch.full((200,), 16.0), atol=1e-3)
    grid = torch.arange(28.0)
    rows = (out[:, 0].sum(2) * grid).sum(1) / 16 - 13.5   # centre of mass, relative to where it was
    cols = (out[:, 0].sum(1) * grid).sum(1) / 16 - 13.5
    assert rows.abs().max() <= 2 + 1e-4 and cols.abs().max() <= 2 + 1e-4 and rows.abs().max() > 1.5
    turned = classifier.augment(x, replace(off, rotate=30.0), g)
    assert not torch.allclose(turned, x) and torch.allclose(turned.sum((1, 2, 3)), torch.full((200,), 16.0),
                                                           atol=0.5)


# ---------------------------------------------------------------------------------------------- probabilities
def test_predict_proba_rows_are_probabilities_in_every_input_form():
    model = classifier.build(TINY)
    x = np.random.default_rng(0).random((2500, 28, 28)).astype(np.float32)   # more than one batch of 1,000
    p = predict_proba(model, x)
    assert p.shape == (2500, 10) and p.dtype == np.float64 and p.min() >= 0
    assert np.abs(p.sum(1) - 1).max() < 1e-12
    assert np.allclose(p[1500:], predict_proba(model, x[1500:]), atol=1e-6)   # batching changes nothing
    assert np.allclose(predict_proba(model, torch.from_numpy(x[:5, None])), p[:5], atol=1e-6)   # (N, 1, 28, 28)
    assert predict_proba(model, x[3]).shape == (1, 10) and np.allclose(predict_proba(model, x[3]), p[3:4])
    u8 = (x[:5] * 255).round().astype(np.uint8)
    assert np.allclose(predict_proba(model, u8), predict_proba(model, u8 / 255.0), atol=1e-6)
    assert predict_proba(model, np.zeros((0, 28, 28))).shape == (0, 10)


def test_predict_proba_leaves_a_training_model_in_training_mode():
    model = classifier.build(TINY).train()
    predict_proba(model, np.zeros((2, 28, 28)))
    assert model.training


@pytest.mark.parametrize("images, words", [
    (np.zeros((5, 784)), "must have shape (N, 28, 28)"),
    (np.zeros((3, 27, 28)), "got (3, 27, 28)"),
    (np.zeros((2, 3, 28, 28)), "got (2, 3, 28, 28)"),
    (np.zeros(28), "got (28,)"),
    (np.full((2, 28, 28), np.nan), "NaN"),
    (np.full((2, 28, 28), 255.0), "must lie in [0, 1]"),
    (np.zeros((2, 28, 28), dtype=np.int32), "dtype torch.int32"),
])
def test_predict_proba_refuses_bad_images(images, words):
    with pytest.raises(ValueError) as e:
        predict_proba(classifier.build(TINY), images)
    assert words in str(e.value)


# ---------------------------------------------------------------------------------------------- judging
def test_inception_score_on_hand_made_tables():
    assert inception_score(one_hot([3] * 50)) == pytest.approx(1.0, abs=1e-12)           # one class only
    assert inception_score(one_hot(list(range(10)) * 7)) == pytest.approx(10.0, abs=1e-6)  # sure, balanced
    assert inception_score(np.full((40, 10), 0.1)) == pytest.approx(1.0, abs=1e-12)       # every row unsure
    # Rows (1, 0) and (0.5, 0.5): p(y) = (0.75, 0.25); KLs log(4/3) and 0.5 log(2/3) + 0.5 log 2.
    two = np.array([[1.0, 0.0], [0.5, 0.5]])
    assert inception_score(two) == pytest.approx(math.exp((math.log(4 / 3) + 0.5 * math.log(2 / 3)
                                                           + 0.5 * math.log(2)) / 2), rel=1e-12)
    assert inception_score(one_hot([0, 0, 0, 1])) == pytest.approx(math.exp(0.75 * math.log(4 / 3)
                                                                            + 0.25 * math.log(4)), rel=1e-12)


@pytest.mark.parametrize("probs, words", [(np.full(10, 0.1), "table (N, classes)"),
                                          (np.zeros((0, 10)), "N >= 1"),
                                          (np.full((3, 10), 0.2), "summing to 1"),
                                          (np.array([[1.5, -0.5]]), ">= 0")])
def test_inception_score_refuses_what_is_not_a_probability_table(probs, words):
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
        inception_score(probs)


def test_judge_on_a_hand_made_table():
    probs = np.zeros((5, 10))
    probs[0, 0], probs[0, 1] = 0.95, 0.05    # confident 0
    probs[1, 0], probs[1, 1] = 0.5, 0.5      # a tie: argmax takes the first, 0; not confident
    probs[2, 3], probs[2, 4] = 0.9, 0.1      # exactly at the threshold: confident 3
    probs[3, 3] = 1.0
    probs[4, 7], probs[4, 2] = 0.6, 0.4      # unsure 7
    j = judge(probs)
    assert j["n"] == 5 and j["confident_share"] == pytest.approx(0.6)
    assert j["class_counts"] == [2, 0, 0, 2, 0, 0, 0, 1, 0, 0]
    assert j["class_share"] == pytest.approx([0.4, 0, 0, 0.4, 0, 0, 0, 0.2, 0, 0])
    assert j["inception_score"] == pytest.approx(inception_score(probs))
    assert judge(probs, confident=0.55)["confident_share"] == pytest.approx(0.8)
    with pytest.raises(ValueError, match="confident must be in"):
        judge(probs, confident=0)


def test_drawing_accuracy_counts_each_kind_against_the_digit_drawn():
    drawings = drawset.build(None, per_digit=2, scribbles=3)
    fonts = len(drawset.fonts_available())
    d = classifier.drawing_accuracy(Always(7), drawings)
    assert d["count_by_kind"]["font digit"] == 10 * fonts and d["count_by_kind"]["stroke digit"] == 20
    assert d["accuracy_by_kind"] == {"font digit": 0.1, "stroke digit": 0.1}      # only the 7s are right
    assert set(d["confident_by_kind"]) == set(drawset.DIGIT_KINDS[1:] + drawset.OTHER_KINDS)
    assert all(v == 1.0 for v in d["confident_by_kind"].values())
    assert {k: len(v) for k, v in d["mistakes"].items()} == {"font digit": min(20, 9 * fonts), "stroke digit": 18}
    assert d["mistakes"]["font digit"][0] == f"0 in {drawset.fonts_available()[0][0]} -> 7"
    assert d["mistakes"]["stroke digit"][-2:] == ["9 in strokes #0 -> 7", "9 in strokes #1 -> 7"]
    assert not any(m.startswith("7") for ms in d["mistakes"].values() for m in ms)


# ---------------------------------------------------------------------------------------------- training
def test_a_tiny_training_run_learns_the_synthetic_digits():
    data = tiny_data(n_train=200, n_test=50)
    model = classifier.build(TINY)
    before = classifier.accuracy(model, data.test)
    epochs = list(classifier.fit(model, data.train, data.test))
    assert [e.epoch for e in epochs] == [1, 2, 3, 4, 5, 6] and all(e.epochs == 6 for e in epochs)
    assert epochs[-1].loss < 0.5 * epochs[0].loss
    assert epochs[-1].test_accuracy == classifier.accuracy(model, data.test) > max(0.8, before + 0.3)
    again = classifier.build(TINY)
    list(classifier.fit(again, data.train))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


# ---------------------------------------------------------------------------------------------- the file
def test_save_and_load_give_the_same_outputs(tmp_path):
    model = classifier.build(replace(TINY, seed=4))
    path = classifier.save(tmp_path / "m.safetensors", model, {"test_accuracy": 0.5, "note": [1, 2]})
    loaded, meta = classifier.load(path)
    assert meta["config"] == model.config and meta["test_accuracy"] == 0.5 and meta["note"] == [1, 2]
    assert not loaded.training
    x = np.random.default_rng(1).random((20, 28, 28))
    assert np.array_equal(predict_proba(loaded, x), predict_proba(model, x))
    assert classifier.load(path.read_bytes())[1]["config"] == model.config


def _pickled() -> bytes:
    buf = io.BytesIO()
    torch.save(classifier.build(TINY).state_dict(), buf)
    return buf.getvalue()


def _autoencoder_checkpoint() -> bytes:
    ae = build_autoencoder(ModelConfig(family="shallow", hidden=(8,)), seed=0)
    return checkpoint.to_bytes(ae, {})


def _other_config(tmp_path) -> bytes:
    # the weights of one size under the config of another
    blob = classifier.save(tmp_path / "a.safetensors", classifier.build(TINY), {}).read_bytes()
    return blob.replace(b'\\"dense\\": 32', b'\\"dense\\": 33')


def _truncated(tmp_path) -> bytes:
    return classifier.save(tmp_path / "b.safetensors", classifier.build(TINY), {}).read_bytes()[:-100]


@pytest.mark.parametrize("make, words", [
    (lambda tmp: _pickled(), "pickle / torch.save file"),
    (lambda tmp: b"\x80\x04K\x01.", "pickle / torch.save file"),
    (lambda tmp: b"hello, this is text and not a model", "not a safetensors file"),
    (lambda tmp: b"abc", "not a safetensors file"),
    (lambda tmp: _autoencoder_checkpoint(), "not a digit classifier (format 'aecore-checkpoint/1'"),
    (_other_config, "tensor head.1.weight is [32, 784] torch.float32, the config needs [33, 784]"),
    (_truncated, "truncated: tensors need"),
])
def test_a_foreign_or_corrupt_file_is_refused_by_name(tmp_path, make, words):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(make(tmp_path))
    with pytest.raises(ValueError) as e:
        classifier.load(path)
    assert isinstance(e.value, ClassifierFileError) and str(e.value).startswith(str(path)) and words in str(e.value)


def test_a_missing_model_says_how_to_make_it(tmp_path):
    with pytest.raises(ClassifierFileError, match=r"no digit classifier at .*python -m aecore.labs.classifier --out"):
        classifier.digit_classifier(tmp_path / "none.safetensors")
    with pytest.raises(ClassifierFileError, match="cannot read"):
        classifier.load(tmp_path / "none.safetensors")


def test_the_shipped_model_loads_once_and_is_what_its_metadata_says():
    model, meta = classifier.digit_classifier()
    assert classifier.digit_classifier()[0] is model and not model.training
    assert classifier.SHIPPED.stat().st_size < 2_000_000 and classifier.count_params(model) == meta["parameters"]
    assert meta["config"] == ClassifierConfig() and meta["test_accuracy"] >= 0.99
    assert set(meta["drawings"]["accuracy_by_kind"]) == set(drawset.DIGIT_KINDS)
    results = json.loads((classifier.MODELS_DIR / "results.json").read_text())
    assert results["test_accuracy"] == meta["test_accuracy"]
    assert results["drawings"]["accuracy_by_kind"] == meta["drawings"]["accuracy_by_kind"]


@pytest.mark.mnist
def test_the_shipped_model_reads_the_first_thousand_test_digits():
    test = load_split("mnist", "test", real_mnist_dir())
    model, _ = classifier.digit_classifier()
    p = predict_proba(model, test.images[:1000])
    assert (p.argmax(1) == test.labels[:1000].numpy()).mean() >= 0.985


# ---------------------------------------------------------------------------------------------- command line
@pytest.mark.parametrize("args, words", [(["--epochs", "0"], "expected a whole number >= 1"),
                                         (["--threads", "two"], "expected a whole number >= 1"),
                                         (["--bogus"], "unrecognized arguments: --bogus"),
                                         (["--evaluate", "--epochs", "3"], "--evaluate measures a saved model"),
                                         (["--model", "m.safetensors"], "add --evaluate")])
def test_bad_options_exit_2_with_one_line(args, words, capsys):
    with pytest.raises(SystemExit) as e:
        classifier.main(args)
    err = capsys.readouterr().err
    assert e.value.code == 2 and words in err and err.count("\n") == 1 and err.startswith("aecore.labs.classifier: error")


def test_the_command_line_trains_saves_and_evaluates(tmp_path, capsys):
    folder = write_idx_folder(tmp_path / "idx", n_train=120, n_test=40)
    out = tmp_path / "m.safetensors"
    assert classifier.main(["--epochs", "2", "--data-dir", str(folder), "--out", str(out), "--seed", "3"]) == 0
    captured = capsys.readouterr()
    final = json.loads(captured.out)
    epochs = [json.loads(line) for line in captured.err.splitlines()[1:]]
    assert [e["epoch"] for e in epochs] == [1, 2] and final["path"] == str(out) and out.is_file()
    assert final["parameters"] == 206_922 and 206_922 * 4 < final["bytes"] < 2_000_000
    _, meta = classifier.load(out)
    assert meta["config"] == ClassifierConfig(epochs=2, seed=3) and meta["test_accuracy"] == final["test_accuracy"]
    assert meta["drawings"]["count_by_kind"]["mnist"] == 40 and meta["history"] == epochs
    assert classifier.main(["--evaluate", "--model", str(out), "--data-dir", str(folder)]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["test_accuracy"] == meta["test_accuracy"] and figures["drawings"] == meta["drawings"]
    assert figures["test_inception_score"] == meta["test_inception_score"] and figures["model"] == str(out)


def test_missing_data_or_model_exits_1(tmp_path, capsys):
    assert classifier.main(["--data-dir", str(tmp_path / "nothing")]) == 1
    assert "mnist train data not found" in capsys.readouterr().err
    assert classifier.main(["--evaluate", "--model", str(tmp_path / "none.safetensors")]) == 1
    assert "cannot read" in capsys.readouterr().err


def test_the_module_runs_as_a_command():
    r = subprocess.run([sys.executable, "-m", "aecore.labs.classifier", "--epochs", "-1"], capture_output=True, text=True,
                       cwd=REPO, timeout=120)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--epochs" in r.stderr and not r.stdout


def test_sureness_says_how_sure_the_judge_is_of_non_digits():
    meta = {"test_confident_share": 0.9818,
            "drawings": {"confident_by_kind": {"mnist": 0.95, "letter": 0.5375, "symbol": 0.5933, "scribble": 0.3833}}}
    assert classifier.sureness(meta) == ("98% of real test digits, but also 54% of letters, 59% of symbols, "
                                         "38% of scribbles")
    assert classifier.sureness({"test_accuracy": 0.99}) is None
