"""The offline page: self-contained (no request of any kind), and its JavaScript forward pass equals torch's.

The browser tests open each family's page from file:// in Chromium with every request recorded and every
non-file request aborted, then compare `window.aelab.reconstruct`, `encode` and `decode` with torch to 1e-4.
"""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from aecore.engine.models import ModelConfig, build
from aecore.export.__main__ import main
from aecore.export.page import html_page
from browser_support import CHROMIUM_ARGS, chromium_path

MODELS = {
    "shallow": ModelConfig(family="shallow", hidden=(32,)),
    "deep": ModelConfig(family="deep", hidden=(48, 16, 2), activation="tanh", loss="mse", output="identity",
                        dropout=0.2, batch_norm=True),
    "conv": ModelConfig(family="conv", channels=(4, 2), loss="mse", batch_norm=True),
    "vae": ModelConfig(family="vae", hidden=(32, 16), latent=2, activation="tanh"),
    "conv-vae": ModelConfig(family="conv-vae", channels=(4, 8), hidden=(8,), latent=2),
    "rgb-conv": ModelConfig(family="conv", channels=(6,), side=32, color="rgb", loss="mse"),
}


def model_of(name: str):
    model = build(MODELS[name], seed=3)
    for m in model.modules():       # batch-norm statistics other than the defaults, so that eval mode matters
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def test_the_page_names_nothing_outside_itself():
    page = html_page(model_of("vae"), "vae")
    assert not re.search(r"https?://|\bsrc=|\bhref=|@import|url\(", page)
    assert "default-src 'none'" in page                  # the browser itself refuses any request
    assert "window.aelab" in page


def test_the_cli_writes_the_page_and_says_its_size(tmp_path, capsys):
    from aecore.engine import checkpoint
    from aecore.engine.train import RunSpec, TrainConfig
    from aecore.engine.data import DataConfig
    spec = RunSpec("tiny", MODELS["shallow"], DataConfig(), TrainConfig())
    ckpt = checkpoint.save(tmp_path / "tiny.safetensors", build(spec.model, seed=0), spec.meta("cpu"))
    assert main(["html", str(ckpt), "-o", str(tmp_path / "page.html")]) == 0
    size = (tmp_path / "page.html").stat().st_size
    assert f"({size:,} bytes)" in capsys.readouterr().err


@pytest.fixture(scope="module")
def chromium_page():
    path = chromium_path()
    if path is None:
        pytest.skip("chromium not installed (/usr/bin/chromium or `chromium` on PATH)")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.mark.browser
@pytest.mark.parametrize("name", list(MODELS))
def test_reconstruct_in_chromium_equals_torch_without_a_request(name, chromium_page, tmp_path):
    model = model_of(name)
    cfg = model.config
    path = tmp_path / f"{name}.html"
    path.write_text(html_page(model, name))
    context = chromium_page.new_context()
    requests, errors = [], []
    context.route(re.compile(r"^(?!file:).*"), lambda route: route.abort())   # and none gets out
    page = context.new_page()
    page.on("request", lambda r: requests.append(r.url))
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(path.as_uri())
        page.wait_for_function("window.aelab !== undefined")
        x = torch.rand(3, *cfg.picture_shape, generator=torch.Generator().manual_seed(5))
        with torch.no_grad():
            z = model.encode(x)
            want = model.decode(z).clamp(0, 1)
        for i in range(len(x)):
            hwc = x[i].permute(1, 2, 0).reshape(-1).tolist()           # row by row, a pixel's channels together
            got = page.evaluate("p => window.aelab.reconstruct(p)", hwc)
            np.testing.assert_allclose(np.array(got), want[i].permute(1, 2, 0).reshape(-1).numpy(), atol=1e-4,
                                       rtol=0)
            code = page.evaluate("p => window.aelab.encode(p)", hwc)
            np.testing.assert_allclose(np.array(code), z[i].reshape(-1).numpy(), atol=1e-4, rtol=0)
        if cfg.code_shape == (2,):
            page.locator("#plane").hover()                               # the plane decodes under the pointer
            assert page.locator("#hovercap").inner_text().startswith("Decoded at (")
        page.locator("#draw").hover()
        page.mouse.down()
        page.mouse.move(600, 300)
        page.mouse.up()
        assert "mean squared error" in page.locator("#score").inner_text()
    finally:
        context.close()
    assert requests == [path.as_uri()] and not errors
