"""The Your images page (app_pages/images.py, ui/pictures.py): a zip made here with Pillow is uploaded, previewed
(classes, counts, layout, skipped files), trained on through the run service (the model joins the visitor's
models), and its anomalies measured; a refused zip keeps the set before it; another visitor sees nothing of it."""
from __future__ import annotations

import gc
import io
import time
import zipfile

import numpy as np
import pytest
import streamlit as st
from PIL import Image, ImageDraw
from streamlit.testing.v1 import AppTest

from aecore.engine import checkpoint
from aecore.engine.checkpoint import load as load_checkpoint
from aecore.engine.data import IMAGES, DataConfig, cache_dir, load, load_picture_set, save_picture_set
from aecore.engine.images import LOCAL, ImageSetConfig, ImageSetError, PictureLimits, load_images
from aecore.engine.models import ModelConfig, build
from aecore.engine.train import RunSpec, TrainConfig
from aecore.runs import TaskSpec
from app_helpers import APP, WAIT, goto, texts
from ui.pictures import KEY, Shelf
from ui.visitor import Lockers

pytestmark = pytest.mark.usefixtures("app_environment")
PAGE = "app_pages/images.py"
K = "images."


def png(picture: Image.Image) -> bytes:
    buf = io.BytesIO()
    picture.save(buf, format="PNG")
    return buf.getvalue()


def square(rng: np.random.Generator, scratch: bool = False, mask: list | None = None) -> Image.Image:
    """A 32×32 picture: a coloured square on black, at a slightly different place; a scratch is a white line
    (drawn into `mask` too, a list that receives its MVTec mask picture)."""
    im = Image.new("RGB", (32, 32), (0, 0, 0))
    d = ImageDraw.Draw(im)
    x, y = rng.integers(6, 10, size=2)
    colour = tuple(int(v) for v in rng.integers(120, 230, size=3))
    d.rectangle([x, y, x + 14, y + 14], fill=colour)
    if scratch:
        line = [(2, int(rng.integers(2, 30))), (29, int(rng.integers(2, 30)))]
        d.line(line, fill=(255, 255, 255), width=2)
        if mask is not None:
            m = Image.new("L", (32, 32), 0)
            ImageDraw.Draw(m).line(line, fill=255, width=2)
            mask.append(m)
    return im


def mvtec_zip(n_good: int = 40, n_scratch: int = 10, extra: dict | None = None) -> bytes:
    """An MVTec AD layout: train/good (the first n_good - 8), test/good (8), test/scratch, and a text file."""
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for i in range(n_good):
            where = "train" if i < n_good - 8 else "test"
            z.writestr(f"squares/{where}/good/{i:03d}.png", png(square(rng)))
        for i in range(n_scratch):
            mask = []
            z.writestr(f"squares/test/scratch/{i:03d}.png", png(square(rng, scratch=True, mask=mask)))
            z.writestr(f"squares/ground_truth/scratch/{i:03d}_mask.png", png(mask[0]))
        z.writestr("squares/test/scratch/notes.txt", "not a picture")
        for name, blob in (extra or {}).items():
            z.writestr(name, blob)
    return buf.getvalue()


def open_page() -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    assert texts(at.title) == ["Your images"]
    return at


def upload(at: AppTest, name: str, blob: bytes) -> AppTest:
    at.get("file_uploader")[0].set_value((name, blob, "application/zip")).run()
    assert not at.exception, at.exception
    return at


def page_text(at: AppTest) -> str:
    return "\n".join(texts(at.markdown) + texts(at.caption))


def test_upload_shows_the_set_as_the_models_read_it():
    at = upload(open_page(), "squares.zip", mvtec_zip())
    assert not at.error
    text = page_text(at)
    assert "**MVTec AD layout**: trained on train/good, tested on good and 1 defect class (with masks)" in text
    assert "**32×32**, **colour (RGB)**" in text
    assert "| good | 32 | 8 |" in text and "| scratch | 0 | 10 |" in text
    captions = [img.proto.imgs[0].caption for img in at.get("image")]
    assert captions == ["good: the first 10 pictures", "scratch: the first 10 pictures"]   # a grid per class
    skipped = at.dataframe[0].value
    assert list(skipped["file"]) == ["squares/test/scratch/notes.txt"] and "not a picture" in skipped["reason"][0]
    # the set is saved under this visitor's own folder of the cache, and reads back as the same pictures
    mine = list((cache_dir() / "pictures").glob("*/*.npz"))
    assert len(mine) == 1
    d = load(DataConfig(dataset=IMAGES, images=str(mine[0])))
    assert tuple(d.train.images.shape) == (32, 3, 32, 32) and tuple(d.test.images.shape) == (18, 3, 32, 32)


def test_a_refused_zip_explains_and_keeps_the_set_before_it():
    at = upload(open_page(), "squares.zip", mvtec_zip())
    bad = io.BytesIO()
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("../x.png", png(square(np.random.default_rng(1))))
    at = upload(at, "climb.zip", bad.getvalue())
    assert len(at.error) == 1 and "These pictures were not used." in at.error[0].value and "x.png" in at.error[0].value
    assert at.selectbox(key=K + "pick").value is not None
    assert "squares" in at.selectbox(key=K + "pick").format_func(at.selectbox(key=K + "pick").value)
    assert "| good | 32 | 8 |" in page_text(at)


def test_removing_a_set_deletes_its_file():
    at = upload(open_page(), "squares.zip", mvtec_zip())
    (saved,) = (cache_dir() / "pictures").glob("*/*.npz")
    at.button(key=K + "btn_remove").click().run()
    assert not at.exception and not saved.exists()
    assert "No pictures yet: upload a .zip above." in texts(at.info)


def test_another_visitor_does_not_see_the_set():
    upload(open_page(), "squares.zip", mvtec_zip())
    other = open_page()                                       # a new session: no cookie, a visitor of its own
    assert not other.get("file_uploader")[0].value
    assert "No pictures yet: upload a .zip above." in texts(other.info)
    assert not [s for s in other.selectbox if s.key == K + "pick"]


def wait_for_run_end(at: AppTest, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while True:
        at.run()
        assert not at.exception, at.exception
        progress = [p.proto.text for p in at.get("progress")]
        if progress and progress[0].startswith(("finished", "stopped", "failed")) \
                and not at.button(key=K + "btn_start").disabled:
            return
        assert time.monotonic() < deadline, f"the run did not end in {timeout} s: {progress}"
        time.sleep(0.3)


def test_train_through_the_run_service_then_find_the_anomalies(started_jobs):
    at = upload(open_page(), "squares.zip", mvtec_zip())
    at.number_input(key=K + "epochs").set_value(2)
    at.text_input(key=K + "channels").set_value("8,4").run()
    assert at.checkbox(key=K + "good_only").value
    at.button(key=K + "btn_start").click().run()
    assert not at.exception and not at.error
    (job,) = started_jobs
    assert job.spec.data.dataset == IMAGES and job.spec.data.classes == (0,)
    assert job.train_size == 32                                # the good training pictures only
    assert job.spec.model.side == 32 and job.spec.model.color == "rgb"
    wait_for_run_end(at)
    assert job.snapshot().state == "finished"
    meta = load_checkpoint(job.checkpoint_bytes)[1]
    assert meta["picture_set"]["class_names"] == ["good", "scratch"] and meta["picture_set"]["side"] == 32
    assert meta["picture_set"]["name"] == "squares" and meta["picture_set"]["fit"] == "letterbox"
    at.run()
    assert any("conv on squares" in o for o in at.sidebar.selectbox[0].options)   # joined the visitor's models
    captions = [img.proto.imgs[0].caption for img in at.get("image")]
    assert "conv on squares's reconstructions below them" in captions[-1] and "(good, good, good, good, good, " \
        "scratch" in captions[-1]

    # Anomalies: the lab's recipe and PCA, trained on the good pictures, measured on the test pictures.
    at.number_input(key=K + "detect_epochs.conv-code").set_value(2)
    at.button(key=K + "btn_detect").click().run()
    assert not at.exception and not at.error
    detection = started_jobs[-1]                               # a run of the run service, as any training
    assert len(started_jobs) == 2 and isinstance(detection.spec, TaskSpec)
    assert detection.spec.config.recipe == "conv-code" and detection.spec.config.epochs == 2
    assert at.button(key=K + "btn_detect").disabled           # one detection of a set at a time
    deadline = time.monotonic() + WAIT
    while not at.metric:
        assert time.monotonic() < deadline, [p.proto.text for p in at.get("progress")]
        time.sleep(0.3)
        at.run()
        assert not at.exception and not at.error
    assert detection.snapshot().state == "finished"
    metrics = {m.label: float(m.value) for m in at.metric}
    assert set(metrics) == {"image AUROC, recipe", "image AUROC, PCA", "pixel AUROC, recipe", "pixel AUROC, PCA"}
    assert all(0.0 <= v <= 1.0 for v in metrics.values())
    assert metrics["image AUROC, PCA"] > 0.7          # a bright line on a dark square: even PCA sees most of them
    text = page_text(at)
    assert "| scratch |" in text and "| PCA | best F1, in hindsight |" in text
    good_only = next(line for line in text.splitlines() if line.startswith("| conv-code | from good pictures only"))
    caught, alarms, passed, missed = map(int, good_only.split(" | ")[3:7])
    assert caught + missed == 10 and alarms + passed == 8      # every test picture counted once
    assert len(at.get("plotly_chart")) == 1
    galleries = [img.proto.imgs for img in at.get("image")][-2:]
    assert [len(g) for g in galleries] == [8, 8] and all(c.caption.startswith("good") for c in galleries[1])
    # the Anomalies page lists the set with the figures just found, and points to this page
    goto(at, "app_pages/anomalies.py")
    row = next(line for line in page_text(at).splitlines() if line.startswith("| squares"))
    assert f"| {metrics['image AUROC, recipe']:.3f} (conv-code) | {metrics['image AUROC, PCA']:.3f} |" in row


def test_a_folder_on_this_server_is_read_and_the_hosted_demo_offers_none(tmp_path, monkeypatch):
    rng = np.random.default_rng(2)
    for name, n in (("good", 6), ("odd", 3)):
        (tmp_path / "mine" / name).mkdir(parents=True)
        for i in range(n):
            square(rng, scratch=name == "odd").save(tmp_path / "mine" / name / f"{i}.png")
    at = open_page()
    at.text_input(key=K + "folder").set_value(str(tmp_path / "mine")).run()
    at.button(key=K + "btn_folder").click().run()
    assert not at.exception and not at.error
    assert "**One sub-folder per class**; 20% of each class held out for testing" in page_text(at)
    assert "| good | 5 | 1 |" in page_text(at) and "| odd | 2 | 1 |" in page_text(at)
    monkeypatch.setenv("AELAB_PROFILE", "hosted")
    st.cache_resource.clear()                                  # the run service reads its profile once
    hosted = open_page()
    assert not [t for t in hosted.text_input if t.key == K + "folder"]


# ------------------------------------------------------------------------------------------- the shelf itself
def image_set(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for i in range(n):
            z.writestr(f"set{seed}/{i}.png", png(square(rng)))
    return load_images(buf.getvalue(), ImageSetConfig(side=32))


def test_a_shelf_counts_its_pictures_against_the_limits_and_keeps_what_runs_use(tmp_path):
    limits = PictureLimits(10**6, 30, 64, who="this test's server")
    shelf = Shelf(tmp_path / "shelf")
    first = shelf.add(image_set(20, seed=1), limits)
    assert first.path.is_file() and first.path.parent == tmp_path / "shelf"
    second = shelf.add(image_set(20, seed=2), limits)           # 40 > 30: the older set makes room
    assert list(shelf.sets) == [second.key] and not first.path.exists()
    with pytest.raises(ImageSetError, match="this test's server keeps up to .* 30 pictures per visitor"):
        shelf.add(image_set(20, seed=3), limits, in_use={str(second.path)})   # a run trains on the one held
    assert list(shelf.sets) == [second.key] and second.path.is_file()
    assert not shelf.remove(second.key, in_use={str(second.path)}) and shelf.remove(second.key)
    assert not second.path.exists() and shelf.shown() is None
    shelf.add(image_set(5, seed=4), limits)
    del shelf
    gc.collect()
    assert not (tmp_path / "shelf").exists()                    # the visitor's folder goes with their shelf


def test_a_dropped_locker_takes_the_visitors_files_with_it(tmp_path):
    lockers = Lockers(most=1)
    shelf = lockers.get("a" * 32).values[KEY] = Shelf(tmp_path / "a")
    shelf.add(image_set(4), LOCAL)
    del shelf
    assert (tmp_path / "a").exists()
    lockers.get("b" * 32)                                        # room for one visitor only: the first goes
    gc.collect()
    assert not (tmp_path / "a").exists()


def test_a_run_on_a_picture_set_names_it_and_its_checkpoint_describes_it(tmp_path):
    im = image_set(10)
    path = save_picture_set(tmp_path / "set.npz", im.data, im.describe(), im.masks)
    train, test, masks, about = load_picture_set(path)
    assert train.images.equal(im.data.train.images) and test.labels.equal(im.data.test.labels) and masks is None
    cfg = DataConfig(dataset=IMAGES, images=str(path))
    meta = RunSpec("r", ModelConfig(side=32, color="rgb"), cfg, TrainConfig()).meta("cpu")
    assert meta["picture_set"] == im.describe() == about
    assert "picture_set" not in RunSpec("r", ModelConfig(), DataConfig(), TrainConfig()).meta("cpu")
    for bad in (dict(dataset=IMAGES), dict(images=str(path)), dict(dataset=IMAGES, images="x", classes=(-1,))):
        with pytest.raises(ValueError, match="DataConfig"):
            DataConfig(**bad)
    path.unlink()
    with pytest.raises(Exception, match="not found"):
        load(cfg)


def picture_model(at: AppTest, family: str, **model) -> tuple[AppTest, str]:
    """The visitor's squares set (uploaded on Your images), and a model of `family` for it uploaded as a
    checkpoint on the Train page, as one trained on it is: its data config names the set's file. Returns the
    session and the checkpoint's bytes."""
    (saved,) = (cache_dir() / "pictures").glob("*/*.npz")
    about = load_picture_set(saved)[3]
    cfg = ModelConfig(family=family, side=32, color="rgb", **model)
    meta = {"name": family, "data": DataConfig(dataset=IMAGES, images=str(saved)), "picture_set": about}
    blob = checkpoint.to_bytes(build(cfg, seed=0), meta)
    goto(at, "app_pages/train.py")
    at.get("file_uploader")[0].set_value((f"{family}.safetensors", blob, "application/octet-stream")).run()
    assert not at.exception, at.exception
    assert at.sidebar.selectbox[0].value == f"session:{family}"       # the active model now
    return at, blob


def images_of(at: AppTest) -> list:
    return [(img.proto.imgs[0].caption, img.proto.imgs[0]) for img in at.get("image")]


@pytest.mark.parametrize("family, model", [("deep", dict(hidden=(64, 2))), ("conv", dict(channels=(8, 4)))])
def test_the_other_pages_show_a_picture_set_model_on_its_own_pictures(family, model):
    at = upload(open_page(), "squares.zip", mvtec_zip())
    at, blob = picture_model(at, family, **model)

    goto(at, "app_pages/inspect.py")
    assert not at.error
    assert "trained on squares (32×32 colour, letterbox)" in page_text(at)
    recon = at.dataframe[0].value
    assert set(recon["class"]) <= {"good", "scratch"} and len(recon) == 10 and (recon["error (MSE)"] > 0).all()
    captions = [c for c, _ in images_of(at)]
    if family == "deep":
        assert "each 3,072-vector shown 32×32 in colour" in " ".join(captions)
    else:
        assert any(c.startswith("stage 1: 8 maps 16x16") for c in captions)
    assert "row 1: original · row 2: reconstruction" in captions

    goto(at, "app_pages/latent.py")
    assert not at.error and len(at.get("vega_lite_chart")) == 1          # the codes of the test pictures
    assert any("codes from" in c for c, _ in images_of(at))

    goto(at, "app_pages/generate.py")
    assert not at.error
    text = page_text(at)
    assert "Not judged: the classifier reads MNIST digits" in text and "learned squares (32×32 colour" in text
    assert any("from the code of test picture #" in c for c, _ in images_of(at))

    goto(at, "app_pages/compare.py")
    at.multiselect(key="compare.picked").set_value([f"session:{family}", "shipped:pytorch-784-200"]).run()
    assert not at.exception and not at.error
    captions = [c for c, _ in images_of(at)]
    assert captions[0].startswith("originals: squares (32×32 colour, letterbox) test images #")
    assert captions[1].startswith(f"{family} · mean squared error on these")
    assert captions[2].startswith("originals: MNIST test images #")   # each model on its own data set
    figures = {r["name"]: r["data"] for r in at.dataframe[2].value.to_dict("records")}
    assert figures == {family: "images: squares", "pytorch-784-200": "mnist"}

    # Draw rebuilds drawn digits: a model of 32×32 colour pictures says it cannot, rather than failing on one
    goto(at, "app_pages/draw.py")
    assert any("reads 32×32 colour pictures" in t for t in texts(at.info)) and not at.error

    # Another visitor with the same checkpoint: the set is not theirs, and the pages say so (nothing raised).
    other = open_page()
    goto(other, "app_pages/train.py")
    other.get("file_uploader")[0].set_value((f"{family}.safetensors", blob, "application/octet-stream")).run()
    for page in ("app_pages/inspect.py", "app_pages/latent.py", "app_pages/generate.py"):
        goto(other, page)
        assert any("learned squares, which is not on this server for you" in t for t in texts(other.info)), page
        assert not other.error
