"""Studies (aecore.labs.studies and the Studies page): the definitions, PCA against an SVD oracle, the results a
study draws from its runs, the command line, and the page starting, stopping and reattaching a study."""
from __future__ import annotations

import json
import time
from dataclasses import replace

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from aecore.engine import presets
from aecore.labs import studies
from aecore.engine.data import to_float
from aecore.engine.models import count_params
from aecore.runs import RegistryConfig, RunRegistry
from aecore.engine.viz import scale_each

from app_helpers import APP, WAIT, goto, open_app, texts
from idx_helpers import tiny_data

# Fixtures (conftest.py): app_environment for every test here, as every AppTest needs it.
pytestmark = pytest.mark.usefixtures("app_environment")


# ------------------------------------------------------------------------------------------- definitions
def test_the_chainer_study_is_the_seven_presets_with_fewer_epochs():
    study = studies.get("chainer")
    assert study.run_names == tuple(f"chainer-case{i}" for i in range(1, 8))
    for spec in study.specs:
        p = presets.get(spec.name)
        assert spec.model == p.model and spec.data == p.data
        assert spec.train == replace(p.train, epochs=3) and p.train.epochs == 20
        assert spec.preset is None          # not the preset's 20-epoch figure: the Train page must not compare
    assert [s.train.noise_level for s in study.specs] == [0, 0, 0, 0, 0, 0.2, 0.2]   # cases 6 and 7: masking
    assert {s.train.noise for s in study.specs[5:]} == {"mask"}
    assert study.epochs_note == "shortened to 3 epochs per run from the tutorial's 20"
    assert studies.get("chainer", epochs=1).specs[0].train.epochs == 1


def test_the_code_size_study_trains_784_k_784_at_five_sizes():
    study = studies.get("code-size")
    assert study.run_names == ("code-2", "code-8", "code-32", "code-128", "code-512")
    models = [s.model for s in study.specs]
    assert [m.hidden for m in models] == [(2,), (8,), (32,), (128,), (512,)]
    assert {(m.family, m.activation, m.output, m.loss) for m in models} == {("shallow", "relu", "sigmoid", "bce")}
    assert {s.data.val_fraction for s in study.specs} == {0.0}       # the whole training set, as PCA
    assert study.epochs_note == "shortened to 5 epochs per run from the tutorial's 20"
    from aecore.engine.models import build
    assert count_params(build(models[2], seed=0)) == 25_120 + 25_872    # the Keras tutorial's 784-32-784


def test_unknown_study_and_identify():
    with pytest.raises(ValueError, match="unknown study 'gamma'; choose one of: chainer, code-size, beta"):
        studies.get("gamma")

    class V:
        def __init__(self, name):
            self.spec = replace(studies.get("chainer").specs[0], name=name)

    assert studies.identify([V("chainer-case1"), V("chainer-case7")]) == "chainer"
    assert studies.identify([V("code-512")]) == "code-size"
    assert studies.identify([V("beta-0.5"), V("beta-4")]) == "beta"
    assert studies.identify([V("custom")]) is None and studies.identify([]) is None


def test_the_beta_study_is_keras_vae_2d_at_four_betas():
    study = studies.get("beta")
    vae = presets.get("keras-vae-2d")
    assert study.run_names == ("beta-0.5", "beta-1", "beta-2", "beta-4")
    assert [s.model.beta for s in study.specs] == [0.5, 1.0, 2.0, 4.0]
    assert {replace(s.model, beta=1.0) for s in study.specs} == {vae.model}      # only beta differs
    assert {s.train for s in study.specs} == {replace(vae.train, epochs=10)}
    assert study.epochs_note == "shortened to 10 epochs per run from the tutorial's 50"
    assert study.minutes == studies.MINUTES["beta"] and studies.beta(epochs=3).minutes is None


# ------------------------------------------------------------------------------------------- PCA
def svd_oracle(train: np.ndarray, test: np.ndarray, sizes) -> list[float]:
    """PCA by the book: SVD of the centred training matrix, the test set reconstructed from k components."""
    x = train.reshape(len(train), -1)
    mean = x.mean(0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    t = test.reshape(len(test), -1) - mean
    return [float(((t - t @ vt[:k].T @ vt[:k]) ** 2).mean()) for k in sizes]


def test_pca_errors_match_an_svd_oracle():
    rng = np.random.default_rng(0)
    train, test = rng.random((150, 28, 28)), rng.random((40, 28, 28))
    sizes = [1, 5, 20, 60, 120]                                     # below the rank (149): one answer each
    got = studies.pca_errors(train, test, sizes, chunk=64)          # several chunks on both sides
    np.testing.assert_allclose(got, svd_oracle(train, test, sizes), rtol=0, atol=1e-6)
    assert got.dtype == np.float64 and np.all(np.diff(got) < 0)    # more components, less error
    assert studies.pca_errors(train, test, [784])[0] < 1e-12        # every component: exact reconstruction
    # uint8 images are scaled to [0, 1] first: the same numbers as the floats they stand for.
    small = (rng.random((60, 28, 28)) * 255).astype(np.uint8)
    np.testing.assert_allclose(studies.pca_errors(torch.from_numpy(small[:50]), small[50:], [3, 30]),
                               svd_oracle(small[:50] / 255.0, small[50:] / 255.0, [3, 30]), atol=1e-9)


@pytest.mark.parametrize("sizes, message", [([0], "from 1 to 784"), ([785], "from 1 to 784"), ([], "from 1 to 784")])
def test_pca_sizes_are_checked(sizes, message):
    with pytest.raises(ValueError, match=message):
        studies.pca_errors(np.zeros((5, 28, 28)), np.zeros((2, 28, 28)), sizes)


# ------------------------------------------------------------------------------------------- results from runs
def run_series(specs, data) -> list:
    reg = RunRegistry(RegistryConfig(max_runs=2, backend="threads"), sweep_every=None)
    try:
        series = reg.submit_series(specs, data, "tester")
        deadline = time.monotonic() + WAIT
        while any(v.active for v in reg.series(series)):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        return reg.series(series)
    finally:
        reg.shutdown(wait=WAIT)


def test_chainer_results_are_tiles_and_test_mse():
    data = tiny_data(n_train=200, n_test=50)
    study = studies.chainer(epochs=1)
    views = run_series(study.specs[5:], data)                     # cases 6 and 7: 1000 and 100 hidden units
    cases = studies.chainer_results(views, tiles=36)
    assert [c.name for c in cases] == ["chainer-case6", "chainer-case7"]
    assert cases[1].title == "Chainer case 7: Sigmoid 100 + 20% masking noise"
    x = to_float(data.test.images)
    for case, view in zip(cases, views):
        assert case.state == "finished"
        assert case.encoder.shape == case.decoder.shape == (36, 28, 28)
        first = view.model.encoder[0].weight.detach()              # (h, 784)
        last = view.model.decoder[0].weight.detach()               # (784, h)
        np.testing.assert_allclose(case.encoder, scale_each(first[:36].reshape(36, 28, 28)).numpy())
        np.testing.assert_allclose(case.decoder, scale_each(last.t()[:36].reshape(36, 28, 28)).numpy())
        with torch.no_grad():                                       # the test MSE is the plain MSE in eval mode
            mse = ((view.model.eval()(x).x_hat - x) ** 2).mean().item()
        assert case.test_mse == pytest.approx(mse, rel=1e-5)


def test_code_size_results_and_figure():
    data = tiny_data(n_train=200, n_test=50)
    views = run_series(studies.code_size(epochs=2, sizes=(2, 32)).specs, data)
    points = studies.code_size_results(views, lambda v: studies.ae_test_mse(v.model, data.test.images))
    assert [(p.size, p.state) for p in points] == [(2, "finished"), (32, "finished")]
    x = to_float(data.test.images)
    for p, v in zip(points, views):
        with torch.no_grad():
            want = ((v.model.eval()(x).x_hat - x) ** 2).mean().item()   # MSE per pixel, pixels in [0, 1]
        assert p.test_mse == pytest.approx(want, rel=1e-5)
        assert v.snapshot.result["figures"]["test_loss"] != pytest.approx(p.test_mse, rel=1e-2)   # that is BCE
    pca = studies.pca_errors(data.train.images, data.test.images, [2, 32])
    fig = studies.code_size_figure(points, [2, 32], pca, epochs=2)
    assert [t.name for t in fig.data] == ["autoencoder 784-k-784 (2 epochs)", "PCA, k components"]
    assert list(fig.data[0].x) == [2, 32] and list(fig.data[0].y) == [p.test_mse for p in points]
    assert list(fig.data[1].y) == pytest.approx(list(pca))
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.type == "log"
    # A run that has not finished has no point yet.
    waiting = [replace(points[0], test_mse=None), points[1]]
    assert list(studies.code_size_figure(waiting, [2, 32], pca, 2).data[0].x) == [32]


def test_command_line_runs_a_study(mnist_dir, monkeypatch, capsys):
    monkeypatch.setenv("AELAB_RUN_BACKEND", "threads")
    assert studies.main(["code-size", "--epochs", "1", "--data-dir", str(mnist_dir)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["study"] == "code-size" and out["note"] == "shortened to 1 epochs per run from the tutorial's 20"
    assert [r["state"] for r in out["runs"]] == ["finished"] * 5
    assert [row["k"] for row in out["test_mse"]] == [2, 8, 32, 128, 512]
    assert all(0 < row["autoencoder"] < 1 and 0 <= row["pca"] < 1 for row in out["test_mse"])
    pca = [row["pca"] for row in out["test_mse"]]
    assert pca == sorted(pca, reverse=True)           # more components never reconstruct worse


def test_command_line_without_data(tmp_path, capsys):
    assert studies.main(["chainer", "--data-dir", str(tmp_path)]) == 1
    assert "mnist train data not found" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------- the page
class OneDigit(torch.nn.Module):
    """A stand-in judge that reads every picture as a sure 3."""
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return torch.nn.functional.one_hot(torch.full((len(x),), 3), 10).float() * 50 + self.w


def test_beta_results_measure_the_test_terms_and_judged_samples():
    from aecore.engine.train import evaluate_terms
    data = tiny_data(n_train=200, n_test=50)
    views = run_series(studies.beta(epochs=1, betas=(0.5, 4.0)).specs, data)
    points = studies.beta_results(views, lambda v: studies.beta_measure(v.model, data.test.images, OneDigit(),
                                                                        samples=64))
    assert [(p.beta, p.state) for p in points] == [(0.5, "finished"), (4.0, "finished")]
    x = to_float(data.test.images)
    for p, v in zip(points, views):
        f = p.figures
        with torch.no_grad():
            out = v.model.eval()(x)
            recon = torch.nn.functional.binary_cross_entropy_with_logits(out.raw, x, reduction="sum") / len(x)
        assert f["reconstruction"] == pytest.approx(recon.item(), rel=1e-5)
        assert f["KL"] > 0
        terms = evaluate_terms(v.model, data.test.images)
        assert terms["loss"] == pytest.approx(terms["reconstruction"] + p.beta * terms["KL"], rel=1e-6)
        assert terms["loss"] == pytest.approx(v.snapshot.result["figures"]["test_loss"], rel=1e-6)
        # every sample a sure 3: all confident, inception score 1, every other digit forgotten
        assert f["samples"] == 64 and f["confident_share"] == 1.0
        assert f["inception_score"] == pytest.approx(1.0)
        assert f["rare_digits"] == [0, 1, 2, 4, 5, 6, 7, 8, 9]
    fig = studies.beta_figure(points, epochs=1)
    assert [t.name for t in fig.data] == ["reconstruction", "KL", "samples with p ≥ 0.9 (%)"]
    assert list(fig.data[0].x) == [0.5, 4.0] and list(fig.data[2].y) == [100.0, 100.0]
    assert list(fig.data[1].y) == [p.figures["KL"] for p in points]
    # A run that has not finished has no point yet.
    assert list(studies.beta_figure([replace(points[0], figures=None), points[1]], 1).data[0].x) == [4.0]


def test_a_plain_autoencoders_test_terms_are_its_loss():
    from aecore.engine.models import ModelConfig, build
    from aecore.engine.train import evaluate, evaluate_terms
    data = tiny_data(n_train=20, n_test=30)
    sparse = build(ModelConfig(family="shallow", hidden=(16,), sparsity=0.1), seed=0)
    terms = evaluate_terms(sparse, data.test.images, batch_size=7)
    assert set(terms) == {"reconstruction", "code L1", "loss"}
    assert terms["loss"] == pytest.approx(terms["reconstruction"] + 0.1 * terms["code L1"], rel=1e-6)
    assert terms["loss"] == pytest.approx(evaluate(sparse, data.test.images), rel=1e-6)


def wait_until_ended(at: AppTest, runs: int, timeout: float = WAIT) -> None:
    """Rerun as the page's polling would until every run of the study has ended and Start is enabled again."""
    deadline = time.monotonic() + timeout
    while True:
        at.run()
        assert not at.exception, at.exception
        if f"{runs} of {runs} runs ended" in " ".join(texts(at.markdown)) and \
                not at.button(key="studies.btn_start").disabled:
            return
        assert time.monotonic() < deadline, texts(at.markdown)
        time.sleep(0.3)


def open_link(series: str) -> AppTest:
    """A new session opening the Studies page's URL with ?study=<series> (a reload, or the link in another tab)."""
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.switch_page("app_pages/studies.py")
    at.query_params["study"] = series
    at.run()
    assert not at.exception, at.exception
    assert texts(at.title) == ["Studies"]
    return at


def chart_traces(at: AppTest) -> list[dict]:
    charts = at.get("plotly_chart")
    assert len(charts) == 1
    return json.loads(charts[0].proto.spec)["data"]


def test_the_code_size_study_from_the_page_and_after_a_reload(tiny_idx, started_jobs):
    at = goto(open_app(), "app_pages/studies.py")
    at.radio(key="studies.pick").set_value("code-size").run()
    assert any("shortened to 5 epochs per run from the tutorial's 20" in t and
               f"the whole study took {studies.MINUTES['code-size']:g} min" in t for t in texts(at.caption))
    at.button(key="studies.btn_start").click().run()
    assert not at.exception and not at.error
    series = at.query_params["study"]
    assert at.button(key="studies.btn_start").disabled and not at.button(key="studies.btn_stop").disabled
    wait_until_ended(at, 5)
    assert [j.spec.name for j in started_jobs] == ["code-2", "code-8", "code-32", "code-128", "code-512"]
    assert {j.train_size for j in started_jobs} == {120}
    traces = chart_traces(at)
    assert [len(t["x"]) for t in traces] == [5, 5] and [len(t["y"]) for t in traces] == [5, 5]
    # The log axis of the errors is labelled in full numbers (not Plotly's "0.1, 5, 3, 2" minor digits), and
    # Plotly's buttons are not drawn over the chart.
    chart = at.get("plotly_chart")[0].proto
    y = json.loads(chart.spec)["layout"]["yaxis"]
    assert y["type"] == "log" and len(y["tickvals"]) >= 2
    assert [float(t) for t in y["ticktext"]] == pytest.approx(y["tickvals"])
    assert json.loads(chart.config) == {"displayModeBar": False}
    assert traces[0]["x"] == traces[1]["x"] == [2, 8, 32, 128, 512]
    table = at.dataframe[1].value
    assert list(table["code size k"]) == [2, 8, 32, 128, 512]
    assert list(table["autoencoder test MSE"]) == pytest.approx(traces[0]["y"])
    assert list(table["PCA test MSE"]) == pytest.approx(traces[1]["y"])
    assert list(at.dataframe[0].value["state"]) == ["finished"] * 5

    # A reload opens the same URL in a new session: the same finished study, its results drawn again.
    reloaded = open_link(series)
    assert reloaded.query_params["study"] == series
    assert reloaded.radio(key="studies.pick").value == "code-size"
    assert "5 of 5 runs ended" in " ".join(texts(reloaded.markdown))
    assert chart_traces(reloaded) == traces
    assert not reloaded.button(key="studies.btn_start").disabled        # the study has ended
    assert len(started_jobs) == 5                                       # nothing trained again


def test_the_beta_study_in_one_click_from_the_generate_page(tiny_idx, started_jobs):
    at = goto(open_app(), "app_pages/generate.py")
    assert any("shortened to 10 epochs per run from the tutorial's 50" in t for t in texts(at.caption))
    at.button(key="generate.beta_start").click().run()
    assert not at.exception and not at.error
    assert texts(at.title) == ["Studies"]                  # the Studies page follows the study
    series = at.query_params["study"]
    assert at.radio(key="studies.pick").value == "beta"
    at = open_link(series)        # AppTest reruns the page it was opened on: follow the study at its link
    assert at.radio(key="studies.pick").value == "beta"
    wait_until_ended(at, 4)
    assert [j.spec.name for j in started_jobs] == ["beta-0.5", "beta-1", "beta-2", "beta-4"]
    assert [j.spec.model.beta for j in started_jobs] == [0.5, 1.0, 2.0, 4.0]
    traces = chart_traces(at)
    assert [t["name"] for t in traces] == ["reconstruction", "KL", "samples with p ≥ 0.9 (%)"]
    assert [t["x"] for t in traces] == [[0.5, 1.0, 2.0, 4.0]] * 3
    table = at.dataframe[1].value
    assert list(table["β"]) == [0.5, 1.0, 2.0, 4.0]
    assert list(table["reconstruction (nats)"]) == pytest.approx(traces[0]["y"])
    assert list(100 * table["samples the judge is sure of"]) == pytest.approx(traces[2]["y"])


def test_stopping_a_study_stops_its_waiting_runs_and_it_blocks_other_runs(tiny_idx, started_jobs, monkeypatch):
    monkeypatch.setattr(studies, "CHAINER_EPOCHS", 1000)               # far longer than the test waits
    at = goto(open_app(), "app_pages/studies.py")
    assert at.radio(key="studies.pick").value == "chainer"
    at.button(key="studies.btn_start").click().run()
    assert not at.exception and not at.error
    deadline = time.monotonic() + WAIT
    while not started_jobs or not started_jobs[0].snapshot().records:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    states = list(at.run().dataframe[0].value["state"])
    assert states[0].startswith("running · epoch ")
    assert states[1].startswith("waits for 1 run of this study") and states[6].startswith("waits for 6 runs")
    # The visitor's one piece of work: the Train page refuses another run while the study goes on.
    goto(at, "app_pages/train.py")
    at.button(key="train.btn_start").click().run()
    refusals = [t for t in texts(at.error) if "Not started" in t]
    assert len(refusals) == 1 and "series of 7 runs in progress (0 ended, next: chainer-case1)" in refusals[0]
    goto(at, "app_pages/studies.py")
    at.button(key="studies.btn_stop").click().run()
    assert started_jobs[0].join(WAIT)
    wait_until_ended(at, 7)
    states = list(at.dataframe[0].value["state"])
    assert states[0] == "stopped" and states[1:] == ["stopped: its series was stopped at chainer-case1"] * 6
    assert len(started_jobs) == 1                                       # the waiting runs never started


def test_the_chainer_study_draws_the_tutorials_grid(tiny_idx, started_jobs, monkeypatch):
    monkeypatch.setattr(studies, "CHAINER_EPOCHS", 1)
    at = goto(open_app(), "app_pages/studies.py")
    assert any("shortened to 1 epochs per run" in t for t in texts(at.caption))
    at.button(key="studies.btn_start").click().run()
    wait_until_ended(at, 7)
    assert "The tutorial's comparison" in texts(at.header)
    losses = [j.snapshot().result["figures"]["test_loss"] for j in started_jobs]
    assert len(losses) == 7
    assert [(m.label, m.value) for m in at.metric] == [("test MSE", f"{x:.4f}") for x in losses]
    titles = [t for t in texts(at.markdown) if t.startswith("**Chainer case ")]
    assert titles == [f"**{presets.get(f'chainer-case{i}').title}**" for i in range(1, 8)]
    captions = [img.proto.imgs[0].caption for img in at.get("image")]
    assert captions == ["first layer", "last layer, transposed"] * 7


def test_start_without_data_explains(no_data, started_jobs):
    at = goto(open_app(), "app_pages/studies.py")
    assert any("No study yet" in t for t in texts(at.info))
    at.button(key="studies.btn_start").click().run()
    assert not at.exception
    boxes = [t for t in texts(at.error) if "Data not available" in t]
    assert len(boxes) == 1 and "AECORE_DATA_DIR" in boxes[0]
    assert started_jobs == [] and "study" not in at.query_params


def test_an_unknown_study_link_is_explained(tiny_idx):
    at = open_link("not-a-study")
    assert any("The study in this link is not on the server" in t for t in texts(at.warning))
    assert "study" not in at.query_params
