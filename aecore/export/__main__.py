"""`python -m aecore.export code|notebook|onnx|html CHECKPOINT -o OUT`, and `presets -o DIR` for the tutorials' scripts.

A checkpoint that cannot be read (not a file, not safetensors, not AE Lab's, an unknown family), or a model a form
cannot hold, is one line on stderr and exit status 2, as every AE Lab command's bad option.
"""
from __future__ import annotations

import sys
from pathlib import Path

from aecore.argv import OneLineParser
from aecore.engine import checkpoint
from aecore.export.code import notebook, script, spec_from_meta
from aecore.export.layers import ExportError

KINDS = ("code", "notebook", "onnx", "html")
PARTS = ("all", "encoder", "decoder")


def parser() -> OneLineParser:
    p = OneLineParser(prog="python -m aecore.export",
                      description="Take a run home: its code, its model as ONNX, its model as one offline page.")
    p.add_argument("kind", choices=KINDS + ("presets",),
                   help="code (a .py that trains it), notebook (.ipynb), onnx, html (one offline page), or presets "
                        "(every tutorial preset's script and their index, into a folder)")
    p.add_argument("checkpoint", nargs="?", help="an AE Lab checkpoint (.safetensors); not for presets")
    p.add_argument("-o", "--out", required=True, help="the file to write (a folder for presets)")
    p.add_argument("--part", choices=PARTS, default="all",
                   help="onnx only: the whole autoencoder (pictures to pictures), its encoder or its decoder")
    return p


def write(kind: str, source, part: str = "all") -> bytes:
    """The export of `kind` for a checkpoint (a path or bytes), as bytes; CheckpointError or ExportError."""
    model, meta = checkpoint.load(source)
    spec = spec_from_meta(meta)
    if kind == "code":
        return script(spec).encode()
    if kind == "notebook":
        return notebook(spec).encode()
    if kind == "onnx":
        from aecore.export.toonnx import onnx_bytes
        return onnx_bytes(model, part)
    from aecore.export.page import html_page
    return html_page(model, spec.name).encode()


def main(argv=None) -> int:
    p = parser()
    args = p.parse_args(argv)
    out = Path(args.out)
    if args.kind == "presets":
        if args.checkpoint:
            p.error("presets takes no checkpoint: it writes every tutorial preset's script")
        from aecore.export.tutorials import write_presets
        for path in write_presets(out):
            print(path)
        return 0
    if not args.checkpoint:
        p.error(f"{args.kind} needs a CHECKPOINT (an AE Lab .safetensors file)")
    if args.part != "all" and args.kind != "onnx":
        p.error("--part is for onnx only")
    try:
        blob = write(args.kind, args.checkpoint, args.part)
    except (checkpoint.CheckpointError, ExportError) as e:
        p.error(str(e).replace("\n", " "))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(blob)
    print(f"{out} ({len(blob):,} bytes)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
