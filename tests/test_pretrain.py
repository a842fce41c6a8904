"""Few-label pretraining: the labelled draw, the two arms' starting weights, the table, the command line, the stored
results and the page that shows them."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from aecore.labs import pretrain
from aecore.engine.data import Data, DataConfig, Split, load
from aecore.engine.models import build
from aecore.labs.pretrain import QUICK, ROW_KEYS, Classifier, PretrainConfig, ResultsError

from streamlit.testing.v1 import AppTest

from app_helpers import APP, TITLES, custom_form, goto, open_app, texts, wait_for_end
from ui import server, session, visitor
from idx_helpers import tiny_data, write_idx_folder

# Fixtures (conftest.py): app_environment for every test here, as every AppTest needs it.
pytestmark = pytest.mark.usefixtures("app_environment")

REPO = Path(__file__).resolve().parents[1]
SMALL = replace(QUICK, hidden=(32, 8))   # seconds on the tiny data sets


def labels_of(counts: list[int], seed: int = 0) -> torch.Tensor:
    """Shuffled labels with `counts[d]` images of digit d."""
    y = torch.cat([torch.full((c,), d) for d, c in enumerate(counts)])
    return y[torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))]


# ---------------------------------------------------------------------------------------------- the labelled draw
def test_the_draw_is_exact_balanced_and_reproducible():
    y = labels_of([50 + d for d in range(10)])
    idx = pretrain.draw_labelled(y, 100, seed=3)
    assert idx.shape == (100,) and len(set(idx.tolist())) == 100
    assert torch.bincount(y[idx], minlength=10).tolist() == [10] * 10
    assert y[idx].tolist() == [d for d in range(10) for _ in range(10)]   # digit by digit, 0 first
    assert torch.equal(idx, pretrain.draw_labelled(y, 100, seed=3))
    others = [set(pretrain.draw_labelled(y, 100, seed=s).tolist()) for s in (0, 1, 2)]
    assert all(a != b for i, a in enumerate(others) for b in others[i + 1:])
    assert set(pretrain.draw_labelled(y, 30, seed=3).tolist()) != set(idx.tolist())


def test_every_image_when_n_is_the_whole_set():
    y = labels_of([5, 7, 3, 9, 4, 6, 8, 5, 4, 9])   # unbalanced, like MNIST
    assert torch.equal(pretrain.draw_labelled(y, len(y), seed=1), torch.arange(len(y)))


@pytest.mark.parametrize("n, words", [(15, "multiple of 10"), (0, "multiple of 10"), (-10, "multiple of 10"),
                                      (50, "digit 2 has only 3"), (70, "digit 0 has only 5")])
def test_a_wrong_number_of_labels_is_refused(n, words):
    with pytest.raises(ValueError, match=words):
        pretrain.draw_labelled(labels_of([5, 7, 3, 9, 4, 6, 8, 5, 4, 9]), n, seed=0)


def test_shift_moves_each_image_within_its_range():
    x = torch.zeros(64, 1, 28, 28)
    x[:, 0, 14, 14] = 1.0
    g = torch.Generator().manual_seed(0)
    assert torch.equal(pretrain.shift(x, 0, g), x)
    out = pretrain.shift(x, 2, g)
    assert out.shape == (64, 1, 28, 28) and torch.equal(out.sum((1, 2, 3)), torch.ones(64))   # nothing falls off
    where = torch.nonzero(out[:, 0])[:, 1:] - 14                                             # (64, 2) offsets
    assert where.abs().max() == 2 and len({tuple(w) for w in where.tolist()}) > 10


# ---------------------------------------------------------------------------------------------- the two arms
def test_the_classifier_gives_ten_logits_per_image():
    net = pretrain.classifier(SMALL, seed=0)
    assert isinstance(net, Classifier) and net.head.in_features == 8
    assert net(torch.rand(7, 1, 28, 28)).shape == (7, 10)
    assert net(torch.rand(5, 784)).shape == (5, 10)


def test_the_pretrained_arm_starts_from_the_autoencoders_encoder_and_the_random_arm_does_not():
    ae = build(SMALL.ae_model(), seed=123)
    before = {k: v.clone() for k, v in ae.encoder.state_dict().items()}
    pre, rnd = pretrain.classifier(SMALL, 0, ae), pretrain.classifier(SMALL, 0)
    for k, v in before.items():
        assert torch.equal(pre.encoder.state_dict()[k], v)
        if k.endswith("weight") and v.ndim == 2:
            assert not torch.allclose(rnd.encoder.state_dict()[k], v)
    assert torch.equal(pre.head.weight, rnd.head.weight)   # the same head: only the encoder's start differs
    data = tiny_data(200, 50)
    pretrain.fine_tune(pre, data.train.images[:100], data.train.labels[:100], SMALL, seed=0)
    assert not torch.equal(pre.encoder[0].weight, before["0.weight"])        # fine-tuning moved the copy ...
    assert all(torch.equal(ae.encoder.state_dict()[k], v) for k, v in before.items())   # ... not the original


def test_an_autoencoder_of_another_shape_is_refused():
    with pytest.raises(ValueError, match="not the configured one"):
        pretrain.classifier(SMALL, 0, build(replace(SMALL, hidden=(32, 4)).ae_model()))


def test_fine_tuning_learns_the_synthetic_digits():
    # the synthetic digits differ only in where their bars lie, so shifting them would blur the classes
    data = tiny_data(200, 100)
    net = pretrain.classifier(SMALL, seed=0)
    chance = pretrain.accuracy(net, data.test.images, data.test.labels)
    idx = pretrain.draw_labelled(data.train.labels, 100, seed=0)
    cfg = replace(SMALL, steps=150, shift=0)
    pretrain.fine_tune(net, data.train.images[idx], data.train.labels[idx], cfg, seed=0)
    assert chance < 0.35 and pretrain.accuracy(net, data.test.images, data.test.labels) > 0.8


def _noisy_patterns(n: int, seed: int, sigma: float = 0.4):
    """Ten fixed random patterns (30 % of pixels raised by 0.3) under strong pixel noise (sigma 0.4): one labelled
    image per class says little, while thousands of unlabelled ones show where the patterns lie."""
    rng = np.random.default_rng(seed)
    patterns = (np.random.default_rng(99).random((10, 28, 28)) < 0.3) * 0.3
    y = np.arange(n) % 10
    x = np.clip(0.35 + patterns[y] + sigma * rng.standard_normal((n, 28, 28)), 0, 1)
    return Split(torch.from_numpy((x * 255).round().astype(np.uint8)), torch.from_numpy(y.astype(np.int64)))


@pytest.mark.slow
def test_a_denoising_autoencoder_helps_when_one_label_per_class_is_noise_dominated():
    data = Data(_noisy_patterns(1000, 0), None, _noisy_patterns(300, 1))
    cfg = replace(QUICK, hidden=(64, 16), deform=0.0, ae_epochs=30, ae_batch=50, noise_level=0.3, batch=20,
                  steps=40)
    ae, _ = pretrain.pretrain(data, cfg, cache=None)
    [row] = pretrain.table(data, ae, cfg, labels=(10,), seeds=5)
    # measured: 47.7 % against 24.0 % (chance 10 %), the pretrained arm ahead on every draw
    assert row["pretrained_mean"] > row["random_mean"] + 0.15, row
    assert sum(p > r for p, r in zip(row["pretrained"], row["random"])) >= 4, row


def test_pretraining_is_cached_by_config_and_images(tmp_path):
    data = tiny_data(200, 50)
    first, info = pretrain.pretrain(data, SMALL, tmp_path)
    assert info["source"] == "trained" and len(list(tmp_path.glob("ae-*.safetensors"))) == 1
    again, info2 = pretrain.pretrain(data, SMALL, tmp_path)
    assert info2["source"].startswith(str(tmp_path)) and info2["test_loss"] == info["test_loss"]
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values()))
    pretrain.pretrain(tiny_data(200, 50, seed=5), SMALL, tmp_path)       # other images: another autoencoder
    pretrain.pretrain(data, replace(SMALL, noise_level=0.2), tmp_path)   # another config: another one
    assert len(list(tmp_path.glob("ae-*.safetensors"))) == 3


# ---------------------------------------------------------------------------------------------- command line
def run_cli(*args, timeout=240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aecore.labs.pretrain", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def test_cli_prints_one_row_per_n_and_writes_the_table(tmp_path, capsys):
    folder = write_idx_folder(tmp_path / "idx", n_train=150, n_test=40)
    out = tmp_path / "res" / "results.json"
    threads = torch.get_num_threads()
    code = pretrain.main(["--quick", "--labels", "10,100,150", "--seeds", "2", "--data-dir", str(folder),
                          "--cache-dir", str(tmp_path / "cache"), "--out", str(out)])
    assert code == 0 and torch.get_num_threads() == threads   # --threads (default 1) holds for the run only
    lines = capsys.readouterr().out.strip().splitlines()
    rows = [json.loads(line) for line in lines]
    assert [r["labels"] for r in rows] == [10, 100, 150]
    for r in rows:
        assert set(r) == {*ROW_KEYS, "seeds", "pretrained", "random", "seconds"}
        assert all(0 <= r[k] <= 1 for k in ROW_KEYS[1:]) and r["seeds"] == 2 and len(r["random"]) == 2
        assert r["pretrained_mean"] == pytest.approx(np.mean(r["pretrained"]), abs=1e-4)
        assert r["random_std"] == pytest.approx(np.std(r["random"], ddof=1), abs=1e-4)
    saved = pretrain.load_results(out)
    assert saved["config"] == QUICK and saved["rows"] == rows and saved["train_images"] == 150
    assert saved["autoencoder"]["source"] == "trained" and saved["quick"] is True
    assert saved["command"].startswith("python -m aecore.labs.pretrain --quick --labels 10,100,150")


@pytest.mark.parametrize("args, words", [(["--labels", "15"], "multiple of 10"), (["--seeds", "0"], ">= 1"),
                                         (["--labels", "100,abc"], "comma-separated"), (["--bogus"], "unrecognized")])
def test_bad_options_exit_2_with_one_line(args, words, capsys):
    with pytest.raises(SystemExit) as e:
        pretrain.main(args)
    err = capsys.readouterr().err
    assert e.value.code == 2 and words in err and err.count("\n") == 1 and err.startswith("aecore.labs.pretrain: error")


def test_too_many_labels_for_the_data_exit_2(tmp_path, capsys):
    folder = write_idx_folder(tmp_path / "idx", n_train=120, n_test=40)
    with pytest.raises(SystemExit) as e:
        pretrain.main(["--quick", "--labels", "200", "--data-dir", str(folder), "--no-cache"])
    assert e.value.code == 2 and "has only 12 training images" in capsys.readouterr().err


def test_missing_data_exits_1_from_the_command_line(tmp_path):
    r = run_cli("--quick", "--data-dir", tmp_path / "nothing-here")
    assert r.returncode == 1 and "mnist train data not found" in r.stderr and not r.stdout
    bad = run_cli("--labels", "55")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "multiple of 10" in bad.stderr


# ---------------------------------------------------------------------------------------------- stored results
def results_file(path: Path, rows=None) -> Path:
    rows = rows or [{"labels": 100, "pretrained_mean": 0.87, "pretrained_std": 0.02, "random_mean": 0.8,
                     "random_std": 0.03, "seeds": 3},
                    {"labels": 60000, "pretrained_mean": 0.98, "pretrained_std": 0.001, "random_mean": 0.979,
                     "random_std": 0.002, "seeds": 3}]
    path.write_text(json.dumps({"format": pretrain.FORMAT, "config": PretrainConfig().to_dict(), "rows": rows,
                                "seconds": 512.3, "date": "2025-01-01T00:00:00", "torch": "2.x", "device": "cpu",
                                "train_images": 60000, "command": "python -m aecore.labs.pretrain --out x.json"}))
    return path


@pytest.mark.parametrize("content, words", [(None, "does not exist"), ("{not json", "not readable JSON"),
                                            ('{"format": "other"}', "not a pretraining results file"),
                                            ("bad-row", "rows are malformed"), ("bad-config", "malformed")])
def test_a_missing_or_malformed_results_file_is_explained(tmp_path, content, words):
    path = tmp_path / "results.json"
    if content == "bad-row":
        results_file(path, [{"labels": 100, "pretrained_mean": 1.5, "pretrained_std": 0, "random_mean": 0.5,
                             "random_std": 0}])
    elif content == "bad-config":
        results_file(path)
        path.write_text(path.read_text().replace('"hidden"', '"hiddne"'))
    elif content is not None:
        path.write_text(content)
    with pytest.raises(ResultsError, match=words) as e:
        pretrain.load_results(path)
    assert "python -m aecore.labs.pretrain --out" in str(e.value)


def test_accuracy_figure_has_both_arms_error_bars_and_the_references(tmp_path):
    rows = pretrain.load_results(results_file(tmp_path / "r.json"))["rows"]
    fig = pretrain.accuracy_figure(rows)
    assert [t.name for t in fig.data] == ["pretrained encoder", "random init"]
    assert list(fig.data[0].y) == pytest.approx([87.0, 98.0]) and list(fig.data[1].error_y.array) == [3.0, 0.2]
    assert fig.layout.xaxis.type == "log" and len(fig.layout.shapes) == len(pretrain.REFERENCES) == 2
    assert [a.text for a in fig.layout.annotations][0].endswith("74.2%")


# ---------------------------------------------------------------------------------------------- the page
PAGE = "app_pages/pretrain.py"


def test_the_page_shows_the_table_the_chart_and_the_draw(tiny_idx, tmp_path, monkeypatch):
    monkeypatch.setattr(pretrain, "RESULTS", results_file(tmp_path / "results.json"))
    at = goto(open_app(), PAGE)
    assert texts(at.title) == [TITLES[PAGE]] and not at.error and not at.warning
    table = at.dataframe[0].value
    assert list(table["labelled images (N)"]) == ["100", "60,000"]
    assert list(table["pretrained"]) == ["87.0 ± 2.0 %", "98.0 ± 0.1 %"]
    assert list(table["gain (points)"]) == [7.0, 0.1]
    assert any("**87.0%** against **80.0%** from random weights (+7.0 points)" in m and "+0.1 points" in m
               for m in texts(at.markdown))
    assert len(at.get("plotly_chart")) == 1 and len(at.get("image")) == 1
    assert any("python -m aecore.labs.pretrain --out x.json" in c for c in texts(at.caption))
    at.number_input(key="pretrain.seed").set_value(2).run()
    assert not at.exception and "draw 2" in at.get("image")[0].proto.imgs[0].caption


def test_the_page_without_data_or_results_explains_and_never_errs(no_data, tmp_path, monkeypatch):
    monkeypatch.setattr(pretrain, "RESULTS", tmp_path / "missing.json")
    at = goto(open_app(), PAGE)
    assert not at.error and not at.get("plotly_chart") and not at.dataframe
    assert any("No measured table" in w and "python -m aecore.labs.pretrain --out" in w for w in texts(at.warning))
    assert any("Needs the MNIST training images" in i for i in texts(at.info))


def test_the_page_with_results_but_no_data(no_data, tmp_path, monkeypatch):
    monkeypatch.setattr(pretrain, "RESULTS", results_file(tmp_path / "results.json"))
    at = goto(open_app(), PAGE)
    assert not at.error and len(at.dataframe) == 1 and len(at.get("plotly_chart")) == 1
    assert any("Needs the MNIST training images" in i for i in texts(at.info))


# ---------------------------------------------------------------------------------------------- real MNIST
@pytest.mark.mnist
@pytest.mark.slow
def test_pretraining_beats_random_initialisation_at_100_labels():
    # one thread, as the command line uses: on a busy two-core machine two threads make small batches crawl
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        data = load(DataConfig())
        cfg = replace(PretrainConfig(), ae_epochs=3, steps=300)
        ae, _ = pretrain.pretrain(data, cfg, cache=None)
        [row] = pretrain.table(data, ae, cfg, labels=(100,), seeds=1)
    finally:
        torch.set_num_threads(threads)
    # measured: 81.9 % against 74.2 % after 3 of the 20 epochs; the full table is in the README
    assert row["pretrained_mean"] > row["random_mean"] + 0.05, row


# ---------------------------------------------------------------------------------------------- the page's run
def tiny_page_run(monkeypatch):
    """The page's run on a tiny network and a few steps: seconds on the tiny data set."""
    monkeypatch.setattr(pretrain, "PAGE", replace(SMALL, deform=0.0, head_steps=10, steps=30))
    monkeypatch.setattr(pretrain, "NETWORKS", {"784-32-8": (32, 8)})


def wait_for_table(at, timeout=120.0):
    """Rerun as the page's polling would until the visitor's table shows (the run has ended)."""
    deadline = time.monotonic() + timeout
    while True:
        at.run()
        assert not at.exception, at.exception
        if any("Your run" in m for m in texts(at.markdown)):
            return at
        errors = texts(at.error)
        assert not errors, errors
        assert time.monotonic() < deadline, [p.proto.text for p in at.get("progress")]
        time.sleep(0.3)


def test_the_page_runs_the_comparison_and_shows_its_table_beside_the_stored_one(tiny_idx, tmp_path, monkeypatch):
    monkeypatch.setattr(pretrain, "RESULTS", results_file(tmp_path / "results.json"))
    tiny_page_run(monkeypatch)
    at = goto(open_app(), PAGE)
    assert any("s here** (measured on a busy two-core CPU)" in c for c in texts(at.caption))
    assert any("No comparison yet" in i for i in texts(at.info))
    at.slider(key="pretrain.seeds").set_value(2)
    at.button(key="pretrain.btn_run").click().run()
    assert not at.exception and at.button(key="pretrain.btn_run").disabled
    assert not at.button(key="pretrain.btn_stop").disabled
    run_id = at.session_state["pretrain.run"]
    wait_for_table(at)
    frames = [d.value for d in at.dataframe if "labelled images (N)" in d.value]
    arms = next(d.value for d in at.dataframe if "arm" in d.value)               # the accuracies so far
    assert list(arms["arm"]) == ["pretrained", "random"] * 2 and list(arms["seed"]) == [1, 1, 2, 2]
    mine = next(f for f in frames if list(f["labelled images (N)"]) == ["100"] and list(f["seeds"]) == [2])
    assert mine["pretrained"][0].endswith(" %") and " ± " in mine["pretrained"][0]
    assert any(list(f["pretrained"]) == ["87.0 ± 2.0 %"] for f in frames)      # the stored row for N = 100
    assert any("your pretrained encoder reached" in m for m in texts(at.markdown))
    assert not at.button(key="pretrain.btn_run").disabled
    # a session that remembers the run (a reload: ui.session restores pretrain.run) shows the same table
    again = AppTest.from_file(str(APP), default_timeout=60)
    again.session_state["pretrain.run"] = run_id
    again.switch_page(PAGE).run()
    assert not again.exception and any("Your run" in m for m in texts(again.markdown))
    # the Train page is for trainings: the comparison's link there points to its page instead of showing it as one
    train = AppTest.from_file(str(APP), default_timeout=60)
    train.query_params["run"] = run_id
    train.switch_page("app_pages/train.py").run()
    assert not train.exception and not train.error
    assert any("a lab's experiment rather than a training: the Few labels page shows it" in i
               for i in texts(train.info))
    assert any("No run yet in this session" in i for i in texts(train.info))
    assert "run" not in train.query_params and session.RUN_ID not in train.session_state
    # and its list of the visitor's runs holds their trainings only: with one training beside the comparison,
    # there is no list of two
    goto(at, "app_pages/train.py")
    custom_form(at, hidden=8, epochs=1, batch=60)
    at.button(key="train.btn_start").click().run()
    wait_for_end(at)
    assert len(server.run_registry().runs_of(at.session_state[visitor.KEY])) == 2
    assert not [e for e in at.get("expander") if "Your runs" in e.proto.label]


def test_the_page_stops_a_comparison(tiny_idx, tmp_path, monkeypatch):
    monkeypatch.setattr(pretrain, "RESULTS", results_file(tmp_path / "results.json"))
    tiny_page_run(monkeypatch)
    monkeypatch.setattr(pretrain, "PAGE", replace(SMALL, deform=0.0, steps=100_000))
    at = goto(open_app(), PAGE)
    at.button(key="pretrain.btn_run").click().run()
    at.button(key="pretrain.btn_stop").click().run()
    deadline = time.monotonic() + 60
    while not any("Stopped" in w for w in texts(at.warning)):
        assert time.monotonic() < deadline and not at.exception
        time.sleep(0.3)
        at.run()
    assert not at.button(key="pretrain.btn_run").disabled and not any("Your run" in m for m in texts(at.markdown))
