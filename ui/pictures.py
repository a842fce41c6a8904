"""A visitor's own picture sets: prepared once (aecore.engine.images), kept for that visitor only, and handed to the
run service and the picture lab as any data set is.

A visitor's sets live on their shelf, in their locker (ui.visitor: the token of their browser, as their models and
runs are), so another visitor never sees them. Each set is held in memory for the page and saved as one file
(aecore.engine.data.save_picture_set) under a folder of the shelf's own in the server's cache dir, because a run's
data config names its set by that file (DataConfig(dataset="images", images=<file>)) and its checkpoint records
what the file says about the set. The shelf holds at most MAX_SETS sets and, together, no more pictures than one
set may hold under the server's limits (the hosted demo's: 20,000); the oldest set that no active run of the
visitor trains on makes room first. The folder goes with the shelf: when the server drops the visitor's locker (idle
for hours, or the server's most), its finalizer removes it.
"""
from __future__ import annotations

import hashlib
import secrets
import shutil
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from aecore.engine import viz
from aecore.engine.data import IMAGES, Data, DataConfig, cache_dir, save_picture_set, split
from aecore.engine.images import HOSTED, LOCAL, ImageSet, ImageSetConfig, ImageSetError, PictureLimits, load_images
from aecore.labs import picturerun, pictureviews
from ui import panels, server, visitor as visitors

KEY = "pictures.shelf"      # in the visitor's locker values
MAX_SETS = 4                # sets a visitor keeps at once
FOLDER = "pictures"         # under the server's cache dir: one sub-folder per shelf
LAYOUTS = {"flat": "one folder of pictures: one class", "folders": "one sub-folder per class",
           "train-test": "train/ and test/ folders, one sub-folder per class"}


@dataclass(frozen=True, eq=False)
class PictureSet:
    """One prepared set: its key (the pictures' fingerprint and how they were made), its file and the set."""
    key: str
    path: Path
    images: ImageSet

    @property
    def name(self) -> str:
        c = self.images.config
        return f"{self.images.source_name} ({c.side}×{c.side} {'colour' if c.color == 'rgb' else 'grey'}, {c.fit})"

    @property
    def size(self) -> int:
        return len(self.images.data.train) + len(self.images.data.test)

    @property
    def good_class(self) -> int | None:
        """The class of normal pictures: MVTec's "good", or a class folder named good; None without one."""
        im = self.images
        if im.good_class is not None:
            return im.good_class
        return im.class_names.index("good") if "good" in im.class_names else None

    @property
    def detectable(self) -> bool:
        """Whether anomalies can be measured: good pictures to train on, and good and other ones to test on."""
        good, labels = self.good_class, self.images.data.test.labels
        return good is not None and bool((labels == good).any()) and bool((labels != good).any())

    def data_config(self, good_only: bool) -> DataConfig:
        return DataConfig(dataset=IMAGES, images=str(self.path), classes=(self.good_class,) if good_only else ())

    def data(self, cfg: DataConfig) -> Data:
        """The splits a run on `cfg` trains and tests on, from the set in memory (as data.load would read them)."""
        d = self.images.data
        return split(d.train, d.test, cfg)


class Shelf:
    """One visitor's picture sets (key -> PictureSet, oldest first) and the folder of their files, removed with
    the shelf. Thread-safe: a visitor's tabs share it."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.sets: dict[str, PictureSet] = {}
        self.current: str | None = None          # the set the page shows
        self.detections: dict[str, str] = {}     # set key -> the id of its last detection run
        self.found: dict[str, tuple] = {}        # set key -> (run id, Detection): kept after the server forgets it
        self._lock = threading.Lock()
        weakref.finalize(self, shutil.rmtree, str(folder), True)

    def add(self, images: ImageSet, limits: PictureLimits, in_use: set[str] = frozenset()) -> PictureSet:
        """Save `images` and keep it (a set made the same way from the same pictures replaces its copy); the
        oldest sets not in `in_use` (files active runs train on) go while the shelf holds too much. ImageSetError
        when the sets in use leave no room."""
        c = images.config
        key = f"{images.fingerprint}-{c.side}-{c.color}-{c.fit}-{c.test_fraction:g}-{c.seed}"
        with self._lock:
            path = self.folder / f"{key}.npz"
            if str(path) in in_use and key in self.sets:      # a run reads it: the same pictures, left as they are
                self.current = key
                return self.sets[key]
            self.sets.pop(key, None)
            new = len(images.data.train) + len(images.data.test)
            for old in [k for k, s in self.sets.items() if str(s.path) not in in_use]:
                if len(self.sets) < MAX_SETS and new + sum(s.size for s in self.sets.values()) <= limits.max_pictures:
                    break
                self._drop(old)
            held = sum(s.size for s in self.sets.values())
            if len(self.sets) >= MAX_SETS or new + held > limits.max_pictures:
                raise ImageSetError(f"{limits.who} keeps up to {MAX_SETS} sets and {limits.max_pictures:,} pictures "
                                    f"per visitor; your runs still train on sets of {held:,} pictures, and this one "
                                    f"has {new:,}. Let the runs end, then try again.")
            save_picture_set(path, images.data, images.describe(), images.masks)
            self.sets[key] = PictureSet(key, path, images)
            self.found.pop(key, None)                 # made anew: earlier results are not its own
            self.current = key
            return self.sets[key]

    def remove(self, key: str, in_use: set[str] = frozenset()) -> bool:
        """Forget a set and delete its file, unless a run trains on it; True when it went."""
        with self._lock:
            if key not in self.sets or str(self.sets[key].path) in in_use:
                return False
            self._drop(key)
            return True

    def _drop(self, key: str) -> None:
        self.detections.pop(key, None)
        self.found.pop(key, None)
        self.sets.pop(key).path.unlink(missing_ok=True)
        if self.current == key:
            self.current = next(reversed(self.sets), None)

    def shown(self) -> PictureSet | None:
        return self.sets.get(self.current) if self.current else None


# ------------------------------------------------------------------------------------------- this visitor's
def shelf() -> Shelf:
    """This visitor's shelf, made on first use (in their locker: a reload or another tab finds it again)."""
    values = visitors.locker().values
    found = values.get(KEY)
    if found is None:
        who = hashlib.sha256(visitors.token().encode()).hexdigest()[:24]   # the token itself never goes to disk
        found = values[KEY] = Shelf(cache_dir() / FOLDER / f"{who}-{secrets.token_hex(4)}")
    return found


def summary_rows() -> list[list[str]]:
    """This visitor's sets with their last anomaly figures (a table's rows), without making a shelf for a visitor
    who has none: [set, pictures, recipe's image AUROC, PCA's]."""
    mine = visitors.locker().values.get(KEY)
    rows = []
    for key, ps in (mine.sets.items() if mine is not None else ()):
        found = mine.found.get(key)
        f = found[1].figures if found else None
        rows.append([ps.name, f"{ps.size:,}", f"{f['image_auroc']:.3f} ({f['recipe']})" if f else "not measured yet",
                     f"{f['pca_image_auroc']:.3f}" if f else "–"])
    return rows


def limits() -> PictureLimits:
    """The hosted demo's limits on the hosted profile; a lab on one's own machine is roomier."""
    return HOSTED if server.hosted() else LOCAL


def in_use() -> set[str]:
    """The picture-set files this visitor's active runs train on (kept while those runs are)."""
    runs = server.run_registry().runs_of(visitors.token())
    return {r.spec.data.images for r in runs if r.active and getattr(r.spec.data, "dataset", None) == IMAGES}


def prepare(source, cfg: ImageSetConfig) -> PictureSet:
    """Read a folder path or zip bytes into a set on this visitor's shelf; ImageSetError (the visitor's message)
    when it is refused. The visitor's other sets stay as they were."""
    mine = shelf()
    mine.folder.mkdir(parents=True, exist_ok=True)
    images = load_images(source, cfg, limits=limits(), workdir=mine.folder)
    return mine.add(images, limits(), in_use())


# ------------------------------------------------------------------------------------------- showing a set
def layout_text(ps: PictureSet) -> str:
    """The layout recognised and what it means for training and testing, in words."""
    im = ps.images
    if im.layout == "mvtec":
        defects = len(im.class_names) - 1
        masks = " (with masks)" if im.masks is not None and bool(im.masks.any()) else ""
        return (f"**MVTec AD layout**: trained on train/good, tested on good and {defects} defect "
                f"class{'es' if defects != 1 else ''}{masks}")
    each = " of each class" if im.layout == "folders" else ""
    held = "" if im.layout == "train-test" else f"; {im.config.test_fraction:.0%}{each} held out for testing"
    return f"**{LAYOUTS[im.layout].capitalize()}**{held}"


def preview(ps: PictureSet) -> None:
    """The set as the models read it: layout, side, colour, counts per class and split, ten pictures per class
    (in colour when the set is), and every skipped file with its reason."""
    im, c = ps.images, ps.images.config
    train, test = im.data.train, im.data.test
    st.markdown(f"{layout_text(ps)} · **{c.side}×{c.side}**, **{'colour (RGB)' if c.color == 'rgb' else 'grey'}**, "
                f"{c.fit} · {ps.size:,} pictures")
    st.markdown(panels.markdown_table(["class", "train", "test"], [
        [name, f"{int((train.labels == i).sum()):,}", f"{int((test.labels == i).sum()):,}"]
        for i, name in enumerate(im.class_names)]))
    zoom = 3 if c.side <= 32 else 2
    for name, pics in zip(im.class_names, pictureviews.class_samples(im.data, len(im.class_names))):
        st.image(viz.grid(pics, nrow=10, zoom=zoom), caption=f"{name}: the first {len(pics)} pictures",
                 alt=f"The first {len(pics)} pictures of class {name}.")
    if im.skipped:
        with st.expander(f"{len(im.skipped):,} file{'s' if len(im.skipped) != 1 else ''} skipped"):
            st.dataframe({"file": [s.file for s in im.skipped], "reason": [s.reason for s in im.skipped]},
                         hide_index=True, width="stretch")


def reconstructions(ps: PictureSet, model, name: str) -> None:
    """A few test pictures of every class (top row) and how `model` rebuilds them (bottom row)."""
    test, names = ps.images.data.test, ps.images.class_names
    picks = pictureviews.test_picks(test, len(names))
    if not picks:
        return
    block = pictureviews.originals_and_reconstructions(model, test, picks)
    st.image(viz.grid(block, nrow=len(picks), zoom=3 if ps.images.config.side <= 32 else 2),
             caption=f"Test pictures ({', '.join(names[int(test.labels[i])] for i in picks)}) and "
                     f"{name}'s reconstructions below them",
             alt=f"{len(picks)} test pictures in the top row, their reconstructions by the model in the bottom row.")


# ------------------------------------------------------------------------------------------- anomalies
def threshold_table(det: picturerun.Detection) -> str:
    """The two thresholds of both detectors with their confusion counts, as Markdown."""
    f, rows = det.figures, []
    for who, th in ((f["recipe"], f["threshold"]), ("PCA", f["pca_threshold"])):
        for kind, label in (("good_only", f"from good pictures only ({th['false_alarm']:.0%} false alarms "
                                          "wanted)"), ("best_f1", "best F1, in hindsight")):
            r = th[kind]
            rows.append([who, label, f"{r['value']:.4g}", str(r["tp"]), str(r["fp"]), str(r["tn"]), str(r["fn"]),
                         f"{r['precision']:.0%}", f"{r['recall']:.0%}", f"{r['f1']:.2f}"])
    return panels.markdown_table(["detector", "threshold", "score", "caught", "false alarms", "passed good", "missed",
                           "precision", "recall", "F1"], rows)
