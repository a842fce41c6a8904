"""The images a model learned, for the pages that show it (Inspect, Latent space, Generate, Compare): MNIST's and
Fashion-MNIST's from the server's shared splits (ui.caches), a picture set from this visitor's own shelf
(ui.pictures), never from anywhere else.

A picture-set model's checkpoint names its set by the file it trained on (DataConfig.images); that file is looked
for only among the sets of the visitor who asks. A checkpoint that names some other path (another visitor's set, a
file elsewhere on the server, a set removed since) gets "not on this server for you", with the names its
checkpoint recorded, and the pages show what needs no data (filters, the decoder's grid, samples).
"""
from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from aecore.engine.checkpoint import ModelEntry
from aecore.engine.data import CLASS_NAMES, IMAGES, Data, DataConfig, DataError, Split
from ui import caches, panels, pictures

TITLES = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}


@dataclass(frozen=True)
class ModelData:
    """The data a model learned, as a page needs it."""
    key: str                       # equal for models that learned the same images: the data set, or "images:<file>"
    name: str                      # in words: "MNIST", "bottles (64×64 colour, letterbox)"
    dataset: str                   # DataConfig.dataset: "mnist", "fashion-mnist" or "images"
    class_names: tuple[str, ...]   # one per label
    test: Split | None             # its test images, None when they are not here
    problem: str | None            # why test is None
    config: DataConfig             # as the checkpoint records it (MNIST's defaults when it says nothing)
    picture_set: pictures.PictureSet | None = None   # this visitor's set, for a picture-set model

    @property
    def pictures(self) -> bool:
        return self.dataset == IMAGES

    def splits(self) -> Data:
        """Train/validation/test as the model's run had them; DataError when they are not here."""
        if self.picture_set is not None:
            return self.picture_set.data(self.config)
        if self.pictures:
            raise DataError(self.problem or "the picture set is not on this server")
        return caches.data_for(self.config)


def config_of(entry: ModelEntry) -> DataConfig:
    """The data config a checkpoint records; MNIST's defaults for one that records none."""
    data = entry.meta.get("data")
    return data if isinstance(data, DataConfig) else DataConfig(dataset=entry.dataset)


def key_of(entry: ModelEntry) -> str:
    """What models share when they learned the same images (cheap: nothing is read)."""
    cfg = config_of(entry)
    return f"{IMAGES}:{cfg.images}" if cfg.dataset == IMAGES else cfg.dataset


def of(entry: ModelEntry) -> ModelData:
    """The data `entry` learned, with its test split when it is here for this visitor."""
    cfg = config_of(entry)
    if cfg.dataset != IMAGES:
        test, problem = caches.test_split(cfg.dataset)
        return ModelData(cfg.dataset, TITLES.get(cfg.dataset, cfg.dataset), cfg.dataset, CLASS_NAMES[cfg.dataset],
                         test, problem, cfg)
    about = entry.meta.get("picture_set") or {}
    names = tuple(str(n) for n in about.get("class_names") or ())
    ps = next((s for s in pictures.shelf().sets.values() if str(s.path) == cfg.images), None)
    if ps is None:
        title = str(about.get("name") or "a picture set")
        return ModelData(key_of(entry), title, IMAGES, names, None,
                         f"{entry.name} learned {title}, which is not on this server for you: a picture set stays "
                         "only while its visitor uses it. Upload it again on the Your images page to see it here.",
                         cfg)
    return ModelData(key_of(entry), ps.name, IMAGES, tuple(ps.images.class_names), ps.images.data.test, None, cfg, ps)


def explain_missing(md: ModelData) -> None:
    """Say why the test images are not shown: a picture set that is gone (with the way back), or MNIST's files
    missing (the download panel)."""
    if md.pictures:
        st.info(f"**The pictures are not here.** {md.problem}", icon=":material/image_not_supported:")
        st.page_link("app_pages/images.py", label="Your images", icon=":material/photo_library:")
    else:
        panels.data_error_box(md.problem)
        panels.data_missing(md.dataset)


def class_name(class_names, c) -> str:
    """Class c's name from a data set's names; its number when the names do not reach it."""
    c = int(c)
    return str(class_names[c]) if c < len(class_names) else str(c)


def noun(md: ModelData, plural: bool = False) -> str:
    """What one test image is called on a page: a digit (MNIST), an item (Fashion-MNIST), a picture (a set)."""
    word = {"mnist": "digit", "fashion-mnist": "image"}.get(md.dataset, "picture")
    return word + ("s" if plural else "")
