"""Few-label classification: an autoencoder-pretrained encoder against the same network from random weights.

The experiment itself (the two arms, the labelled draw, fine-tuning, the table) is `aecore.labs.fewlabels`; this
module runs it from the command line, writes and checks its results file, and draws the figure the page shows.
Its names are importable from here too, as the page and the tests do (`pretrain.draw_labelled`, ...).

`comparison` is the same experiment at one N as a run of the run service (the page's "Run the comparison"):
`comparison_spec(ComparisonConfig(...))` is a `TaskSpec` the registry queues, caps, stops and keeps like any run;
it yields `Progress` records (which arm, which seed, which step, the accuracies so far) and returns the row.

    python -m aecore.labs.pretrain [--labels 100,300,1000,60000] [--seeds 5] [--data-dir D] [--out FILE.json]
                              [--encoder AE.safetensors] [--cache-dir D] [--no-cache] [--shift K] [--quick]
                              [--threads N] [--device D]

stdout: one JSON object per N; progress goes to stderr. Bad options exit 2, missing data exits 1.
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import plotly.graph_objects as go
import torch

from aecore.engine import checkpoint
from aecore.argv import OneLineParser, positive_int
from aecore.engine.data import DataConfig, DataError, cache_dir, load
from aecore.engine.train import TrainingDiverged, resolve_device
from aecore.engine.viz import NEUTRAL, TWO
from aecore.labs.fewlabels import (CLASSES, DEFAULT_LABELS, QUICK, Classifier, PretrainConfig, accuracy,  # noqa: F401
                                   classifier, draw_labelled, fine_tune, fine_tune_steps, load_autoencoder, pretrain,
                                   pretrain_steps, row, shift, table)
from aecore.runs.task import TaskSpec

FORMAT = "aecore-pretrain/1"
RESULTS = Path(__file__).resolve().parents[2] / "models" / "pretrain" / "results.json"
ROW_KEYS = ("labels", "pretrained_mean", "pretrained_std", "random_mean", "random_std")
# Published test accuracies at 100 labels to read the table against (error rates from Rasmus et al. 2015, Table 1).
REFERENCES = (("MLP on the 100 labels alone (Rasmus et al. 2015)", 1 - 0.2580),
              ("Manifold tangent classifier (Rifai et al. 2011)", 1 - 0.1203))


# ---------------------------------------------------------------------------------------------- stored results
class ResultsError(ValueError):
    """The results file is missing or not one this module wrote; the message says which and how to make it."""


def load_results(path=RESULTS) -> dict:
    """The table written by `--out`, checked: format, config, and rows with accuracies in [0, 1]."""
    path = Path(path)
    fix = f"make it with: python -m aecore.labs.pretrain --out {path}"
    try:
        res = json.loads(path.read_text())
    except FileNotFoundError:
        raise ResultsError(f"no results yet: {path} does not exist; {fix}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ResultsError(f"{path} is not readable JSON ({e}); {fix}") from None
    if not isinstance(res, dict) or res.get("format") != FORMAT:
        raise ResultsError(f"{path} is not a pretraining results file (format {FORMAT!r}); {fix}")
    try:
        res["config"] = PretrainConfig.from_dict(res["config"])
        rows = res["rows"]
        ok = isinstance(rows, list) and rows and all(
            isinstance(r, dict) and isinstance(r.get("labels"), int)
            and all(isinstance(r.get(k), (int, float)) and 0 <= r[k] <= 1 for k in ROW_KEYS[1:]) for r in rows)
    except (KeyError, TypeError, ValueError) as e:
        raise ResultsError(f"{path}: malformed ({e}); {fix}") from None
    if not ok:
        raise ResultsError(f"{path}: the rows are malformed (each needs {', '.join(ROW_KEYS)}, accuracies in "
                           f"[0, 1]); {fix}")
    return res


def accuracy_figure(rows: list[dict]) -> go.Figure:
    """Test accuracy against the number of labels (log scale), both arms with ± one std, and the references."""
    n = [r["labels"] for r in rows]
    fig = go.Figure()
    for arm, name, colour in (("pretrained", "pretrained encoder", TWO[0]), ("random", "random init", TWO[1])):
        fig.add_scatter(x=n, y=[100 * r[f"{arm}_mean"] for r in rows], name=name, mode="lines+markers",
                        line={"color": colour},
                        error_y={"type": "data", "array": [100 * r[f"{arm}_std"] for r in rows], "visible": True})
    for (label, acc), dash in zip(REFERENCES, ("dot", "dash")):
        fig.add_hline(y=100 * acc, line_dash=dash, line_color=NEUTRAL, annotation_text=f"{label}: {acc:.1%}",
                      annotation_position="bottom right")
    fig.update_layout(xaxis={"type": "log", "title": "labelled training images (N)", "tickvals": n},
                      yaxis={"title": "test accuracy (%)"}, height=420, margin={"t": 30},
                      legend={"orientation": "h", "y": -0.2})
    return fig


# ---------------------------------------------------------------------------------------------- the page's run
# The networks a visitor may pick: the measured table's encoder, and a smaller one whose seeds take seconds.
NETWORKS = {"784-512-256-128": (512, 256, 128), "784-256-64": (256, 64)}
# What the page's run starts from: the table's procedure with AE_EPOCHS autoencoder epochs instead of 20, so that
# the default run (1 seed, 10 labels per class) takes about a minute on two CPU cores.
AE_EPOCHS = 3
PAGE = replace(PretrainConfig(), ae_epochs=AE_EPOCHS)
MAX_SEEDS = 3
MAX_PER_CLASS = 100
REPORT_EVERY = 20     # fine-tuning steps between two progress records
# Seconds on a busy 2-core CPU (load average 6 to 11), one thread, real MNIST, measured through the registry
# (processes backend) at 10 labels per class: one autoencoder epoch, one seed's two arms (fine-tuning and test
# accuracy), and starting the process. 784-512-256-128: 96 s for 1 seed with the autoencoder trained (82.4 % against
# 74.2 %), 35 s for 3 seeds from the cache; 784-256-64: 60 s for 1 seed (81.2 % against 73.2 %). On an idle
# machine the table's network takes about half (its 20-epoch autoencoder: 11 s an epoch; 8 s a seed).
SECONDS = {"784-512-256-128": {"ae_epoch": 24.0, "seed": 14.0}, "784-256-64": {"ae_epoch": 19.0, "seed": 3.5}}
START_S = 5.0
TASK = "aecore.labs.pretrain:comparison"


@dataclass(frozen=True)
class ComparisonConfig:
    """The page's comparison: N = `per_class` labelled images of each digit, seeds 0 .. seeds-1, both arms built
    and trained as `pretrain` (the PretrainConfig) says."""
    per_class: int = 10
    seeds: int = 1
    pretrain: PretrainConfig = PAGE

    def __post_init__(self):
        if not 1 <= self.per_class <= MAX_PER_CLASS:
            raise ValueError(f"ComparisonConfig.per_class must be from 1 to {MAX_PER_CLASS}, got {self.per_class!r}")
        if not 1 <= self.seeds <= MAX_SEEDS:
            raise ValueError(f"ComparisonConfig.seeds must be from 1 to {MAX_SEEDS}, got {self.seeds!r}")

    @property
    def labels(self) -> int:
        return CLASSES * self.per_class

    @property
    def network(self) -> str:
        return "784-" + "-".join(map(str, self.pretrain.hidden))


@dataclass(frozen=True)
class Progress:
    """One record of a comparison in progress. `step`/`total_steps` count autoencoder and fine-tuning steps
    together (an autoencoder from the cache counts none); `accuracies` holds (arm, seed, test accuracy) of every
    arm trained so far."""
    phase: str                 # "autoencoder", "pretrained" or "random"
    seed: int | None           # the labelled draw being trained on (None while the autoencoder trains)
    phase_step: int
    phase_steps: int
    step: int
    total_steps: int
    elapsed: float
    accuracies: tuple[tuple[str, int, float], ...] = ()


def estimate_s(cfg: ComparisonConfig, cached: bool = False) -> float:
    """Expected seconds on 2 busy CPU cores (SECONDS): the start, the autoencoder's epochs (none when it is in the
    cache), then each seed's two arms."""
    base = SECONDS.get(cfg.network, SECONDS["784-512-256-128"])
    ae = 0.0 if cached else base["ae_epoch"] * cfg.pretrain.ae_epochs
    steps = (cfg.pretrain.head_steps + cfg.pretrain.steps) / (PAGE.head_steps + PAGE.steps)
    return START_S + ae + base["seed"] * cfg.seeds * max(steps, 0.2)


def comparison_spec(cfg: ComparisonConfig) -> TaskSpec:
    """The comparison as a run for the registry (`registry.submit(spec, data, visitor)` with MNIST's data)."""
    return TaskSpec(name=f"few labels · {cfg.labels} labels · {cfg.seeds} seed{'s' if cfg.seeds > 1 else ''} · "
                         f"{cfg.network}", task=TASK, config=cfg, data=DataConfig(), estimate_s=estimate_s(cfg))


def comparison(cfg: ComparisonConfig, data, cache: Path | None = None):
    """The two arms at N = cfg.labels for seeds 0 .. seeds-1, as `table` trains them, after the autoencoder
    (`pretrain`, from this server's cache when it has one): yields Progress records, returns {"row": the table
    row `table` gives for this N and these seeds, "autoencoder": pretrain's info, "config", "seconds", ...}."""
    pcfg, n = cfg.pretrain, cfg.labels
    draw_labelled(data.train.labels, n, 0)    # too many labels for the data: fails before any training
    cache = cache if cache is not None else cache_dir() / "pretrain"
    t0, accs, done = time.perf_counter(), {"pretrained": [], "random": []}, []
    per_arm = pcfg.head_steps + pcfg.steps
    tuning = cfg.seeds * 2 * per_arm
    steps = pretrain_steps(data, pcfg, cache)
    ae_total = 0
    while True:
        try:
            m = next(steps)
        except StopIteration as end:
            ae, ae_info = end.value
            break
        ae_total = m.total_steps
        yield Progress("autoencoder", None, m.step, m.total_steps, m.step, m.total_steps + tuning,
                       time.perf_counter() - t0)
    total, at = ae_total + tuning, ae_total
    t_rows = time.perf_counter()
    for seed in range(cfg.seeds):
        idx = draw_labelled(data.train.labels, n, seed)
        images, targets = data.train.images[idx], data.train.labels[idx]
        for arm, source in (("pretrained", ae), ("random", None)):
            net = classifier(pcfg, seed, source)
            for k in fine_tune_steps(net, images, targets, pcfg, seed):
                if k % REPORT_EVERY == 0 or k == per_arm:
                    yield Progress(arm, seed, k, per_arm, at + k, total, time.perf_counter() - t0, tuple(done))
            accs[arm].append(round(accuracy(net, data.test.images, data.test.labels), 4))
            done.append((arm, seed, accs[arm][-1]))
            at += per_arm
            yield Progress(arm, seed, per_arm, per_arm, at, total, time.perf_counter() - t0, tuple(done))
    return {"row": row(n, accs, time.perf_counter() - t_rows), "autoencoder": ae_info,
            "config": {"per_class": cfg.per_class, "seeds": cfg.seeds, "pretrain": pcfg.to_dict()},
            "seconds": round(time.perf_counter() - t0, 1), "train_images": len(data.train),
            "test_images": len(data.test)}


# ---------------------------------------------------------------------------------------------- command line
def _labels(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers of labels, got {text!r}") from None
    if not values or any(v <= 0 or v % CLASSES for v in values):
        raise argparse.ArgumentTypeError(f"each number of labels must be a positive multiple of {CLASSES}, "
                                         f"got {text!r}")
    return values


def parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m aecore.labs.pretrain", description=__doc__.splitlines()[0])
    p.add_argument("--labels", type=_labels, default=DEFAULT_LABELS,
                   help="numbers of labelled images, multiples of 10 (default 100,300,1000,60000)")
    p.add_argument("--seeds", type=positive_int, default=5, help="labelled draws per N (default 5)")
    p.add_argument("--data-dir", help="folder with the IDX files (else $AECORE_DATA_DIR, ./data, the cache)")
    p.add_argument("--out", help="write the whole table (config, rows, per-seed accuracies, timing) to this JSON")
    p.add_argument("--encoder", help="an autoencoder checkpoint to use instead of pretraining one")
    p.add_argument("--cache-dir", help="where the pretrained autoencoder is kept for the next run "
                                       "(default: AE Lab's cache, pretrain/)")
    p.add_argument("--no-cache", action="store_true", help="pretrain afresh and keep nothing")
    p.add_argument("--shift", type=int, choices=range(0, 9), metavar="K",
                   help="move each labelled image by up to K px per step, in both arms (default: the config's)")
    p.add_argument("--quick", action="store_true", help="a smoke configuration (1 epoch, 50 steps): seconds")
    p.add_argument("--threads", type=positive_int, default=1,
                   help="CPU threads for torch (default 1: on a busy two-core machine more threads wait on each "
                        "other and small batches run many times slower)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu")
    return p


def main(argv=None) -> int:
    p = parser()
    args = p.parse_args(argv)
    cfg = QUICK if args.quick else PretrainConfig()
    if args.shift is not None:
        cfg = replace(cfg, shift=args.shift)
    try:
        device = str(resolve_device(args.device))
    except ValueError as e:
        p.error(str(e))
    previous = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return _run(p, args, cfg, device, argv)
    finally:
        torch.set_num_threads(previous)   # main() may be called in-process (tests): leave torch as it was


def _run(p: argparse.ArgumentParser, args, cfg: PretrainConfig, device: str, argv) -> int:
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    t0 = time.perf_counter()
    try:
        data = load(DataConfig(), args.data_dir)
    except DataError as e:
        print(f"aecore.labs.pretrain: {e}", file=sys.stderr)
        return 1
    try:
        for n in args.labels:
            draw_labelled(data.train.labels, n, 0)
        if args.encoder:
            ae, ae_info = load_autoencoder(args.encoder, cfg)
        else:
            cache = None if args.no_cache else Path(args.cache_dir) if args.cache_dir else cache_dir() / "pretrain"
            ae, ae_info = pretrain(data, cfg, cache, device, log)
        rows = []
        for row in table(data, ae, cfg, args.labels, args.seeds, device, log):
            rows.append(row)
            print(json.dumps(row), flush=True)
    except (ValueError, checkpoint.CheckpointError) as e:
        p.error(str(e))
    except TrainingDiverged as e:
        print(f"aecore.labs.pretrain: {e}", file=sys.stderr)
        return 1
    seconds = time.perf_counter() - t0
    log(f"done in {seconds:.0f} s")
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        command = "python -m aecore.labs.pretrain" + "".join(
            f" {a}" for a in (argv if argv is not None else sys.argv[1:]))
        out.write_text(json.dumps({
            "format": FORMAT, "config": cfg.to_dict(), "quick": args.quick, "rows": rows,
            "autoencoder": ae_info, "seconds": round(seconds, 1), "train_images": len(data.train),
            "test_images": len(data.test), "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "torch": torch.__version__, "device": device, "threads": args.threads, "command": command},
            indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
