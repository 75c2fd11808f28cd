"""Data modules, tested offline on small files the tests write themselves (never downloads)."""

from __future__ import annotations

import pickle
import struct

import numpy as np
import pytest
import torch

from bnnlab.data import (
    DATASETS,
    BnnDataModule,
    DataFileError,
    create_datamodule,
    dataset_info,
    list_datasets,
)
from bnnlab.errors import BnnlabError, MissingDataError, UnknownNameError

# -- writers for tiny datasets in the real on-disk formats -------------------------------------


# The real CIFAR python pickles were written by Python 2, so their keys are ``str`` objects that
# ``pickle.load(f, encoding="latin1")`` (torchvision's call) returns as ``str``: "data", "labels".


def write_cifar10(root, n_train_per_batch=4, n_test=6):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)

    def batch(n, offset):
        return {
            "batch_label": b"x",
            "data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
            "labels": [(offset + i) % 10 for i in range(n)],
            "filenames": [b"f%d" % i for i in range(n)],
        }

    for i in range(1, 6):
        with open(folder / f"data_batch_{i}", "wb") as f:
            pickle.dump(batch(n_train_per_batch, i), f)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump(batch(n_test, 0), f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)], "num_cases_per_batch": 4}, f)
    return folder


def write_cifar100(root, n_train=12, n_test=5):
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name, n in (("train", n_train), ("test", n_test)):
        entry = {
            "data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
            "fine_labels": [(7 * i) % 100 for i in range(n)],
            "coarse_labels": [i % 20 for i in range(n)],
        }
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f)
    with open(folder / "meta", "wb") as f:
        pickle.dump({"fine_label_names": [f"f{i}" for i in range(100)],
                     "coarse_label_names": [f"c{i}" for i in range(20)]}, f)
    return folder


def write_idx_images(path, images: np.ndarray):
    n, h, w = images.shape
    path.write_bytes(struct.pack(">IIII", 2051, n, h, w) + images.astype(np.uint8).tobytes())


def write_idx_labels(path, labels: np.ndarray):
    path.write_bytes(struct.pack(">II", 2049, len(labels)) + labels.astype(np.uint8).tobytes())


def write_mnist(root, n_train=10, n_test=4):
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(2)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx_images(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        write_idx_labels(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)
    return raw


def write_image_folder(root, classes=("cat", "dog", "eel"), per_class=2, size=20):
    from PIL import Image

    rng = np.random.default_rng(3)
    for split in ("train", "val"):
        for c in classes:
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(per_class):
                arr = rng.integers(0, 256, (size, size + 4, 3), dtype=np.uint8)
                Image.fromarray(arr).save(d / f"{c}_{i}.png")
    return root


def first_batch(loader):
    return next(iter(loader))


def assert_batch(batch, channels, size, n_max):
    assert isinstance(batch, (tuple, list)) and len(batch) == 3
    x, y, index = batch
    assert x.dtype == torch.float32 and x.shape[1:] == (channels, size, size)
    assert y.dtype == torch.long and index.dtype == torch.long
    assert len(x) == len(y) == len(index)
    assert index.min() >= 0 and index.max() < n_max


# -- registry ------------------------------------------------------------------------------------


def test_registry_names_and_info_without_disk():
    assert set(list_datasets()) == {
        "digits", "synthetic", "mnist", "cifar10", "cifar100", "imagenet", "imagefolder",
    }
    assert dataset_info("cifar100").num_classes == 100
    info = dataset_info("mnist")
    assert (info.num_classes, info.in_channels, info.input_size) == (10, 1, 28)
    assert dataset_info("imagenet").input_size == 224
    assert dataset_info("imagefolder").num_classes is None


def test_unknown_dataset_has_did_you_mean():
    with pytest.raises(UnknownNameError, match="Did you mean 'cifar10'"):
        create_datamodule("cifar1O")
    with pytest.raises(UnknownNameError, match="Did you mean 'digits'"):
        dataset_info("digit")


def test_bad_arguments_are_user_errors():
    with pytest.raises(BnnlabError, match="batch_size"):
        create_datamodule("digits", batch_size=0)
    with pytest.raises(BnnlabError, match="normalize"):
        create_datamodule("mnist", normalize="imagenet")
    with pytest.raises(BnnlabError, match="val_fraction"):
        create_datamodule("cifar10", val_fraction=0.1)
    with pytest.raises(BnnlabError, match="cannot be downloaded"):
        create_datamodule("imagenet", download=True)


# -- digits --------------------------------------------------------------------------------------


def test_digits_shapes_range_and_sizes():
    dm = create_datamodule("digits", batch_size=64, seed=0)
    assert isinstance(dm, BnnDataModule)
    assert (dm.name, dm.num_classes, dm.in_channels, dm.input_size) == ("digits", 10, 1, 8)
    assert (dm.train_size, dm.val_size) == (1437, 360)
    dm.check()
    dm.setup("fit")
    assert len(dm.train_set) == dm.train_size and len(dm.val_set) == dm.val_size
    x, y, index = batch = first_batch(dm.train_dataloader())
    assert_batch(batch, 1, 8, dm.train_size)
    assert x.min() >= -1 and x.max() <= 1 and x.min() == -1
    all_y = torch.cat([b[1] for b in dm.val_dataloader()])
    assert set(all_y.tolist()) == set(range(10))
    # stratified: every class is ~20 % of the val set
    assert torch.bincount(all_y).min() >= 30


def test_digits_split_and_order_are_seeded():
    def grab(seed):
        dm = create_datamodule("digits", batch_size=32, seed=seed)
        dm.setup("fit")
        return dm.val_set.x, first_batch(dm.train_dataloader())

    (v0, b0), (v0b, b0b), (v1, b1) = grab(0), grab(0), grab(1)
    assert torch.equal(v0, v0b) and torch.equal(b0[2], b0b[2]) and torch.equal(b0[0], b0b[0])
    assert not torch.equal(v0, v1) and not torch.equal(b0[0], b1[0])
    # the val loader does not shuffle
    dm = create_datamodule("digits", batch_size=50)
    assert first_batch(dm.val_dataloader())[2].tolist() == list(range(50))


def test_digits_limits_and_val_fraction():
    dm = create_datamodule("digits", val_fraction=0.5, train_limit=100, val_limit=40, batch_size=1000)
    assert (dm.train_size, dm.val_size) == (100, 40)
    batch = first_batch(dm.train_dataloader())
    assert sorted(batch[2].tolist()) == list(range(100))


# -- synthetic -----------------------------------------------------------------------------------


def test_synthetic_is_deterministic_and_shaped():
    def make(seed):
        dm = create_datamodule("synthetic", seed=seed, batch_size=16, image_size=12, num_classes=4,
                               in_channels=2, train_limit=40, val_limit=20)
        return dm, first_batch(dm.train_dataloader())

    dm, b = make(5)
    _, b_again = make(5)
    _, b_other = make(6)
    assert (dm.num_classes, dm.in_channels, dm.input_size, dm.train_size, dm.val_size) == (4, 2, 12, 40, 20)
    assert_batch(b, 2, 12, 40)
    assert all(torch.equal(p, q) for p, q in zip(b, b_again, strict=True))
    assert not torch.equal(b[0], b_other[0])
    assert b[0].abs().max() <= 1


def test_synthetic_defaults():
    dm = create_datamodule("synthetic")
    assert (dm.train_size, dm.val_size, dm.input_size, dm.in_channels) == (256, 128, 32, 3)
    assert_batch(first_batch(dm.val_dataloader()), 3, 32, 128)


# -- CIFAR ---------------------------------------------------------------------------------------


def test_cifar10_from_real_pickle_format(tmp_path):
    write_cifar10(tmp_path)
    dm = create_datamodule("cifar10", data_dir=tmp_path, batch_size=8)
    assert (dm.num_classes, dm.in_channels, dm.input_size) == (10, 3, 32)
    dm.check()
    assert (dm.train_size, dm.val_size) == (20, 6)
    batch = first_batch(dm.train_dataloader())
    assert_batch(batch, 3, 32, 20)
    assert batch[0].min() >= -1 and batch[0].max() <= 1
    x, y, index = first_batch(dm.val_dataloader())
    assert index.tolist() == list(range(6)) and y.tolist() == [i % 10 for i in range(6)]
    # no augmentation on val: pm1 of the stored pixels
    raw = pickle.load(open(tmp_path / "cifar-10-batches-py" / "test_batch", "rb"))["data"]
    expected = torch.as_tensor(raw[0].reshape(3, 32, 32), dtype=torch.float32) / 255 * 2 - 1
    assert torch.allclose(x[0], expected, atol=1e-5)


def test_cifar10_limit_and_normalize(tmp_path):
    write_cifar10(tmp_path)
    dm = create_datamodule("cifar10", data_dir=tmp_path, batch_size=8, train_limit=7,
                           normalize="cifar", augment=False)
    assert dm.train_size == 7
    batch = first_batch(dm.train_dataloader())
    assert_batch(batch, 3, 32, 7)
    assert batch[0].max() > 1  # mean/std, not [-1, 1]


def test_cifar100_from_real_pickle_format(tmp_path):
    write_cifar100(tmp_path)
    dm = create_datamodule("cifar100", data_dir=tmp_path, batch_size=4)
    assert dm.num_classes == 100
    dm.check()
    assert (dm.train_size, dm.val_size) == (12, 5)
    assert_batch(first_batch(dm.train_dataloader()), 3, 32, 12)
    y = torch.cat([b[1] for b in dm.val_dataloader()])
    assert y.tolist() == [(7 * i) % 100 for i in range(5)]


@pytest.mark.parametrize("content", [b"", b"not a pickle at all", "truncate"])
def test_corrupt_cifar_batch_names_the_file(tmp_path, content):
    folder = write_cifar10(tmp_path)
    bad = folder / "data_batch_3"
    if content == "truncate":
        content = bad.read_bytes()[:100]
    bad.write_bytes(content)
    dm = create_datamodule("cifar10", data_dir=tmp_path)
    with pytest.raises(DataFileError) as err:
        dm.check()
    msg = str(err.value)
    assert str(bad) in msg and "\n" not in msg


def test_cifar_batch_with_wrong_structure(tmp_path):
    folder = write_cifar100(tmp_path)
    with open(folder / "test", "wb") as f:
        pickle.dump({"data": np.zeros((3, 100), np.uint8), "fine_labels": [0, 1, 2]}, f)
    with pytest.raises(BnnlabError, match="cifar-100-python/test"):
        create_datamodule("cifar100", data_dir=tmp_path).check()


# -- MNIST ---------------------------------------------------------------------------------------


def test_mnist_from_idx_files(tmp_path):
    write_mnist(tmp_path)
    dm = create_datamodule("mnist", data_dir=tmp_path, batch_size=4)
    assert (dm.num_classes, dm.in_channels, dm.input_size) == (10, 1, 28)
    dm.check()
    assert (dm.train_size, dm.val_size) == (10, 4)
    batch = first_batch(dm.train_dataloader())
    assert_batch(batch, 1, 28, 10)
    assert batch[0].min() >= -1 and batch[0].max() <= 1
    assert first_batch(dm.val_dataloader())[1].tolist() == [0, 1, 2, 3]


def test_mnist_truncated_idx_names_the_file(tmp_path):
    raw = write_mnist(tmp_path)
    bad = raw / "t10k-images-idx3-ubyte"
    bad.write_bytes(bad.read_bytes()[:-10])
    with pytest.raises(BnnlabError, match="t10k-images-idx3-ubyte") as err:
        create_datamodule("mnist", data_dir=tmp_path).check()
    assert "\n" not in str(err.value)
    (raw / "train-labels-idx1-ubyte").write_bytes(b"\x00\x00")
    with pytest.raises(BnnlabError, match="train-labels-idx1-ubyte"):
        create_datamodule("mnist", data_dir=tmp_path).check()


# -- ImageFolder / ImageNet ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["imagefolder", "imagenet"])
def test_image_folder_loads(tmp_path, name):
    write_image_folder(tmp_path)
    dm = create_datamodule(name, data_dir=tmp_path, image_size=16, batch_size=4)
    dm.check()
    assert (dm.num_classes, dm.in_channels, dm.input_size) == (3, 3, 16)
    assert (dm.train_size, dm.val_size) == (6, 6)
    assert_batch(first_batch(dm.train_dataloader()), 3, 16, 6)
    x, y, index = first_batch(dm.val_dataloader())
    assert_batch((x, y, index), 3, 16, 6)
    assert y.tolist() == [0, 0, 1, 1]


def test_image_folder_class_mismatch(tmp_path):
    write_image_folder(tmp_path)
    (tmp_path / "val" / "eel").rename(tmp_path / "val" / "emu")
    with pytest.raises(BnnlabError, match="only in train/: eel; only in val/: emu"):
        create_datamodule("imagefolder", data_dir=tmp_path).check()


@pytest.mark.parametrize("num_workers", [0, 1])
def test_corrupt_image_is_reported_at_load_time(tmp_path, num_workers):
    write_image_folder(tmp_path)
    bad = tmp_path / "val" / "cat" / "cat_0.png"
    bad.write_bytes(b"\x89PNG garbage")
    dm = create_datamodule("imagefolder", data_dir=tmp_path, image_size=16, batch_size=4,
                           num_workers=num_workers)
    dm.check()  # class folders only
    assert dm.val_dataloader().persistent_workers == (num_workers > 0)
    with pytest.raises(DataFileError) as err:
        first_batch(dm.val_dataloader())
    assert str(bad) in str(err.value) and "\n" not in str(err.value)


# -- missing data ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, looked_for",
    [
        ("mnist", "MNIST/raw/train-images-idx3-ubyte"),
        ("cifar10", "cifar-10-batches-py/data_batch_1"),
        ("cifar100", "cifar-100-python/train"),
        ("imagenet", "train"),
        ("imagefolder", "train"),
    ],
)
def test_missing_data_is_one_clear_line(tmp_path, name, looked_for):
    dm = create_datamodule(name, data_dir=tmp_path)
    with pytest.raises(MissingDataError) as err:
        dm.check()
    msg = str(err.value)
    assert "\n" not in msg
    assert str(tmp_path / looked_for) in msg
    assert "--data-dir" in msg
    assert ("--download" in msg) == (name in ("mnist", "cifar10", "cifar100"))
    # attributes are known before the data is (except a generic folder's class count)
    if name != "imagefolder":
        assert dm.num_classes == dataset_info(name).num_classes
    with pytest.raises(MissingDataError):
        dm.setup("fit")


def test_every_registered_class_documents_itself():
    for name in DATASETS:
        cls = DATASETS.get(name)
        assert cls.__doc__ and len(cls.__doc__) > 80, name
