"""A class on one link: a teacher's challenge, the students' runs scored on one board (the Class page).

A teacher sets a `Challenge`: the metric the board ranks by (and its direction), the form the students start from
(a tutorial preset; for the one-class metric, trained on one digit), the settings they may change (the others are
locked at the class's values), and limits such as "at most 5 epochs" or "a code of at most 8 numbers". The class
is stored (aecore.runs.store.classes) under a short code, the student link's, with the hash of the teacher's
128-bit secret, which `is_teacher` compares in constant time. Each finished run of a student is scored here
(`score`) and ranked (`ranking`: by the metric, ties by the time it ended); the board is also one big study
(`scatter_figure`: any setting against the metric) and a CSV (`board_csv`).
"""
from __future__ import annotations

import csv
import functools
import hashlib
import hmac
import io
import math
import re
import secrets
import time
from dataclasses import asdict, dataclass, field

import plotly.graph_objects as go
import torch

from aecore.engine import links, presets
from aecore.engine.data import Data, DataConfig, load
from aecore.engine.fields import FIELDS, format_value
from aecore.engine.models import Autoencoder, from_dict, inference
from aecore.engine.train import RunSpec
from aecore.labs import anomaly
from aecore.labs.fewlabels import draw_labelled


@dataclass(frozen=True)
class Metric:
    label: str
    higher_is_better: bool
    about: str


METRICS = {
    "test_loss": Metric("test loss", False, "the model's own loss on the 10,000 test images"),
    "one_class_auc": Metric("one-class AUC", True, "trained on one digit only; how well its reconstruction error "
                            "tells the other digits of the test set from that one (ROC-AUC)"),
    "accuracy_100": Metric("accuracy with 100 labels", True, "the code as features: each test image takes the "
                           "digit of its nearest code among 100 labelled training images, 10 per digit"),
}
CODE_CHARS = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"       # no 0/O, 1/I/L: read aloud or off a board without mistakes
CODE = re.compile(rf"[{CODE_CHARS}]{{8}}")
NICKNAME_MAX = 24
NICKNAME = re.compile(r"[^\W_](?:[\w .'-]*[^\W_])?")   # letters and digits, inner spaces . ' - _; no markup
CLASS_LIFETIME_S = 30 * 86400.0


@dataclass(frozen=True)
class Challenge:
    """What a class trains for: see the module docstring. `editable` settings are the students' to change."""
    metric: str = "test_loss"
    preset: str = "keras-784-32"
    digit: int = 0                          # one_class_auc: the digit every run learns
    max_epochs: int | None = 5
    max_code: int | None = None             # numbers in the code (its size)
    editable: tuple[str, ...] = ("hidden", "lr", "batch_size", "epochs")
    hide: tuple[str, ...] = ()             # locked settings the students do not even see

    def __post_init__(self):
        object.__setattr__(self, "editable", tuple(self.editable))
        object.__setattr__(self, "hide", tuple(n for n in self.hide if n not in self.editable))
        if self.metric not in METRICS:
            raise ValueError(f"unknown metric {self.metric!r}; one of {', '.join(METRICS)}")
        if self.preset not in presets.PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}")
        unknown = [n for n in self.editable + self.hide if n not in FIELDS]
        if unknown:
            raise ValueError(f"unknown settings {unknown}")
        if not 0 <= self.digit <= 9:
            raise ValueError(f"the digit must be 0-9, got {self.digit}")
        for name in ("max_epochs", "max_code"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, or none, got {value}")

    @property
    def about(self) -> Metric:
        return METRICS[self.metric]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Challenge":
        return from_dict(cls, d)

    def values(self) -> dict:
        """The class's form: the preset's settings, one digit to learn for the one-class metric, and the epochs
        within the limit."""
        vals = dict(links.preset_values(self.preset))
        if self.metric == "one_class_auc":
            vals["classes"] = (self.digit,)
        if self.max_epochs is not None and vals["epochs"] > self.max_epochs:
            vals["epochs"] = self.max_epochs
        return vals

    def locked(self) -> tuple[str, ...]:
        """The settings students may not change: every one of the form's but the editable ones (hidden or not)."""
        return tuple(n for n in self.values() if n not in self.editable)

    def problem(self, spec: RunSpec) -> str | None:
        """Why a run does not count for this challenge, or None."""
        broken = []
        if self.max_epochs is not None and spec.train.epochs > self.max_epochs:
            broken.append(f"at most {_count(self.max_epochs, 'epoch')} (this run has {spec.train.epochs})")
        size = math.prod(spec.model.code_shape)
        if self.max_code is not None and size > self.max_code:
            broken.append(f"a code of at most {_count(self.max_code, 'number')} (this model's has {size})")
        _, vals = links.of_run(spec)
        fixed = self.values()
        changed = [n for n in self.locked() if n in vals and n in fixed and vals[n] != fixed[n]]
        if changed:
            broken.append("only " + ", ".join(self.editable) + " may change; this run changes " + ", ".join(changed))
        return ("this class's challenge asks for " + "; ".join(broken)) if broken else None

    def describe(self) -> str:
        limits = [f"at most {_count(self.max_epochs, 'epoch')}"] if self.max_epochs else []
        limits += [f"a code of at most {_count(self.max_code, 'number')}"] if self.max_code else []
        digit = f" Every run learns the digit {self.digit} only." if self.metric == "one_class_auc" else ""
        return (f"**Best {self.about.label}** ({'higher' if self.about.higher_is_better else 'lower'} is better): "
                f"{self.about.about}.{digit} Starting from the {self.preset} preset; you may change "
                f"{', '.join(FIELDS[n].label.lower() for n in self.editable) or 'nothing'}"
                + (f"; {' and '.join(limits)}." if limits else "."))


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


# ---------------------------------------------------------------------------------------------- codes, secrets, names
def new_code() -> str:
    return "".join(secrets.choice(CODE_CHARS) for _ in range(8))


def new_secret() -> str:
    """The teacher's secret: 128 random bits."""
    return secrets.token_urlsafe(16)


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def is_teacher(stored_hash: str, secret: str | None) -> bool:
    """Whether `secret` is the class's teacher secret (compared in constant time)."""
    return bool(secret) and hmac.compare_digest(secret_hash(str(secret)), stored_hash)


def check_code(text: str | None) -> str:
    """A class code as typed or linked (case and spaces do not count); ValueError says what is wrong."""
    code = re.sub(r"[\s-]", "", str(text or "")).upper()
    if not CODE.fullmatch(code):
        raise ValueError("a class code is 8 letters and digits, as on the teacher's link")
    return code


def check_nickname(text: str | None) -> str:
    """A student's nickname: 1 to 24 letters, digits, inner spaces, dots, dashes, apostrophes or underscores."""
    name = " ".join(str(text or "").split())
    if not name:
        raise ValueError("pick a nickname, so the board can show your runs")
    if len(name) > NICKNAME_MAX:
        raise ValueError(f"a nickname has at most {NICKNAME_MAX} characters (this one has {len(name):,})")
    if not NICKNAME.fullmatch(name):
        raise ValueError("a nickname holds letters, digits, spaces, dots, dashes, apostrophes and underscores only, "
                         "and starts and ends with a letter or digit")
    return name


# ---------------------------------------------------------------------------------------------- scoring
def score(challenge: Challenge, model: Autoencoder, result: dict | None, data: Data) -> float:
    """The challenge's metric for a finished run: `data` is the whole data set (all ten digits), `result` the
    run's (its test loss)."""
    if challenge.metric == "test_loss":
        value = ((result or {}).get("figures") or {}).get("test_loss")
        if value is None:
            raise ValueError("the run has no test loss")
        return float(value)
    if challenge.metric == "one_class_auc":
        labels = data.test.labels.numpy()
        return anomaly.auc(anomaly.score(model, data.test.images), labels != challenge.digit)
    picks = draw_labelled(data.train.labels, 100, seed=0)
    known, known_labels = codes(model, data.train.images[picks]), data.train.labels[picks]
    test = codes(model, data.test.images)
    nearest = torch.cdist(test, known).argmin(dim=1)
    return float((known_labels[nearest] == data.test.labels).float().mean())


def codes(model: Autoencoder, images: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """The code of each image, flattened (N, code size), on the CPU."""
    from aecore.engine.data import to_float
    out = []
    with inference(model):
        for i in range(0, len(images), batch_size):
            out.append(model.encode(to_float(images[i:i + batch_size])).flatten(1).float().cpu())
    return torch.cat(out) if out else torch.zeros(0, 0)


# ---------------------------------------------------------------------------------------------- the board
def ranking(entries: list[dict], challenge: Challenge, hidden: bool = False) -> list[dict]:
    """The scored entries, best first (ties: the earlier end first), each with its `rank`; hidden ones only with
    `hidden`."""
    scored = [e for e in entries if e["metric"] is not None and (hidden or not e["hidden"])]
    sign = -1.0 if challenge.about.higher_is_better else 1.0
    scored.sort(key=lambda e: (sign * e["metric"], e["ended"] or 0.0))
    return [{**e, "rank": i + 1} for i, e in enumerate(scored)]


def board_rows(entries: list[dict], challenge: Challenge, hidden: bool = False) -> list[dict]:
    """The leaderboard as table rows: rank, nickname, metric, the settings the students may change, when."""
    rows = []
    for e in ranking(entries, challenge, hidden):
        row = {"rank": e["rank"], "student": e["nickname"], challenge.about.label: round(e["metric"], 5)}
        row.update({FIELDS[n].label: format_value(e["settings"].get(n)) for n in challenge.editable})
        row["ended"] = time.strftime("%H:%M:%S", time.localtime(e["ended"])) if e["ended"] else ""
        rows.append(row)
    return rows


def board_csv(entries: list[dict], challenge: Challenge) -> str:
    """Every entry (hidden ones too, marked), best first, then those not scored: one row each, settings as
    columns."""
    ranked = ranking(entries, challenge, hidden=True)
    rest = [e for e in entries if e["metric"] is None]
    names = sorted({n for e in entries for n in e["settings"]})
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["rank", "student", "run", "state", challenge.metric, "hidden", "ended", *names])
    for e in ranked + rest:
        writer.writerow([e.get("rank", ""), _cell(e["nickname"]), e["run_id"], e["state"],
                         "" if e["metric"] is None else repr(e["metric"]), int(e["hidden"]),
                         time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(e["ended"])) if e["ended"] else "",
                         *[_cell(format_value(e["settings"].get(n, ""))) for n in names]])
    return out.getvalue()


def _cell(text: str) -> str:
    """A CSV cell a spreadsheet will not run as a formula (a number stays a number)."""
    text = str(text)
    try:
        float(text)
        return text
    except ValueError:
        return "'" + text if text[:1] in ("=", "+", "-", "@") else text


def scatter_figure(entries: list[dict], challenge: Challenge, setting: str) -> go.Figure:
    """The class as one study: each scored, visible run as a point, `setting` against the metric."""
    ranked = ranking(entries, challenge)
    xs = [_number(e["settings"].get(setting)) for e in ranked]
    fig = go.Figure(go.Scatter(
        x=xs, y=[e["metric"] for e in ranked], mode="markers", text=[e["nickname"] for e in ranked],
        marker={"size": 10}, hovertemplate="%{text}<br>%{x}: %{y:.4f}<extra></extra>"))
    fig.update_layout(xaxis_title=FIELDS[setting].label, yaxis_title=challenge.about.label, height=360,
                      margin={"l": 60, "r": 20, "t": 20, "b": 50})
    return fig


def _number(value):
    """A setting as an axis value: a number as it is, a list as its numbers joined (hidden sizes: "256-64")."""
    if isinstance(value, (list, tuple)):
        return "-".join(map(str, value))
    return value


@dataclass(frozen=True)
class NewClass:
    """What creating a class gives the teacher: the code (the student link's) and the secret (the teacher's)."""
    code: str
    secret: str = field(repr=False)


def create(store, title: str, challenge: Challenge) -> NewClass:
    """A new class in `store` (aecore.runs.store.Store); ValueError for a title that is empty or too long."""
    title = " ".join(str(title or "").split())
    if not title:
        raise ValueError("give the class a title (the students see it)")
    if any(c in title for c in "<>[]`*_#|\\"):
        raise ValueError("a title is plain text: no markup characters (< > [ ] ` * _ # | \\)")
    if len(title) > 80:
        raise ValueError(f"a title has at most 80 characters (this one has {len(title):,})")
    code, secret = new_code(), new_secret()
    store.classes.create(code, title, challenge.to_dict(), secret_hash(secret), CLASS_LIFETIME_S)
    return NewClass(code, secret)


def settings_of(spec: RunSpec) -> dict:
    """A run's settings as its link writes them (JSON-able), for the board's table, scatter and CSV."""
    _, vals = links.of_run(spec)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in vals.items()}


@functools.lru_cache(maxsize=2)
def full_data(dataset: str) -> Data:
    """The whole data set (every digit), for scoring; loaded once per server."""
    return load(DataConfig(dataset=dataset))


def rescore(store, code: str, model_of) -> int:
    """Score every finished entry of a class again (its challenge changed); `model_of(run_id)` gives a run's
    (model, spec, result), or None when the run is no longer kept. Returns how many were scored."""
    challenge = Challenge.from_dict(store.classes.get(code)["challenge"])
    done = 0
    for e in store.classes.entries(code):
        if e["state"] not in ("finished", "not counted"):
            continue
        found = model_of(e["run_id"])
        if found is None:
            store.classes.set_result(e["run_id"], "not kept", None, "the run is no longer kept on the server")
            continue
        model, spec, result = found
        problem = challenge.problem(spec)
        value = None if problem else score(challenge, model, result, full_data(spec.data.dataset))
        store.classes.set_result(e["run_id"], "not counted" if problem else "finished", value, problem)
        done += 1
    return done


def record(store, run_id: str, job) -> None:
    """A run of a class has ended (the run service's end hook, `Keeper.hooks`): its board entry gets its state
    and, when it finished within the challenge, the metric. Runs of no class are left alone."""
    entry = store.classes.entry(run_id)
    if entry is None:
        return
    cls = store.classes.get(entry["code"])
    challenge = Challenge.from_dict(cls["challenge"])
    snap = job.snapshot()
    if snap.state != "finished" or job.model is None:
        store.classes.set_result(run_id, snap.state, None, snap.error or job.stop_reason)
        return
    problem = challenge.problem(job.spec)
    if problem:
        store.classes.set_result(run_id, "not counted", None, problem)
        return
    value = score(challenge, job.model, snap.result, full_data(job.spec.data.dataset))
    store.classes.set_result(run_id, "finished", value)
