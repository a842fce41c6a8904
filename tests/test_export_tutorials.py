"""docs/takehome/: the tutorial presets' scripts and their index are what the exporter writes now."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from aecore.engine.presets import PRESETS
from aecore.export.tutorials import files, main
from idx_helpers import write_idx_folder

FOLDER = Path(__file__).resolve().parents[1] / "docs" / "takehome"


def test_the_committed_folder_is_what_the_exporter_writes():
    want = files()
    assert sorted(p.name for p in FOLDER.iterdir()) == sorted(want)
    for name, text in want.items():
        assert (FOLDER / name).read_text(encoding="utf-8") == text, (
            f"docs/takehome/{name} is stale: python -m aecore.export presets -o docs/takehome")


def test_every_preset_has_a_script_and_a_row_with_its_figure():
    index = files()["README.md"]
    for p in PRESETS.values():
        ast.parse(files()[f"{p.name}.py"])
        row = next(line for line in index.splitlines() if line.startswith(f"| [{p.name}]"))
        assert (f"{p.figure:g}" if p.figure is not None else "a picture") in row


@pytest.mark.slow
def test_the_measuring_command_prints_ae_lab_beside_the_script(tmp_path, capsys):
    folder = write_idx_folder(tmp_path / "idx", n_train=120, n_test=40)
    assert main(["--data-dir", str(folder), "keras-784-32"]) == 0
    row = capsys.readouterr().out.strip().splitlines()[-1].split("|")
    assert row[1].strip() == "keras-784-32"
    ours_train, script_train, ours_test, script_test = (float(v) for v in row[2:6])
    assert script_train == pytest.approx(ours_train, rel=1e-3) and script_test == pytest.approx(ours_test, rel=1e-3)
