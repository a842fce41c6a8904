"""Take a run home: its code as a standalone script or notebook, its model as ONNX, its model as one offline page.

- `script(spec)`, `notebook(spec)` (code): a run's settings as a training script that needs only torch and numpy
  and trains as AE Lab did, step for step; `spec_from_meta(meta)` reads the run back from a checkpoint's record.
- `onnx_bytes(model, part)` (toonnx): the model, its encoder or its decoder as an ONNX graph (onnx is imported
  only then).
- `html_page(model, name)` (page): one self-contained HTML file with the model inside and a forward pass of its
  own in JavaScript (every family), a drawing canvas, its reconstruction and error map, and for a 2-D code the
  latent plane.
- `tutorials.files()`, `tutorials.write_presets(folder)`: each tutorial preset's script, and the index that sets
  it beside its tutorial's figure (docs/takehome/); `tutorials.measure` trains a preset both ways, AE Lab's and
  its script's (`python -m aecore.export.tutorials --data-dir DIR`, the README's table).

`python -m aecore.export code|notebook|onnx|html CHECKPOINT -o OUT`, `python -m aecore.export presets -o DIR`.
"""
from aecore.export.code import changes_of, notebook, script, sections, spec_from_meta
from aecore.export.layers import ExportError
from aecore.export.page import html_page
from aecore.export.toonnx import onnx_bytes

__all__ = ["ExportError", "changes_of", "html_page", "notebook", "onnx_bytes", "script", "sections",
           "spec_from_meta"]
