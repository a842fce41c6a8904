"""Command-line helpers every AE Lab command shares (a leaf: it imports nothing of AE Lab's)."""
from __future__ import annotations

import argparse
import sys


class OneLineParser(argparse.ArgumentParser):
    """Every AE Lab command line's parser: a bad option is one line, 'aecore.train: error: ...', and exit 2
    (argparse would print the whole usage too)."""

    def error(self, message):
        print(f"{self.prog.split()[-1]}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1, else one clear line."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def ints(text: str) -> tuple[int, ...]:
    """An argparse type: comma-separated whole numbers, e.g. 256,128,64,2."""
    try:
        return tuple(int(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
