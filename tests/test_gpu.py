"""The CUDA path, on a machine with an NVIDIA GPU (marker `gpu`; skipped without CUDA).

Imports aecore only (a GPU machine may lack streamlit, plotly and ray): `fit` on CUDA for every family, a
checkpoint trained on CUDA read back on the CPU, and the registry's processes backend on CUDA (spawned workers,
no CUDA context in the server process; pause, resume and stop). Run there with `python -m pytest -m gpu
tests/test_gpu.py`; `../shared/gpu-check.sh` adds the benchmarks.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from aecore.engine import checkpoint
from aecore.engine.data import Data, DataConfig, Split
from aecore.engine.models import ModelConfig, build, inference
from aecore.engine.train import RunSpec, TrainConfig, fit

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

REPO = Path(__file__).resolve().parents[1]
FAMILIES = {
    "shallow": ModelConfig(hidden=(32,)),
    "deep": ModelConfig(family="deep", hidden=(64, 16)),
    "conv": ModelConfig(family="conv", channels=(8, 4)),
    "vae": ModelConfig(family="vae", hidden=(64,), latent=2),
    "conv-vae": ModelConfig(family="conv-vae", channels=(8, 16), hidden=(16,), latent=2),
}


def blobs(n: int, seed: int = 0) -> Split:
    """n images of one bright square each (a learnable set that needs no files), uint8 (n, 28, 28)."""
    g = torch.Generator().manual_seed(seed)
    images = torch.zeros(n, 28, 28, dtype=torch.uint8)
    corners = torch.randint(2, 18, (n, 2), generator=g)
    for i, (r, c) in enumerate(corners.tolist()):
        images[i, r:r + 8, c:c + 8] = 255
    return Split(images, torch.randint(0, 10, (n,), generator=g))


@pytest.mark.parametrize("family", list(FAMILIES))
def test_fit_trains_every_family_on_cuda(family):
    model = build(FAMILIES[family], seed=0)
    data = Data(blobs(1024), None, blobs(256, seed=1))
    cfg = TrainConfig(epochs=3, batch_size=64, lr=3e-3, device="cuda", log_every=4)
    records = list(fit(model, data, cfg))
    ends = [m for m in records if m.epoch_end]
    assert len(ends) == 3
    assert all(p.device.type == "cuda" for p in model.parameters())
    assert all(torch.isfinite(torch.tensor(m.train_loss)) for m in records)
    assert ends[-1].epoch_loss < ends[0].epoch_loss, [m.epoch_loss for m in ends]


def test_a_checkpoint_trained_on_cuda_loads_on_the_cpu(tmp_path):
    model = build(FAMILIES["conv-vae"], seed=0)
    data = Data(blobs(512), None, blobs(128, seed=1))
    cfg = TrainConfig(epochs=1, batch_size=64, device="cuda")
    list(fit(model, data, cfg))
    spec = RunSpec(name="gpu", model=model.config, data=DataConfig(), train=cfg)
    path = checkpoint.save(tmp_path / "gpu.safetensors", model, spec.meta("cuda"))
    loaded, meta = checkpoint.load(path)
    assert all(p.device.type == "cpu" for p in loaded.parameters())
    assert meta["device"] == "cuda" and meta["train"].device == "cuda"
    x = blobs(16, seed=2).images.float().div(255).unsqueeze(1)
    with inference(model), inference(loaded):
        on_gpu = model(x.cuda()).x_hat.cpu()
        on_cpu = loaded(x).x_hat
    torch.testing.assert_close(on_cpu, on_gpu, atol=1e-4, rtol=1e-4)


REGISTRY_SCRIPT = textwrap.dedent("""
    import json, sys, time, torch
    from dataclasses import replace
    from aecore.engine.data import Data, DataConfig, Split
    from aecore.engine.models import ModelConfig
    from aecore.engine.train import RunSpec, TrainConfig
    from aecore.runs import RegistryConfig, RunRegistry

    def blobs(n, seed):
        g = torch.Generator().manual_seed(seed)
        images = torch.zeros(n, 28, 28, dtype=torch.uint8)
        for i, (r, c) in enumerate(torch.randint(2, 18, (n, 2), generator=g).tolist()):
            images[i, r:r + 8, c:c + 8] = 255
        return Split(images, torch.randint(0, 10, (n,), generator=g))

    def wait(registry, run_id, done, what, timeout=120):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            view = registry.view(run_id)
            if done(view):
                return view
            time.sleep(0.02)
        raise TimeoutError(what)

    out = {"cuda_in_parent_before": torch.cuda.is_initialized()}
    data = Data(blobs(4096, 0), None, blobs(512, 1))
    spec = RunSpec(name="gpu-run", model=ModelConfig(hidden=(64,)), data=DataConfig(),
                   train=TrainConfig(epochs=2, batch_size=64, device="cuda", log_every=8))
    registry = RunRegistry(RegistryConfig(backend="processes", grace_s=600))
    try:
        run = registry.submit(spec, data, "gpu-test")
        view = wait(registry, run, lambda v: v.state in ("finished", "failed", "stopped"), "first run")
        out.update(first_state=view.state, first_error=view.snapshot.error, first_device=view.snapshot.device,
                   first_epochs=sum(m.epoch_end for m in view.snapshot.records))
        long = replace(spec, name="gpu-long", train=replace(spec.train, epochs=200))
        run = registry.submit(long, data, "gpu-test-2")
        wait(registry, run, lambda v: v.snapshot.records, "first metric of the long run")
        registry.pause(run)
        wait(registry, run, lambda v: v.state == "paused", "pause")
        time.sleep(0.3)
        held = registry.view(run).snapshot.last.step
        time.sleep(0.7)
        out["steps_while_paused"] = registry.view(run).snapshot.last.step - held
        registry.resume(run)
        wait(registry, run, lambda v: v.snapshot.last.step > held + 8, "resume")
        registry.stop(run)
        view = wait(registry, run, lambda v: v.state in ("finished", "failed", "stopped"), "stop")
        out.update(long_state=view.state, long_epochs_done=view.snapshot.last.epoch)
    finally:
        registry.shutdown(wait=30)
    out["cuda_in_parent_after"] = torch.cuda.is_initialized()
    print(json.dumps(out))
""")


def test_the_processes_backend_trains_pauses_and_stops_on_cuda():
    """In a fresh interpreter, as a server runs it: the worker process holds CUDA, the server never does."""
    proc = subprocess.run([sys.executable, "-c", REGISTRY_SCRIPT], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["first_state"] == "finished", out
    assert out["first_device"].startswith("cuda") and out["first_epochs"] == 2, out
    assert out["steps_while_paused"] == 0, out
    assert out["long_state"] == "stopped" and out["long_epochs_done"] < 200, out
    assert not out["cuda_in_parent_before"] and not out["cuda_in_parent_after"], out
