"""aecore.engine.data: IDX reading, where the files are looked for, malformed files, splits, noise."""
from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch

from aecore.engine import data as D
from aecore.engine import fetch
from aecore.engine.data import (DEFORM_AT_1, DataConfig, DataError, Split, add_noise, deform, load, load_split, read_idx,
                         to_float)
from idx_helpers import STEMS, idx_bytes, images_and_labels, write_dataset, write_idx
from local_mirror import closed_port_url, tiny_files

TRAIN_IMAGES, TRAIN_LABELS = STEMS["train"]


def _marked(arrays: dict, value: int) -> dict:
    """A copy of the tiny data set whose first training pixel is `value`, to tell folders apart."""
    out = {k: v.copy() for k, v in arrays.items()}
    out["train-images"][0, 0, 0] = value
    return out


def _which(split: Split) -> int:
    return int(split.images[0, 0, 0])


# ---------------------------------------------------------------------------------------------- round trip
@pytest.mark.parametrize("suffix", [".gz", ""])
@pytest.mark.parametrize("shape", [(7,), (5, 28, 28)])
def test_read_idx_round_trip(tmp_path, suffix, shape):
    rng = np.random.default_rng(0)
    array = rng.integers(0, 256, size=shape, dtype=np.uint8)
    path = write_idx(tmp_path / f"f-idx{suffix}", array)
    got = read_idx(path)
    assert got.dtype == np.uint8
    assert got.shape == shape
    np.testing.assert_array_equal(got, array)


@pytest.mark.parametrize("gz", [True, False])
def test_load_split_round_trip(make_dataset, arrays, gz):
    root = make_dataset(gz=gz)
    for split, n in (("train", 64), ("test", 32)):
        s = load_split("mnist", split, data_dir=root)
        assert s.images.dtype == torch.uint8 and s.images.shape == (n, 28, 28)
        assert s.labels.dtype == torch.int64 and s.labels.shape == (n,)
        np.testing.assert_array_equal(s.images.numpy(), arrays[f"{split}-images"])
        np.testing.assert_array_equal(s.labels.numpy(), arrays[f"{split}-labels"])


def test_load_gives_train_and_test(mnist_dir):
    d = load(DataConfig(), data_dir=mnist_dir)
    assert (len(d.train), len(d.test)) == (64, 32)
    assert d.val is None


# ---------------------------------------------------------------------------------------------- look-up order
def test_explicit_dir_beats_env_beats_local_data(tmp_path, arrays, monkeypatch):
    explicit, env, local = tmp_path / "explicit", tmp_path / "env", tmp_path / "data"   # cwd is tmp_path
    for root, value in ((explicit, 11), (env, 22), (local, 33)):
        write_dataset(root, _marked(arrays, value))
    monkeypatch.setenv(D.ENV_VAR, str(env))
    assert _which(load_split("mnist", "train", data_dir=explicit)) == 11
    assert _which(load_split("mnist", "train")) == 22
    monkeypatch.delenv(D.ENV_VAR)
    assert _which(load_split("mnist", "train")) == 33


def test_env_var_used_when_no_local_data(mnist_dir, monkeypatch):
    with pytest.raises(DataError):
        load_split("mnist", "train")
    monkeypatch.setenv(D.ENV_VAR, str(mnist_dir))
    assert len(load_split("mnist", "train")) == 64


@pytest.mark.parametrize("how", ["explicit", "env", "local"])
def test_torchvision_layout(tmp_path, arrays, monkeypatch, how):
    root = tmp_path / "data" if how == "local" else tmp_path / "tv"
    folder = write_dataset(root, _marked(arrays, 44), gz=False, layout="torchvision")
    assert folder == root / "MNIST" / "raw"
    if how == "env":
        monkeypatch.setenv(D.ENV_VAR, str(root))
    s = load_split("mnist", "train", data_dir=root if how == "explicit" else None)
    assert _which(s) == 44 and len(s) == 64


@pytest.fixture
def no_debian_fashion(monkeypatch, tmp_path):
    monkeypatch.setattr(D, "DEBIAN_FASHION", tmp_path / "no-such-debian-folder")


@pytest.mark.parametrize("layout", ["fashion", "fashion-torchvision"])
def test_fashion_found_in_its_sub_folder(tmp_path, arrays, monkeypatch, no_debian_fashion, layout):
    root = tmp_path / "datasets"
    write_dataset(root, _marked(arrays, 55))                  # flat: MNIST
    write_dataset(root, _marked(arrays, 66), layout=layout)   # Fashion-MNIST in its own sub-folder
    monkeypatch.setenv(D.ENV_VAR, str(root))
    assert _which(load_split("fashion-mnist", "train")) == 66
    assert _which(load_split("mnist", "train")) == 55


def test_fashion_not_taken_from_flat_mnist_folder(mnist_dir, monkeypatch, no_debian_fashion):
    monkeypatch.setenv(D.ENV_VAR, str(mnist_dir))
    assert len(load_split("mnist", "train")) == 64
    with pytest.raises(DataError, match="fashion-mnist train data not found"):
        load_split("fashion-mnist", "train")


def test_debian_fashion_folder_is_searched_last_and_only_for_fashion(tmp_path):
    fashion = D.candidate_dirs("fashion-mnist", tmp_path / "x")
    assert fashion[0] == tmp_path / "x"          # an explicit folder may hold the flat files
    debian = fashion.index(D.DEBIAN_FASHION)
    assert fashion.index(D.Path("data", "fashion-mnist")) < debian
    assert all(D.DEBIAN_FASHION in p.parents for p in fashion[debian + 1:])
    mnist = D.candidate_dirs("mnist", tmp_path / "x")
    assert not any(p == D.DEBIAN_FASHION or D.DEBIAN_FASHION in p.parents for p in mnist)


@pytest.mark.parametrize("dataset", ["mnist", "fashion-mnist"])
def test_missing_data_lists_every_searched_place(tmp_path, monkeypatch, no_debian_fashion, dataset):
    explicit, env = tmp_path / "empty-explicit", tmp_path / "empty-env"
    explicit.mkdir()
    env.mkdir()
    monkeypatch.setenv(D.ENV_VAR, str(env))
    with pytest.raises(DataError) as info:
        load_split(dataset, "test", data_dir=explicit)
    message = str(info.value)
    assert "not found" in message
    assert D.ENV_VAR in message
    assert "t10k-images-idx3-ubyte" in message
    searched = D.candidate_dirs(dataset, explicit)
    assert len(searched) >= 3
    for place in searched:
        assert f"- {place}\n" in message


def test_unknown_dataset_is_a_data_error():
    with pytest.raises(DataError, match="unknown data set"):
        load_split("cifar", "train")


# ---------------------------------------------------------------------------------------------- malformed files
def _damage(folder, name, new_bytes):
    path = folder / name
    path.write_bytes(new_bytes(path.read_bytes()))
    return path


def _regzip(f):
    """Apply f to the uncompressed bytes of a .gz file."""
    return lambda raw: gzip.compress(f(gzip.decompress(raw)))


MALFORMED = {
    # case: (gz, file, transform of the file's bytes, words the message must hold)
    "truncated": (False, TRAIN_IMAGES, lambda b: b[:-100], ["truncated"]),
    "bad magic": (False, TRAIN_IMAGES, lambda b: b"\x12\x34" + b[2:], ["magic"]),
    "too short": (False, TRAIN_LABELS, lambda b: b[:3], ["too short"]),
    "wrong count": (True, TRAIN_IMAGES, _regzip(lambda b: b[:4] + (65).to_bytes(4, "big") + b[8:]),
                    ["promises", "(65, 28, 28)"]),
    "truncated gzip": (True, TRAIN_IMAGES, lambda b: b[: len(b) // 2], ["truncated"]),
    "corrupt gzip": (True, TRAIN_IMAGES, lambda b: b[:30] + bytes(v ^ 0x5A for v in b[30:80]) + b[80:],
                     ["cannot read"]),
    "not gzip": (True, TRAIN_LABELS, lambda b: b"plain text, no gzip header", ["not gzip"]),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_file_names_file_and_problem(make_dataset, case):
    gz, stem, transform, words = MALFORMED[case]
    folder = make_dataset(gz=gz)
    name = stem + (".gz" if gz else "")
    _damage(folder, name, transform)
    with pytest.raises(DataError) as info:   # a DataError, not a numpy / zlib / struct error
        load_split("mnist", "train", data_dir=folder)
    message = str(info.value)
    assert name in message
    for word in words:
        assert word in message


def test_corrupt_gzip_body_is_a_data_error(tmp_path):
    """Damage inside the deflate stream raises zlib.error from gzip; read_idx must turn it into a DataError."""
    images, _ = images_and_labels(64, seed=3)
    raw = bytearray(gzip.compress(idx_bytes(images)))
    raw[40:60] = bytes(range(200, 220))
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz"):
        read_idx(path)


def test_label_count_must_match_images(make_dataset, arrays):
    contents = dict(arrays, **{"train-labels": arrays["train-labels"][:63]})
    folder = make_dataset(contents=contents)
    with pytest.raises(DataError) as info:
        load_split("mnist", "train", data_dir=folder)
    assert "train-labels-idx1-ubyte.gz" in str(info.value)
    assert "63 labels for 64 images" in str(info.value)


def test_images_must_be_28_by_28(make_dataset, arrays):
    contents = dict(arrays, **{"train-images": arrays["train-images"][:, :27, :27]})
    folder = make_dataset(contents=contents)
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz.*\(64, 27, 27\)"):
        load_split("mnist", "train", data_dir=folder)


# ---------------------------------------------------------------------------------------------- download
# The fetcher itself is tested in test_fetch.py; here: fetch.load (download on a miss) against a local mirror.
@pytest.fixture
def tiny_mirror(serve, arrays, monkeypatch):
    """A local mirror of the tiny data set, named by AECORE_MNIST_MIRROR, whose MD5s are the defaults."""
    files, sums = tiny_files(arrays)
    monkeypatch.setitem(fetch.CHECKSUMS, "mnist", sums)
    mirror = serve(files)
    monkeypatch.setenv(fetch.MIRRORS_ENV, mirror.url)
    return mirror


def test_download_fetches_into_the_cache_where_it_is_found_next_time(tiny_mirror, arrays):
    with pytest.raises(DataError, match="--download"):
        load(DataConfig())
    d = fetch.load(DataConfig())
    assert (len(d.train), len(d.test)) == (64, 32)
    np.testing.assert_array_equal(d.test.images.numpy(), arrays["test-images"])
    assert tiny_mirror.requests == {name: 1 for name in fetch.FILES}
    assert sorted(p.name for p in (fetch.cache_dir() / "mnist").glob("*.gz")) == sorted(fetch.FILES)
    assert len(load(DataConfig()).train) == 64                        # no setting needed now
    assert len(fetch.load(DataConfig()).train) == 64         # nor a second download
    assert tiny_mirror.requests == {name: 1 for name in fetch.FILES}


def test_download_goes_to_an_explicit_folder(tiny_mirror, tmp_path):
    assert len(fetch.load_split("mnist", "train", data_dir=tmp_path / "mine")) == 64
    assert sorted(p.name for p in (tmp_path / "mine").glob("*.gz")) == sorted(fetch.FILES)
    assert not (fetch.cache_dir() / "mnist").exists()


def test_no_download_when_the_files_are_found(mnist_dir, monkeypatch):
    monkeypatch.setenv(fetch.MIRRORS_ENV, closed_port_url())   # would fail if asked
    assert len(fetch.load(DataConfig(), data_dir=mnist_dir).train) == 64


def test_download_offline_is_a_data_error(tmp_path, monkeypatch):
    url = closed_port_url()
    monkeypatch.setenv(fetch.MIRRORS_ENV, url)
    with pytest.raises(DataError) as info:
        fetch.load(DataConfig())
    message = str(info.value)
    assert "downloading mnist" in message and url in message
    assert D.ENV_VAR in message and fetch.MIRRORS_ENV in message


def test_cache_is_searched_after_local_data_and_before_debian(tmp_path, arrays, monkeypatch):
    write_dataset(fetch.cache_dir() / "fashion-mnist", _marked(arrays, 77))
    monkeypatch.setattr(D, "DEBIAN_FASHION", tmp_path / "debian")
    write_dataset(D.DEBIAN_FASHION, _marked(arrays, 88))
    assert _which(load_split("fashion-mnist", "train")) == 77
    write_dataset(tmp_path / "data", _marked(arrays, 99), layout="fashion")   # cwd is tmp_path
    assert _which(load_split("fashion-mnist", "train")) == 99
    dirs = D.candidate_dirs("mnist")
    assert dirs.index(fetch.cache_dir() / "mnist") == len(dirs) - 1


# ---------------------------------------------------------------------------------------------- splits
def _numbered_split(n: int) -> Split:
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1).expand(n, 28, 28).clone()
    return Split(images, torch.arange(n) % 10)


def test_val_split_takes_the_first_fraction_of_train():
    train, test = _numbered_split(40), _numbered_split(10)
    d = D.split(train, test, DataConfig(val_fraction=0.25))
    assert torch.equal(d.val.images, train.images[:10])
    assert torch.equal(d.val.labels, train.labels[:10])
    assert torch.equal(d.train.images, train.images[10:])
    assert torch.equal(d.test.images, test.images)


def test_no_val_split_by_default():
    d = D.split(_numbered_split(40), _numbered_split(10), DataConfig())
    assert d.val is None and len(d.train) == 40


def test_class_filter_applies_to_train_val_and_test():
    train, test = _numbered_split(100), _numbered_split(30)
    d = D.split(train, test, DataConfig(classes=(0, 3), val_fraction=0.5))
    for s in (d.train, d.val, d.test):
        assert set(s.labels.tolist()) == {0, 3}
    assert len(d.train) + len(d.val) == 20 and len(d.test) == 6
    # the validation part is the first half of the filtered training images
    kept = [i for i in range(100) if i % 10 in (0, 3)]
    assert d.val.images[:, 0, 0].tolist() == kept[:10]
    assert d.train.images[:, 0, 0].tolist() == kept[10:]


def test_load_with_val_fraction(mnist_dir, arrays):
    d = load(DataConfig(val_fraction=0.25), data_dir=mnist_dir)
    assert (len(d.train), len(d.val), len(d.test)) == (48, 16, 32)
    np.testing.assert_array_equal(d.val.images.numpy(), arrays["train-images"][:16])


# ---------------------------------------------------------------------------------------------- noise
@pytest.mark.parametrize("level", [0.2, 0.5])
def test_mask_noise_zeros_about_the_given_ratio(level):
    x = torch.ones(200, 1, 28, 28)
    before = x.clone()
    y = add_noise(x, "mask", level, torch.Generator().manual_seed(0))
    assert torch.equal(x, before)                       # the clean batch stays untouched
    assert set(y.unique().tolist()) <= {0.0, 1.0}
    zeros = (y == 0).float().mean().item()
    assert abs(zeros - level) < 0.01


def test_mask_noise_is_reproducible_with_a_generator():
    x = torch.rand(4, 1, 28, 28)
    a = add_noise(x, "mask", 0.3, torch.Generator().manual_seed(7))
    b = add_noise(x, "mask", 0.3, torch.Generator().manual_seed(7))
    c = add_noise(x, "mask", 0.3, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_gaussian_noise_clips_to_unit_range():
    x = torch.full((50, 1, 28, 28), 0.5)
    before = x.clone()
    y = add_noise(x, "gaussian", 0.5, torch.Generator().manual_seed(0))
    assert torch.equal(x, before)
    assert y.min().item() == 0.0 and y.max().item() == 1.0   # sigma 0.5 around 0.5 reaches both ends
    assert 0.3 < (y - x).abs().mean().item() < 0.5
    assert 0.45 < y.mean().item() < 0.55


@pytest.mark.parametrize("kind,level", [("none", 0.3), ("mask", 0.0), ("gaussian", 0.0)])
def test_no_noise_returns_the_same_tensor(kind, level):
    x = torch.rand(3, 1, 28, 28)
    assert add_noise(x, kind, level) is x


def test_unknown_noise_kind():
    with pytest.raises(ValueError, match="noise kind"):
        add_noise(torch.rand(2, 1, 28, 28), "salt", 0.1)


# ---------------------------------------------------------------------------------------------- deform
def _moments(x: torch.Tensor):
    """Centre of mass (row, col) and orientation in degrees (0 = along the rows) of each image (B, 1, 28, 28)."""
    w = x[:, 0]
    r, c = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    m = w.sum((1, 2))
    cr, cc = (w * r).sum((1, 2)) / m, (w * c).sum((1, 2)) / m
    mrr = (w * (r - cr[:, None, None]) ** 2).sum((1, 2))
    mcc = (w * (c - cc[:, None, None]) ** 2).sum((1, 2))
    mrc = (w * (r - cr[:, None, None]) * (c - cc[:, None, None])).sum((1, 2))
    return cr, cc, torch.rad2deg(0.5 * torch.atan2(2 * mrc, mcc - mrr)), m


@pytest.mark.parametrize("level", [0.5, 1.0, 2.0])
def test_deform_moves_turns_and_scales_within_its_range(level, monkeypatch):
    monkeypatch.setitem(DEFORM_AT_1, "elastic", 0.0)   # the affine part alone; the bend has its own test
    x = torch.zeros(400, 1, 28, 28)
    x[:, 0, 12:16, 6:22] = 1.0            # a bar along the rows, centred on the image's centre (13.5, 13.5)
    before = x.clone()
    y = deform(x, level, torch.Generator().manual_seed(0))
    assert torch.equal(x, before)         # the clean batch is the target and stays untouched
    cr, cc, angle, mass = _moments(y)
    move, turn, grow = (level * DEFORM_AT_1[k] for k in ("pixels", "degrees", "scale"))
    for centre in (cr, cc):               # a centred bar moves only by the shift
        offset = (centre - 13.5).abs()
        assert offset.max() <= move + 0.1 and offset.max() >= 0.85 * move
    assert angle.abs().max() <= turn + 1.0 and angle.abs().max() >= 0.8 * turn
    area = mass / before[0].sum()         # bilinear resampling keeps the area up to the scale squared
    assert area.min() >= (1 - grow) ** 2 - 0.03 and area.max() <= (1 + grow) ** 2 + 0.03


def test_deform_bends_smoothly_by_about_the_elastic_amplitude(monkeypatch):
    for part in ("degrees", "scale", "pixels"):
        monkeypatch.setitem(DEFORM_AT_1, part, 0.0)    # the elastic bend alone
    ramp = torch.arange(28.0).expand(28, 28)           # each pixel holds its column: the warp shows in the values
    x = torch.stack([ramp, ramp.T])[:, None].repeat(50, 1, 1, 1)   # (100, 1, 28, 28): columns, then rows
    y = deform(x, 1.0, torch.Generator().manual_seed(0))
    inner = (slice(None), 0, slice(6, 22), slice(6, 22))            # away from the black edge
    moved = (y - x)[inner]                                          # displacement in pixels along each axis
    # uniform [-1, 1] noise (variance 1/3) blurred by a Gaussian of 4 px keeps a variance of (1/3) / (4 pi 4^2):
    # 34 px times its root is 1.39 px
    assert 1.0 < moved.std().item() < 1.8
    assert moved.abs().max().item() < 8
    step = (moved[:, 1:, :] - moved[:, :-1, :]).abs().mean().item()
    assert step < 0.25 * moved.abs().mean().item()                 # neighbours move together: a smooth bend


def test_deform_is_per_image_reproducible_and_off_at_zero():
    x = torch.rand(6, 1, 28, 28)
    a = deform(x, 1.0, torch.Generator().manual_seed(3))
    assert torch.equal(a, deform(x, 1.0, torch.Generator().manual_seed(3)))
    assert not torch.equal(a, deform(x, 1.0, torch.Generator().manual_seed(4)))
    same = deform(x[:1].expand(6, 1, 28, 28), 1.0, torch.Generator().manual_seed(3))
    assert len({round(float(v), 4) for v in same.sum((1, 2, 3))}) == 6   # one image, six different warps
    assert deform(x, 0.0) is x


def test_to_float_scales_uint8():
    images = torch.tensor([0, 51, 255], dtype=torch.uint8).view(3, 1, 1).expand(3, 28, 28)
    x = to_float(images)
    assert x.shape == (3, 1, 28, 28) and x.dtype == torch.float32
    assert x[:, 0, 0, 0].tolist() == pytest.approx([0.0, 0.2, 1.0])
    every = torch.arange(256, dtype=torch.uint8).view(1, 16, 16)
    assert torch.equal(to_float(every), every.float().div(255.0).view(1, 1, 16, 16))   # every value, to the bit
    assert to_float(every, torch.float64).dtype == torch.float64
    assert torch.equal(to_float(every, torch.float64), every.double().div(255.0).view(1, 1, 16, 16))


# ---------------------------------------------------------------------------------------------- DataConfig
@pytest.mark.parametrize("kwargs,field", [
    ({"dataset": "cifar10"}, "dataset"),
    ({"val_fraction": 1.0}, "val_fraction"),
    ({"val_fraction": -0.1}, "val_fraction"),
    ({"classes": (10,)}, "classes"),
    ({"classes": (-1, 2)}, "classes"),
])
def test_data_config_rejects_invalid_values(kwargs, field):
    with pytest.raises(ValueError, match=f"DataConfig.{field}"):
        DataConfig(**kwargs)


def test_data_config_normalises_classes():
    assert DataConfig(classes=[3, 1]).classes == (3, 1)
