"""The CPU requirements file stays in step with requirements.txt: same pins, CPU torch, no torchvision."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def pins(name: str) -> dict[str, str]:
    """{package: version} of the `name==version` lines of a requirements file (comments and options skipped)."""
    lines = (ROOT / name).read_text().splitlines()
    found = (re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+)", line.split("#")[0].strip()) for line in lines)
    return {m[1].lower(): m[2] for m in found if m}


def test_cpu_requirements_match_the_main_ones():
    main, cpu = pins("requirements.txt"), pins("requirements-cpu.txt")
    assert "torchvision" not in cpu                           # it cannot import beside a +cpu torch from PyPI
    assert cpu.pop("torch").endswith("+cpu")
    assert cpu == {k: v for k, v in main.items() if k not in ("torch", "torchvision")}


def test_cpu_requirements_name_pytorchs_cpu_index():
    text = (ROOT / "requirements-cpu.txt").read_text()
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in text
    assert "-r requirements.txt" not in text                  # complete on its own: no CUDA torch pulled in
