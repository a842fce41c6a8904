"""Every setting a user can set, in one table: its name (the config field's own), the config it belongs to, its
label and help, its kind and range, and which model families let it be chosen, fix it, or never read it.

One name everywhere: the Train form's widget key is `train.<name>`, a link's parameter is `<name>`
(`?preset=keras-784-32&epochs=5&lr=0.01`), the command line's option is `--<name with dashes>` (`--batch-size`).
One range everywhere: ModelConfig, DataConfig and TrainConfig validate against this table (`validate`), and the
form, the link parser and the command line read their bounds from it. `fields_for(family)` and `used_by(name,
...)` say which settings a model uses, for the form (what to draw), the configs (what to check) and the Compare
page ("not used"). `PICTURE` holds the picture's side and colour beside the table: checked the same way, but set
by the pictures a model learns rather than chosen on the form. A leaf of the engine: it imports nothing of AE
Lab's, so the configs can import it.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field, fields as dataclass_fields, is_dataclass, replace
from typing import Mapping

FAMILIES = ("shallow", "deep", "conv", "vae", "conv-vae")
VARIATIONAL = ("vae", "conv-vae")
PLAIN = ("shallow", "deep", "conv")                 # the families whose output, dropout and dropout place are free
ACTIVATION_NAMES = ("relu", "sigmoid", "tanh")      # models.ACTIVATIONS maps them to modules
OUTPUTS = ("sigmoid", "identity")
LOSSES = ("bce", "mse")
INITS = ("torch", "keras", "chainer")
DROPOUT_PLACES = ("hidden", "hidden+output")
DATASETS = ("mnist", "fashion-mnist")
NOISE_KINDS = ("none", "mask", "gaussian")
OPTIMIZERS = ("adam", "rmsprop")
DEVICES = ("auto", "cpu", "cuda")
SIDES = (28, 32, 64)                                # picture sides in pixels: MNIST's 28, picture sets' 32 and 64
COLORS = ("grey", "rgb")                            # one channel or three
# The settings a run can change while it trains (aecore.engine.steering applies them; TrainConfig.changes keeps
# them as a schedule of (step, name, value): after `step` steps, before the next, `name` becomes `value`).
STEERABLE = ("lr", "noise", "noise_level", "dropout", "beta", "sparsity")
MAX_CHANGES = 200                                   # changes one run may make
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


@dataclass(frozen=True, eq=False)
class Field:
    """One setting. `ints` is a list of whole numbers, written comma-separated in a link, the form and the CLI;
    `schedule` a list of changes while training, `step:name=value` comma-separated (`120:lr=0.0005,300:noise=mask`)."""
    name: str
    config: str                          # "model", "data" or "train": RunSpec's ModelConfig, DataConfig, TrainConfig
    kind: str                            # int, float, choice, bool or ints
    label: str                           # the Train form's label
    help: str                            # the form's tooltip and the CLI's --help line
    low: float | None = None             # int, float: the smallest value; ints: each number's
    high: float | None = None
    step: float | None = None            # the form's step
    choices: tuple[str, ...] = ()
    choice_labels: Mapping[str, str] = field(default_factory=dict)   # how the form names a choice, if not as-is
    count: tuple[int, int | None] = (0, None)   # ints: how many numbers, at least and at most (None: no limit)
    unit: str = "number"                 # ints: one number in words, for messages ("one size from 2 to 2000")
    distinct: bool = False               # ints: a set (order and repeats do not matter), e.g. classes
    values: tuple[int, ...] = ()         # int: the only numbers allowed within the range (a picture's side), if set
    families: tuple[str, ...] = FAMILIES  # the model families that let it be chosen (the form shows it for these)
    fixed: Mapping[str, object] = field(default_factory=dict)        # other families that read it, at this value
    fixed_why: str = ""                  # why those families fix it, for the config's error
    needs: str | None = None             # a setting that must be on (not 0, empty or "none") for this one to matter
    labels: Mapping[str, str] = field(default_factory=dict)          # the form's label for one family, if its own
    rules: Mapping[str, Mapping] = field(default_factory=dict)       # per family: a stricter low, high or count

    @property
    def option(self) -> str:
        """The command line's option: `--batch-size`."""
        return "--" + self.name.replace("_", "-")

    def for_family(self, family: str | None) -> "Field":
        """This setting as `family` takes it (a shallow model's `hidden` is one size from 2 to 2000)."""
        return replace(self, **self.rules[family]) if family in self.rules else self

    def label_for(self, family: str | None) -> str:
        return self.labels.get(family, self.label)

    def choice_label(self, choice: str) -> str:
        return self.choice_labels.get(choice, choice)

    @property
    def single(self) -> bool:
        """An `ints` setting that takes exactly one number (the form shows a number input)."""
        return self.kind == "ints" and self.count == (1, 1)

    # ------------------------------------------------------------------------------------------ checking
    def accepts(self, value) -> bool:
        """Whether `value` (the config's own type: tuples for ints) is allowed."""
        if self.kind == "choice":
            return value in self.choices
        if self.kind == "bool":
            return isinstance(value, bool)
        if self.kind == "schedule":
            return schedule_ok(value)
        if self.kind == "ints":
            low, high = self.count
            return (isinstance(value, (tuple, list)) and len(value) >= low and (high is None or len(value) <= high)
                    and all(self._in_range(v) for v in value))
        if not isinstance(value, numbers.Real) or isinstance(value, bool) or not math.isfinite(value):
            return False
        return ((self.kind == "float" or value == int(value)) and self._in_range(value)
                and (not self.values or value in self.values))

    def _in_range(self, v) -> bool:
        return (self.low is None or v >= self.low) and (self.high is None or v <= self.high)

    def _range_text(self) -> str:
        if self.low is not None and self.high is not None:
            return f"from {_num(self.low)} to {_num(self.high)}"
        return f"of at least {_num(self.low)}" if self.low is not None else ""

    def allowed(self) -> str:
        """What a config's error says the value must be: 'an integer from 1 to 1000', 'in [0, 0.9]'."""
        if self.kind == "choice":
            return f"one of {self.choices}"
        if self.kind == "bool":
            return "true or false"
        if self.kind == "schedule":
            return SCHEDULE_WORDS
        if self.kind == "int" and self.values:
            return "one of " + ", ".join(map(str, self.values[:-1])) + f" or {self.values[-1]}"
        if self.kind == "int":
            return f"an integer {self._range_text()}"
        if self.kind == "float":
            return f"in [{_num(self.low)}, {_num(self.high)}]"
        low, high = self.count
        each = self._range_text()
        if (low, high) == (1, 1):
            return f"one {self.unit} {each}"
        if (low, high) == (1, 2):
            return f"1 or 2 {self.unit}s {each}"
        if high is None:
            return f"one or more {self.unit}s {each}" if low == 1 else f"{self.unit}s {each}"
        return f"{low} to {high} {self.unit}s, each {each}"

    def describe(self) -> str:
        """What a link's parameter must be, in words: 'a whole number from 1 to 1000', 'one of shallow, deep'."""
        if self.kind == "choice" or self.values:
            return "one of " + ", ".join(map(str, self.choices or self.values))
        if self.kind == "bool":
            return "true or false"
        if self.kind == "schedule":
            return SCHEDULE_WORDS
        what = {"int": "a whole number", "float": "a number", "ints": "whole numbers separated by commas"}[self.kind]
        return f"{what} {self._range_text()}".rstrip()

    # ------------------------------------------------------------------------------------------ text
    def parse(self, text: str):
        """A value as a link or the command line writes it, in the config's type; ValueError when not allowed."""
        text = str(text).strip()
        if self.kind == "choice":
            value = text
        elif self.kind == "bool":
            if text.lower() not in _TRUE + _FALSE:
                raise ValueError(text)
            value = text.lower() in _TRUE
        elif self.kind == "schedule":
            value = parse_schedule(text)
        elif self.kind == "ints":
            value = parse_ints(text)
            if self.distinct:
                value = tuple(sorted(set(value)))
        else:
            value = int(text) if self.kind == "int" else float(text)
        if not self.accepts(value):
            raise ValueError(text)
        return value


def _num(v: float) -> str:
    """A bound in words: 2147483647, 0.9, 1e-06."""
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else f"{v:g}"


def parse_ints(text: str) -> tuple[int, ...]:
    """'256, 128,64' -> (256, 128, 64); ValueError on anything else."""
    return tuple(int(v) for v in str(text).replace(" ", "").split(",") if v)


SCHEDULE_WORDS = (f"changes written step:setting=value, comma-separated (at most {MAX_CHANGES}; settings: "
                  f"{', '.join(STEERABLE)}), e.g. 120:lr=0.0005,300:noise=mask")


def parse_schedule(text: str) -> tuple[tuple[int, str, float | str], ...]:
    """'120:lr=0.0005, 300:noise=mask' -> ((120, 'lr', 0.0005), (300, 'noise', 'mask')), in step order; ValueError
    naming the first entry that is not a change of a steerable setting to a value its own range allows."""
    out = []
    for entry in (e.strip() for e in str(text).split(",")):
        if not entry:
            continue
        step, _, rest = entry.partition(":")
        name, _, value = rest.partition("=")
        name = name.strip()
        try:
            if name not in STEERABLE or not value.strip():
                raise ValueError
            out.append((int(step), name, FIELDS[name].parse(value)))
        except ValueError:
            raise ValueError(f"{entry!r} is not step:setting=value with a setting of {', '.join(STEERABLE)} and a "
                             "value it allows") from None
    value = tuple(sorted(out, key=lambda c: c[0]))
    if not schedule_ok(value):
        raise ValueError(f"expected {SCHEDULE_WORDS}")
    return value


def schedule_ok(value) -> bool:
    """Whether `value` is a schedule of changes: (step >= 0, steerable name, a value its field allows), in step
    order, at most MAX_CHANGES."""
    if not isinstance(value, (tuple, list)) or len(value) > MAX_CHANGES:
        return False
    steps = [c[0] for c in value if isinstance(c, (tuple, list)) and len(c) == 3]
    return (len(steps) == len(value) and steps == sorted(steps)
            and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 and n in STEERABLE
                    and FIELDS[n].accepts(v) for s, n, v in value))


def format_value(value) -> str:
    """A value as a link or the command line writes it (the inverse of `Field.parse`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)) and value and isinstance(value[0], (tuple, list)):     # a schedule
        return ",".join(f"{s}:{n}={format_value(v)}" for s, n, v in value)
    if isinstance(value, (tuple, list)):
        return ",".join(map(str, value))
    if isinstance(value, float):
        return repr(value) if value != int(value) or abs(value) >= 1e16 else str(int(value))
    return str(value)


# ---------------------------------------------------------------------------------------------- the table
def _f(name, config, kind, label, help, **kw) -> Field:
    return Field(name, config, kind, label, help, **kw)


_VAE_ONLY = dict(families=VARIATIONAL)
_VAE_WHY = "for a variational autoencoder"
# In link order: a link writes its parameters in this order (`?preset=keras-784-32&hidden=64&epochs=5`).
FIELDS: dict[str, Field] = {f.name: f for f in [
    _f("dataset", "data", "choice", "Dataset", "The images to train and test on", choices=DATASETS),
    _f("val_fraction", "data", "float", "Validation fraction (first part of train)",
       "Hold out this first part of the training set to measure the validation loss; 0 = none",
       low=0.0, high=0.9, step=0.05),
    _f("classes", "data", "ints", "Train only on classes",
       "Empty = all ten. The anomaly-detection preset trains on 0s only.",
       low=0, high=9, unit="label", distinct=True),
    _f("family", "model", "choice", "Family",
       "shallow: 784-h-784 · deep: any encoder sizes, mirrored in the decoder · conv: 3×3 conv + 2×2 pool per "
       "stage, transposed convs back · VAE: the encoder gives a mean and a variance per code number, the code is "
       "sampled while training, and the loss adds the KL divergence to N(0, I), so codes drawn from N(0, I) "
       "decode to digits", choices=FAMILIES,
       choice_labels={"shallow": "shallow MLP", "deep": "deep MLP", "conv": "convolutional", "vae": "VAE (MLP)",
                      "conv-vae": "VAE (convolutional)"}),
    _f("hidden", "model", "ints", "Encoder sizes (comma-separated)",
       "The encoder's layer sizes after the 784 inputs, mirrored in the decoder (a VAE's: before the code)",
       low=1, high=4096, count=(0, 8), unit="size", families=("shallow", "deep", "vae", "conv-vae"),
       labels={"shallow": "Hidden units", "vae": "Encoder sizes before the code",
               "conv-vae": "Dense sizes before the code"},
       rules={"shallow": dict(low=2, high=2000, count=(1, 1)), "deep": dict(count=(1, 8))}),
    _f("channels", "model", "ints", "Conv channels (comma-separated)",
       "One stage per entry, each halving the side (28 -> 14 -> 7): conv, a 3×3 conv and a 2×2 max-pool; "
       "conv-vae, a 3×3 stride-2 conv", low=1, high=256, count=(1, 2), unit="channel count",
       families=("conv", "conv-vae"), labels={"conv-vae": "Conv channels (1 or 2, stride 2)"}),
    _f("activation", "model", "choice", "Hidden activation", "The activation after every hidden layer",
       choices=ACTIVATION_NAMES),
    _f("linear_code", "model", "bool", "Linear code layer (no activation)",
       "No activation on the code layer, so the code is unbounded", families=("deep",)),
    _f("output", "model", "choice", "Output",
       "sigmoid keeps pixels in [0, 1]; identity, as in the Chainer study, needs the MSE loss", choices=OUTPUTS,
       families=PLAIN, fixed={"vae": "sigmoid", "conv-vae": "sigmoid"}, fixed_why=_VAE_WHY),
    _f("loss", "model", "choice", "Loss", "Binary cross-entropy or mean squared error, per pixel", choices=LOSSES,
       choice_labels={"bce": "BCE", "mse": "MSE"}),
    _f("dropout", "model", "float", "Dropout rate", "Rate of the dropout after each hidden layer; 0 = none",
       low=0.0, high=0.9, step=0.05, families=PLAIN, fixed={"vae": 0.0, "conv-vae": 0.0},
       fixed_why="(and batch_norm off) " + _VAE_WHY),
    _f("dropout_where", "model", "choice", "Dropout on", "hidden, or hidden+output as the Chainer cases do",
       choices=DROPOUT_PLACES, families=PLAIN, needs="dropout"),
    _f("init", "model", "choice", "Weight init",
       "torch: PyTorch's defaults · keras: Glorot-uniform, zero bias · chainer: N(0, 1/fan_in)", choices=INITS),
    _f("sparsity", "model", "float", "Sparsity: L1 weight on the code",
       "0 = a plain autoencoder. The penalty adds this weight times the sum of the code's absolute values, "
       "per image.", low=0.0, high=10.0, step=1e-5, families=("shallow",),
       fixed={family: 0.0 for family in FAMILIES if family != "shallow"}, fixed_why="outside the shallow family"),
    _f("latent", "model", "int", "Latent size", "The code size: numbers per image", low=1, high=512, step=1,
       **_VAE_ONLY),
    _f("beta", "model", "float", "β (weight of the KL term)", "1 = the standard VAE; more pulls codes to N(0, I)",
       low=0.0, high=100.0, step=0.5, **_VAE_ONLY),
    _f("kl_warmup", "model", "int", "KL warm-up (epochs)",
       "The KL weight rises from 0 to β over these epochs; 0 = β from the start.", low=0, high=1000, step=1,
       **_VAE_ONLY),
    _f("noise", "train", "choice", "Noise", "Corrupt the input (a denoising autoencoder); the target stays clean",
       choices=NOISE_KINDS,
       choice_labels={"none": "none", "mask": "masking (zero a ratio of pixels)", "gaussian": "Gaussian (σ)"}),
    _f("noise_level", "train", "float", "Noise ratio / σ", "The masking ratio, or the Gaussian noise's σ",
       low=0.0, high=1.0, step=0.05, needs="noise"),
    _f("deform", "train", "float", "Deform the input",
       "0 = off. At 1 each training image is turned by up to 15°, scaled by up to 10 %, moved by up to 3 px and "
       "bent a little (twice that at 2); the target stays the original, so the code learns a digit's shape "
       "rather than its pose. The Few labels page's autoencoder uses 1.", low=0.0, high=2.0, step=0.25),
    _f("lr", "train", "float", "Learning rate", "The optimiser's step size", low=1e-6, high=10.0, step=1e-4),
    _f("adam_eps", "train", "float", "Optimiser ε", "The optimiser's epsilon: PyTorch's default is 1e-8, Keras's 1e-7",
       low=1e-12, high=1.0, step=1e-8),
    _f("batch_size", "train", "int", "Batch size", "Images per training step", low=1, high=65536, step=1),
    _f("epochs", "train", "int", "Epochs", "Passes over the training images", low=1, high=1000, step=1),
    _f("lr_milestones", "train", "ints", "Lower LR after epochs",
       "After each of these epochs (comma-separated) the learning rate is multiplied by the LR factor "
       "(lr_gamma); empty = a constant rate", low=1, unit="epoch number"),
    _f("lr_gamma", "train", "float", "LR factor at each milestone",
       "What each LR milestone multiplies the learning rate by: 0.5 halves it", low=0.01, high=1.0, step=0.05,
       needs="lr_milestones"),
    _f("seed", "train", "int", "Seed", "Seeds the weights, the shuffling and the noise", low=0, high=2**31 - 1,
       step=1),
    _f("optimizer", "train", "choice", "Optimiser", "Adam, or RMSprop (Keras's: ρ 0.9) as the Keras VAE uses",
       choices=OPTIMIZERS, choice_labels={"adam": "Adam", "rmsprop": "RMSprop"}),
    _f("binarize", "train", "bool", "Binarise pixels",
       "Each pixel becomes 1 with probability equal to its intensity, anew at every batch; held-out images are "
       "binarised once. The IWAE paper's dynamically binarised MNIST."),
    _f("device", "train", "choice", "Device", "auto picks CUDA when present", choices=DEVICES),
    _f("changes", "train", "schedule", "Changes while training (step:setting=value, …)",
       "What the run changes as it trains, each from the step after the given number of steps: its learning rate, "
       "noise, dropout rate (a model built with dropout), β (a VAE) or sparsity weight (shallow). The Train page's "
       "Change while it trains section writes them; a run started with them repeats them exactly."),
]}


# The picture a model reads: its side and colour. Checked as the table's settings are, kept in every checkpoint,
# but a model takes the side and colour of the pictures it learns, so the form, links and command line do not
# offer them as choices (they go into FIELDS when a page lets a run pick its picture set).
PICTURE: dict[str, Field] = {f.name: f for f in [
    _f("side", "model", "int", "Picture side (pixels)",
       "The pictures' width and height: 28 for MNIST and Fashion-MNIST, 32 or 64 for a picture set",
       low=28, high=64, step=4, values=SIDES),
    _f("color", "model", "choice", "Colour", "grey: one channel per pixel · rgb: three (red, green, blue)",
       choices=COLORS, choice_labels={"grey": "grey", "rgb": "colour (RGB)"}),
]}


# ---------------------------------------------------------------------------------------------- who uses what
def fields_for(family: str) -> tuple[str, ...]:
    """The settings a model of `family` lets you choose (the form draws these). The rest keep their defaults:
    either fixed for this family (`Field.fixed`: a VAE's sigmoid output) or never read (a conv model's hidden)."""
    return tuple(name for name, f in FIELDS.items() if family in f.families)


def is_on(value) -> bool:
    """A setting that turns something on: not 0, empty, off or 'none' (text as the form holds it counts too)."""
    if isinstance(value, str):
        return value.strip() not in ("", "none")
    return bool(value)


def used_by(name: str, *configs) -> bool:
    """Whether setting `name` has an effect on a run with these settings: configs (dataclasses) or mappings of
    field name -> value, merged. False when the model's family never reads it (a shallow model's `latent`) or
    when the setting it needs is off (`noise_level` with `noise="none"`). Names outside the table are used."""
    f = FIELDS.get(name)
    if f is None:
        return True
    values = merged(*configs)
    if "family" in values and values["family"] not in f.families and values["family"] not in f.fixed:
        return False
    return f.needs is None or f.needs not in values or is_on(values[f.needs])


def merged(*configs) -> dict:
    """Configs (dataclasses) or mappings merged into one mapping of field name -> value."""
    out = {}
    for c in configs:
        if is_dataclass(c):
            out.update({f.name: getattr(c, f.name) for f in dataclass_fields(c)})
        elif c is not None:
            out.update(c)
    return out


def validate(config, section: str, family: str | None = None) -> None:
    """Raise ValueError naming the first setting of `config` (a config of `section`) that the table does not allow:
    'TrainConfig.epochs must be an integer from 1 to 1000, got 0'. A model's settings are checked as its `family`
    takes them: a fixed one must hold its value; numbers it never reads are not checked (choices and switches are)."""
    for f in (*FIELDS.values(), *PICTURE.values()):
        if f.config != section:
            continue
        value = getattr(config, f.name)
        if family in f.fixed:
            if value != f.fixed[family]:
                want = _num(f.fixed[family]) if isinstance(f.fixed[family], float) else repr(f.fixed[family])
                raise ValueError(f"{type(config).__name__}.{f.name} must be {want} {f.fixed_why}, got {value!r}")
            continue
        if family is not None and family not in f.families and f.kind not in ("choice", "bool"):
            continue
        rule = f.for_family(family)
        if not rule.accepts(value):
            whose = f" for the {family} family" if family in f.rules else ""
            raise ValueError(f"{type(config).__name__}.{f.name} must be {rule.allowed()}{whose}, got {value!r}")
