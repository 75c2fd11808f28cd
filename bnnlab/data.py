"""Lightning data modules for every dataset bnnlab trains on, behind one registry.

    >>> dm = create_datamodule("digits", batch_size=64, seed=0)
    >>> dm.check()                     # cheap; raises a one-line MissingDataError / BnnlabError
    >>> dm.num_classes, dm.in_channels, dm.input_size, dm.train_size
    (10, 1, 8, 1437)
    >>> x, y, index = next(iter(dm.train_dataloader()))

Datasets (``list_datasets()``):

=============  ============================  ================================  =====================
name           source                        split (train / val)               normalisation default
=============  ============================  ================================  =====================
digits         scikit-learn ``load_digits``  seeded stratified, val 20 %       pixel / 8 - 1
synthetic      generated from ``seed``       ``train_limit`` / ``val_limit``   already in [-1, 1]
mnist          torchvision MNIST (IDX)       60 000 / 10 000 (test set)        ``pm1``
cifar10        torchvision CIFAR-10 pickles  50 000 / 10 000 (test set)        ``pm1``
cifar100       torchvision CIFAR-100         50 000 / 10 000 (test set)        ``pm1``
imagenet       ImageFolder ``train/ val/``   1.28 M / 50 000 (val set)         ``imagenet`` mean/std
imagefolder    any ImageFolder tree          ``train/`` / ``val/``             ``imagenet`` mean/std
=============  ============================  ================================  =====================

Conventions shared by every module:

- Every batch from every loader is ``(x, y, index)``; ``index`` (LongTensor) is the sample's
  position in its split (after ``train_limit``/``val_limit``, so always ``0..train_size-1`` for
  the training split) -- the contrastive loss keys its memory bank on it.
- The train loader shuffles with :class:`EpochShuffleSampler`, seeded from ``(seed, epoch)``: the
  same seed gives the same data order, and epoch k's order does not depend on a resume. Val
  loaders never shuffle. Random augmentations draw from torch's global
  RNG (seed it with ``lightning.seed_everything``).
- ``check()`` is cheap and is meant to run before any training. It raises
  :class:`~bnnlab.errors.MissingDataError` (one line: dataset, exact path looked for, how to provide
  it) or :class:`~bnnlab.errors.BnnlabError` for a corrupt file, naming it. What it reads:
  MNIST -- the four IDX headers and file sizes; CIFAR -- it unpickles the batches (the same load
  ``setup`` would do, cached and reused, so it costs nothing extra); ImageFolder/ImageNet -- the
  ``train/`` and ``val/`` class folders only. A corrupt *image* file is therefore detected when it
  is loaded, and then raises a BnnlabError naming the file (checking 1.3 M JPEGs up front would take
  longer than an epoch). Corrupt-file errors are :class:`DataFileError` (a BnnlabError), which
  stays one line even when re-raised from a DataLoader worker.
- ``train_limit``/``val_limit`` keep the first N samples of a split (mini-scale proxies).
- The train loader drops the last batch only when it would hold a single sample (BatchNorm in
  training mode cannot normalise one sample).
- Nothing is ever downloaded unless ``download=True`` (torchvision datasets only; ImageNet cannot
  be downloaded automatically).
"""

from __future__ import annotations

import math
import os
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import torch
import torchvision.datasets  # already imported by lightning
from torch.utils.data import DataLoader, Dataset, Subset

from bnnlab.errors import BnnlabError, MissingDataError
from bnnlab.registry import Registry

__all__ = [
    "DATASETS", "BnnDataModule", "DataFileError", "DatasetInfo", "IndexedDataset", "create_datamodule",
    "dataset_info", "list_datasets",
]

DATASETS: Registry[type[BnnDataModule]] = Registry("dataset")

#: Per-channel (mean, std) for ``normalize=`` names other than "pm1" / "none".
STATS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "mnist": ((0.1307,), (0.3081,)),
}

DATA_DIR_ENV = "BNNLAB_DATA_DIR"


def default_data_dir() -> Path:
    """``$BNNLAB_DATA_DIR`` if set, else ``./data``."""
    return Path(os.environ.get(DATA_DIR_ENV, "data"))


@dataclass(frozen=True)
class DatasetInfo:
    """What is known about a dataset without touching disk (``None``: known only from the files)."""

    name: str
    title: str
    num_classes: int | None
    in_channels: int
    input_size: int
    train_size: int | None
    val_size: int | None


class IndexedDataset(Dataset):
    """Wraps a ``(x, y)`` dataset so that items are ``(x, y, index)``."""

    def __init__(self, base: Dataset):
        self.base = base

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Any, int, int]:
        x, y = self.base[index]
        return x, int(y), int(index)


class TensorIndexedDataset(Dataset):
    """In-memory images and labels; items are ``(x, y, index)``."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        if len(x) != len(y):
            raise ValueError("x and y differ in length")
        self.x, self.y = x, y.long()

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        return self.x[index], self.y[index], int(index)


class DataFileError(BnnlabError):
    """A corrupt or unreadable data file (the message names it).

    PyTorch re-raises an exception from a DataLoader worker as ``type(exc)(text)`` where the
    text holds the worker's whole traceback; this class keeps only the original message, so
    the error stays one line with ``num_workers > 0`` too.
    """

    def __init__(self, message: str):
        if message.startswith("Caught ") and "Original Traceback" in message:
            last = message.rstrip().splitlines()[-1]
            message = last.split(": ", 1)[1] if ": " in last else last
        super().__init__(message)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


class EpochShuffleSampler(torch.utils.data.RandomSampler):
    """Shuffles each epoch with a generator seeded from ``(seed, epoch)``.

    Lightning calls ``set_epoch`` before every epoch (from its restored progress counters on
    resume), so epoch *k* sees the same order whether or not the run was interrupted and
    resumed. It is a ``RandomSampler``, so under DDP Lightning swaps it for its own
    epoch-seeded ``DistributedSampler`` as usual.
    """

    def __init__(self, data_source, seed: int = 0):
        super().__init__(data_source)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self):
        import numpy as np

        state = np.random.SeedSequence([self.seed & 0xFFFFFFFF, self.epoch]).generate_state(2)
        g = torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))
        return iter(torch.randperm(len(self.data_source), generator=g).tolist())


# ---------------------------------------------------------------------------------------------
# Base class
# ---------------------------------------------------------------------------------------------


class BnnDataModule(L.LightningDataModule):
    """Common behaviour: argument checks, limits, ``(x, y, index)`` batches, seeded loaders.

    Subclasses set the class attributes and implement :meth:`_load` (and usually :meth:`check`
    and :meth:`_count`).
    """

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    default_num_classes: ClassVar[int | None] = None
    default_in_channels: ClassVar[int] = 3
    default_input_size: ClassVar[int] = 32
    default_train_size: ClassVar[int | None] = None
    default_val_size: ClassVar[int | None] = None
    #: allowed ``normalize=`` values; the first is the default.
    normalizations: ClassVar[tuple[str, ...]] = ("pm1",)
    uses_data_dir: ClassVar[bool] = True

    def __init__(
        self,
        data_dir: str | os.PathLike | None = None,
        batch_size: int = 128,
        seed: int = 0,
        val_fraction: float | None = None,
        download: bool = False,
        augment: bool = True,
        num_workers: int = 0,
        image_size: int | None = None,
        train_limit: int | None = None,
        val_limit: int | None = None,
        normalize: str | None = None,
    ):
        super().__init__()
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise BnnlabError(f"batch_size must be a positive integer, got {batch_size!r}")
        if not isinstance(num_workers, int) or num_workers < 0:
            raise BnnlabError(f"num_workers must be an integer >= 0, got {num_workers!r}")
        for key, value in (("train_limit", train_limit), ("val_limit", val_limit)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise BnnlabError(f"{key} must be a positive integer, got {value!r}")
        if image_size is not None and (not isinstance(image_size, int) or image_size < 1):
            raise BnnlabError(f"image_size must be a positive integer, got {image_size!r}")
        if val_fraction is not None and not self._supports_val_fraction():
            raise BnnlabError(
                f"val_fraction applies only to 'digits'; {self.name} validates on its "
                "official test/val split (use val_limit to shorten it)"
            )
        if val_fraction is not None and not 0.0 < float(val_fraction) < 1.0:
            raise BnnlabError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
        normalize = normalize or self.normalizations[0]
        if normalize not in self.normalizations:
            raise BnnlabError(
                f"normalize={normalize!r} is not available for {self.name}; "
                f"choose one of: {', '.join(self.normalizations)}"
            )
        self.data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
        if self.uses_data_dir:
            self.data_dir = self.data_dir.expanduser().resolve()
        self.batch_size = batch_size
        self.seed = int(seed)
        self.val_fraction = val_fraction
        self.download = bool(download)
        self.augment = bool(augment)
        self.num_workers = num_workers
        self.image_size = image_size
        self.train_limit = train_limit
        self.val_limit = val_limit
        self.normalize = normalize
        self._base: dict[str, Dataset] = {}
        self._counts: dict[str, int] = {}
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None

    # -- what a caller needs before setup --------------------------------------------------

    @classmethod
    def info(cls) -> DatasetInfo:
        return DatasetInfo(
            name=cls.name, title=cls.title, num_classes=cls.default_num_classes,
            in_channels=cls.default_in_channels, input_size=cls.default_input_size,
            train_size=cls.default_train_size, val_size=cls.default_val_size,
        )

    @property
    def num_classes(self) -> int:
        assert self.default_num_classes is not None
        return self.default_num_classes

    @property
    def in_channels(self) -> int:
        return self.default_in_channels

    @property
    def input_size(self) -> int:
        return self.image_size or self.default_input_size

    @property
    def train_size(self) -> int:
        """Number of training samples (after ``train_limit``); may read file headers."""
        return self._limited("train")

    @property
    def val_size(self) -> int:
        return self._limited("val")

    def _limited(self, split: str) -> int:
        if split not in self._counts:
            self._counts[split] = self._count(split)
        limit = self.train_limit if split == "train" else self.val_limit
        return min(self._counts[split], limit) if limit is not None else self._counts[split]

    def _supports_val_fraction(self) -> bool:
        return False

    # -- subclass hooks --------------------------------------------------------------------

    def check(self) -> None:
        """Raise a one-line MissingDataError/BnnlabError if the data is absent or corrupt."""

    def _count(self, split: str) -> int:
        return len(self._base_split(split))  # type: ignore[arg-type]

    def _load(self, split: str) -> Dataset:
        """The full split, items ``(x, y)`` or already ``(x, y, index)`` (see ``_indexed``)."""
        raise NotImplementedError

    _indexed: ClassVar[bool] = False  # True when _load already yields (x, y, index)

    # -- Lightning hooks ------------------------------------------------------------------

    def prepare_data(self) -> None:
        """Download (rank 0 only) when ``download=True`` and the dataset supports it."""

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit") and self.train_set is None:
            self.train_set = self._split("train")
        if self.val_set is None:
            self.val_set = self._split("val")

    def train_dataloader(self) -> DataLoader:
        if self.train_set is None:
            self.setup("fit")
        assert self.train_set is not None
        n = len(self.train_set)  # type: ignore[arg-type]
        return DataLoader(
            self.train_set,
            batch_size=self.batch_size,
            sampler=EpochShuffleSampler(self.train_set, self.seed),
            generator=torch.Generator().manual_seed(self.seed),
            drop_last=n > 1 and n % self.batch_size == 1,
            **self._loader_kwargs(),
        )

    def val_dataloader(self) -> DataLoader:
        if self.val_set is None:
            self.setup("validate")
        return DataLoader(self.val_set, batch_size=self.batch_size, shuffle=False, **self._loader_kwargs())

    def test_dataloader(self) -> DataLoader:
        """The validation split (BNN papers report on the official test/val set)."""
        return self.val_dataloader()

    def _loader_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {"num_workers": self.num_workers}
        if self.num_workers > 0:
            kw["persistent_workers"] = True
        return kw

    # -- helpers ---------------------------------------------------------------------------

    def _base_split(self, split: str) -> Dataset:
        if split not in self._base:
            self._base[split] = self._load(split)
        return self._base[split]

    def _split(self, split: str) -> Dataset:
        self.check()
        ds = self._base_split(split)
        limit = self.train_limit if split == "train" else self.val_limit
        if limit is not None and limit < len(ds):  # type: ignore[arg-type]
            if self._indexed and isinstance(ds, TensorIndexedDataset):
                ds = TensorIndexedDataset(ds.x[:limit], ds.y[:limit])
            else:
                ds = Subset(ds, range(limit))
        return ds if self._indexed else IndexedDataset(ds)

    def _missing(self, path: Path, how: str) -> MissingDataError:
        return MissingDataError(f"{self.title} not found: looked for {path}; {how}")

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, data_dir={str(self.data_dir)!r}, "
            f"batch_size={self.batch_size}, seed={self.seed})"
        )

    __str__ = __repr__  # Lightning's __str__ builds every dataloader (loads the data)


# ---------------------------------------------------------------------------------------------
# digits (scikit-learn, bundled) and synthetic
# ---------------------------------------------------------------------------------------------


@DATASETS.register("digits")
class DigitsDataModule(BnnDataModule):
    """scikit-learn's bundled ``load_digits``: 1797 8x8 grayscale digits, 10 classes, offline.

    Split: seeded stratified split (``sklearn.model_selection.train_test_split``) with
    ``val_fraction`` (default 0.2, i.e. 1437 / 360); the same seed gives the same split.
    Pixels are 0..16 and become ``x = pixel / 8 - 1`` in [-1, 1], shape ``(1, 8, 8)``.
    All tensors stay in memory. No augmentation (``augment`` is ignored); ``data_dir`` is unused.
    """

    name = "digits"
    title = "digits (scikit-learn)"
    default_num_classes = 10
    default_in_channels = 1
    default_input_size = 8
    default_train_size = 1437
    default_val_size = 360
    uses_data_dir = False
    _indexed = True
    TOTAL = 1797

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if self.image_size not in (None, 8):
            raise BnnlabError(f"digits images are 8x8; image_size must be 8, got {self.image_size}")
        if self.val_fraction is None:
            self.val_fraction = 0.2
        self._splits: dict[str, TensorIndexedDataset] | None = None

    def _supports_val_fraction(self) -> bool:
        return True

    def _count(self, split: str) -> int:
        n_val = math.ceil(float(self.val_fraction) * self.TOTAL)  # what train_test_split does
        return self.TOTAL - n_val if split == "train" else n_val

    def _load(self, split: str) -> Dataset:
        if self._splits is None:
            from sklearn.datasets import load_digits
            from sklearn.model_selection import train_test_split

            bunch = load_digits()
            x = torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 8.0 - 1.0
            y = torch.as_tensor(bunch.target, dtype=torch.long)
            train_idx, val_idx = train_test_split(
                list(range(len(y))), test_size=float(self.val_fraction),
                stratify=bunch.target, random_state=self.seed,
            )
            train_idx, val_idx = torch.as_tensor(train_idx), torch.as_tensor(val_idx)
            self._splits = {
                "train": TensorIndexedDataset(x[train_idx], y[train_idx]),
                "val": TensorIndexedDataset(x[val_idx], y[val_idx]),
            }
        return self._splits[split]


@DATASETS.register("synthetic")
class SyntheticDataModule(BnnDataModule):
    """Random but learnable images for smoke tests, generated from ``seed`` (no disk).

    Each class has a smooth random pattern (a 4x4 grid of N(0,1) values, upsampled to
    ``image_size``, times 0.8); a sample is its class pattern plus N(0, 0.5^2) noise, clamped to
    [-1, 1]. Labels are balanced. Sizes: ``train_limit`` (default 256) and ``val_limit``
    (default 128). Extra keyword arguments: ``num_classes`` (10), ``in_channels`` (3).
    """

    name = "synthetic"
    title = "synthetic"
    default_num_classes = 10
    default_in_channels = 3
    default_input_size = 32
    default_train_size = 256
    default_val_size = 128
    uses_data_dir = False
    _indexed = True

    def __init__(self, *args: Any, num_classes: int = 10, in_channels: int = 3, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if num_classes < 2 or in_channels < 1:
            raise BnnlabError("synthetic data needs num_classes >= 2 and in_channels >= 1")
        self._num_classes, self._in_channels = int(num_classes), int(in_channels)
        self._data: dict[str, TensorIndexedDataset] | None = None

    @property
    def num_classes(self) -> int:
        return self._num_classes

    @property
    def in_channels(self) -> int:
        return self._in_channels

    def _count(self, split: str) -> int:
        return self.default_train_size if split == "train" else self.default_val_size  # type: ignore

    def _limited(self, split: str) -> int:
        limit = self.train_limit if split == "train" else self.val_limit
        return limit if limit is not None else self._count(split)

    def _load(self, split: str) -> Dataset:
        if self._data is None:
            g = torch.Generator().manual_seed(self.seed)
            c, ch, s = self._num_classes, self._in_channels, self.input_size
            coarse = torch.randn(c, ch, 4, 4, generator=g)
            means = 0.8 * torch.nn.functional.interpolate(coarse, size=(s, s), mode="bilinear")
            self._data = {}
            for name in ("train", "val"):
                n = self._limited(name)
                y = (torch.arange(n) % c)[torch.randperm(n, generator=g)]
                x = means[y] + 0.5 * torch.randn(n, ch, s, s, generator=g)
                self._data[name] = TensorIndexedDataset(x.clamp_(-1.0, 1.0), y)
        return self._data[split]

    def _split(self, split: str) -> Dataset:  # sizes are already the limits
        return self._base_split(split)


# ---------------------------------------------------------------------------------------------
# torchvision datasets: MNIST, CIFAR-10/100
# ---------------------------------------------------------------------------------------------


def _normalize_transform(normalize: str, stats_key: str, channels: int) -> list:
    from torchvision import transforms as T

    if normalize == "none":
        return []
    if normalize == "pm1":
        mean, std = (0.5,) * channels, (0.5,) * channels
    else:
        mean, std = STATS[stats_key]
    return [T.Normalize(mean, std)]


class _TorchvisionDataModule(BnnDataModule):
    """Shared download and hint logic for torchvision datasets."""

    folder: ClassVar[str] = ""

    def _how(self) -> str:
        return (
            f"pass --data-dir DIR pointing at a folder that holds {self.folder}, "
            "or --download to fetch it"
        )

    def prepare_data(self) -> None:
        if self.download:
            self._download()

    def _download(self) -> None:
        raise NotImplementedError

    def check(self) -> None:
        if self.download and self._first_missing() is not None:
            self._download()
        missing = self._first_missing()
        if missing is not None:
            raise self._missing(missing, self._how())
        self._validate()

    def _first_missing(self) -> Path | None:
        raise NotImplementedError

    def _validate(self) -> None:
        """Cheap corruption checks (headers) after existence."""


MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "val": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _idx_header(path: Path, magic: int, ndim: int) -> tuple[int, ...]:
    """Read and validate an uncompressed IDX header; return the dimensions."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(4 + 4 * ndim)
    if len(head) < 4 + 4 * ndim:
        raise DataFileError(f"corrupt MNIST file {path}: truncated header ({size} bytes)")
    got, *dims = struct.unpack(f">{1 + ndim}I", head)
    if got != magic:
        raise DataFileError(f"corrupt MNIST file {path}: magic number {got}, expected {magic}")
    expected = 4 + 4 * ndim + math.prod(dims)
    if size != expected:
        raise DataFileError(
            f"corrupt MNIST file {path}: {size} bytes, header {tuple(dims)} needs {expected}"
        )
    return tuple(dims)


@DATASETS.register("mnist")
class MNISTDataModule(_TorchvisionDataModule):
    """MNIST via ``torchvision.datasets.MNIST``: raw IDX files in ``DATA_DIR/MNIST/raw``.

    Split: the official 60 000 train / 10 000 test (the test set is the validation set, as
    BNN papers report). Normalisation: ``pm1`` (ToTensor then (x - 0.5) / 0.5, in [-1, 1]),
    ``mnist`` (mean 0.1307, std 0.3081) or ``none`` ([0, 1]). No augmentation. ``image_size``
    (default 28) resizes.
    """

    name = "mnist"
    title = "MNIST"
    default_num_classes = 10
    default_in_channels = 1
    default_input_size = 28
    default_train_size = 60000
    default_val_size = 10000
    normalizations = ("pm1", "mnist", "none")
    folder = "MNIST/raw"

    @property
    def raw_dir(self) -> Path:
        return self.data_dir / "MNIST" / "raw"

    def _how(self) -> str:
        return (
            "pass --data-dir DIR pointing at a folder that holds MNIST/raw/ with the four "
            "uncompressed IDX files (train-images-idx3-ubyte, ...), or --download to fetch them"
        )

    def _download(self) -> None:
        from torchvision.datasets import MNIST

        MNIST(str(self.data_dir), train=True, download=True)

    def _first_missing(self) -> Path | None:
        for files in MNIST_FILES.values():
            for fname in files:
                if not (self.raw_dir / fname).is_file():
                    return self.raw_dir / fname
        return None

    def _validate(self) -> None:
        for split, (images, labels) in MNIST_FILES.items():
            n_img = _idx_header(self.raw_dir / images, 2051, 3)[0]
            n_lab = _idx_header(self.raw_dir / labels, 2049, 1)[0]
            if n_img != n_lab:
                raise BnnlabError(
                    f"corrupt MNIST data in {self.raw_dir}: {images} has {n_img} images "
                    f"but {labels} has {n_lab} labels"
                )
            self._counts[split] = n_img

    def _count(self, split: str) -> int:
        self.check()
        return self._counts[split]

    def _load(self, split: str) -> Dataset:
        from torchvision import transforms as T
        from torchvision.datasets import MNIST

        tf: list = []
        if self.image_size not in (None, 28):
            tf.append(T.Resize(self.image_size))
        tf += [T.ToTensor(), *_normalize_transform(self.normalize, "mnist", 1)]
        try:
            return MNIST(str(self.data_dir), train=split == "train", transform=T.Compose(tf))
        except (RuntimeError, ValueError, TypeError, AssertionError, OSError) as exc:
            raise DataFileError(f"cannot read MNIST from {self.raw_dir}: {_first_line(exc)}") from None


class _ExistsNotMd5:
    """Mixin for torchvision's CIFAR classes: check that the files exist instead of their md5.

    torchvision verifies the md5 of every batch (and of the meta file) even with
    ``download=False``, which rejects any re-packed or test-written file; the pickle loading
    itself stays torchvision's. Readability is checked by the data module instead.
    Module-level classes, so that datasets pickle for spawned DataLoader workers.
    """

    def _check_integrity(self) -> bool:
        root = Path(self.root) / self.base_folder
        return all((root / fname).is_file() for fname, _ in self.train_list + self.test_list)

    def _load_meta(self) -> None:
        path = Path(self.root) / self.base_folder / self.meta["filename"]
        with open(path, "rb") as infile:
            data = pickle.load(infile, encoding="latin1")
        self.classes = data[self.meta["key"]]
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}


class CIFAR10Files(_ExistsNotMd5, torchvision.datasets.CIFAR10):
    """``torchvision.datasets.CIFAR10`` without the md5 check on local files."""


class CIFAR100Files(_ExistsNotMd5, torchvision.datasets.CIFAR100):
    """``torchvision.datasets.CIFAR100`` without the md5 check on local files."""


def _check_cifar_batch(path: Path, label_key: str) -> int:
    """Unpickle one CIFAR batch and check its structure; return its number of samples."""
    try:
        with open(path, "rb") as f:
            entry = pickle.load(f, encoding="latin1")
    except Exception as exc:  # any unpickling failure means a corrupt file
        raise DataFileError(f"corrupt CIFAR file {path}: {_first_line(exc)}") from None
    if not isinstance(entry, dict) or "data" not in entry:
        raise DataFileError(f"corrupt CIFAR file {path}: not a CIFAR batch (no 'data' entry)")
    data = entry["data"]
    labels = entry.get(label_key, entry.get("labels"))
    shape = getattr(data, "shape", None)
    if shape is None or len(shape) != 2 or shape[1] != 3072:
        raise DataFileError(f"corrupt CIFAR file {path}: 'data' has shape {shape}, expected (N, 3072)")
    if labels is None or len(labels) != shape[0]:
        raise DataFileError(f"corrupt CIFAR file {path}: {shape[0]} images but labels do not match")
    return int(shape[0])


class _CIFARDataModule(_TorchvisionDataModule):
    normalizations = ("pm1", "cifar", "imagenet", "none")
    default_in_channels = 3
    default_input_size = 32
    default_train_size = 50000
    default_val_size = 10000
    train_files: ClassVar[tuple[str, ...]] = ()
    val_files: ClassVar[tuple[str, ...]] = ()
    meta_file: ClassVar[str] = ""
    label_key: ClassVar[str] = "labels"

    @property
    def root(self) -> Path:
        return self.data_dir / self.folder

    def _tv_class(self):
        raise NotImplementedError

    def _download(self) -> None:
        from torchvision.datasets import CIFAR10, CIFAR100

        base = CIFAR10 if self.name == "cifar10" else CIFAR100
        base(str(self.data_dir), train=True, download=True)

    def _first_missing(self) -> Path | None:
        for fname in (*self.train_files, *self.val_files, self.meta_file):
            if not (self.root / fname).is_file():
                return self.root / fname
        return None

    def _validate(self) -> None:
        # Loads the data once (cached for setup): unpickling is what finds a corrupt batch.
        for split in ("train", "val"):
            self._base_split(split)

    def _count(self, split: str) -> int:
        self.check()
        return len(self._base[split])  # type: ignore[arg-type]

    def _transform(self, train: bool):
        from torchvision import transforms as T

        size = self.input_size
        tf: list = []
        if size != 32:
            tf.append(T.Resize(size))
        if train and self.augment:
            tf += [T.RandomCrop(size, padding=4 * size // 32), T.RandomHorizontalFlip()]
        tf += [T.ToTensor(), *_normalize_transform(self.normalize, self._stats_key(), 3)]
        return T.Compose(tf)

    def _stats_key(self) -> str:
        return self.name if self.normalize == "cifar" else self.normalize

    def _load(self, split: str) -> Dataset:
        train = split == "train"
        try:
            return self._tv_class()(str(self.data_dir), train=train, transform=self._transform(train))
        except Exception as first:  # find the culprit file and report it in one line
            for fname in (self.train_files if train else self.val_files):
                _check_cifar_batch(self.root / fname, self.label_key)
            meta = self.root / self.meta_file
            try:
                with open(meta, "rb") as f:
                    pickle.load(f, encoding="latin1")[self._tv_class().meta["key"]]
            except Exception as exc:
                raise DataFileError(f"corrupt CIFAR file {meta}: {_first_line(exc)}") from None
            raise DataFileError(f"cannot read {self.title} from {self.root}: {_first_line(first)}") from None


@DATASETS.register("cifar10")
class CIFAR10DataModule(_CIFARDataModule):
    """CIFAR-10 via ``torchvision.datasets.CIFAR10``: python pickles in ``DATA_DIR/cifar-10-batches-py``.

    Split: the official 50 000 train / 10 000 test (test set = validation set).
    Train augmentation (``augment=True``): pad-4 random crop 32 + horizontal flip (the standard
    BNN recipe). Normalisation: ``pm1`` -> [-1, 1] (Bop paper, default), ``cifar`` -> CIFAR-10
    per-channel mean/std, ``imagenet`` -> ImageNet mean/std, ``none`` -> [0, 1].
    File md5s are not checked (see :class:`CIFAR10Files`).
    """

    name = "cifar10"
    title = "CIFAR-10"
    default_num_classes = 10
    folder = "cifar-10-batches-py"
    train_files = tuple(f"data_batch_{i}" for i in range(1, 6))
    val_files = ("test_batch",)
    meta_file = "batches.meta"

    def _tv_class(self):
        return CIFAR10Files


@DATASETS.register("cifar100")
class CIFAR100DataModule(_CIFARDataModule):
    """CIFAR-100 via ``torchvision.datasets.CIFAR100``: pickles in ``DATA_DIR/cifar-100-python``.

    Split, augmentation and normalisation as for ``cifar10`` (``cifar`` uses CIFAR-100's own
    mean/std); labels are the 100 fine labels.
    """

    name = "cifar100"
    title = "CIFAR-100"
    default_num_classes = 100
    folder = "cifar-100-python"
    train_files = ("train",)
    val_files = ("test",)
    meta_file = "meta"
    label_key = "fine_labels"

    def _tv_class(self):
        return CIFAR100Files


# ---------------------------------------------------------------------------------------------
# ImageNet / generic ImageFolder
# ---------------------------------------------------------------------------------------------


def safe_pil_loader(path: str):
    """torchvision's PIL loader, but an unreadable image is a one-line BnnlabError naming it."""
    from PIL import Image

    try:
        with open(path, "rb") as f:
            img = Image.open(f)
            return img.convert("RGB")
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataFileError(f"cannot read image {path}: {_first_line(exc)}") from None


def _class_dirs(path: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(path) if e.is_dir() and not e.name.startswith("."))


@DATASETS.register("imagenet")
class ImageNetDataModule(BnnDataModule):
    """ImageNet (ILSVRC-2012) in ImageFolder layout: ``DATA_DIR/train/<wnid>/*.JPEG`` and
    ``DATA_DIR/val/<wnid>/*`` (the validation images sorted into class folders).

    Classes are the ``train/`` folder names (sorted); ``val/`` must hold the same ones.
    Split: train / val as given (val = the 50 000 official validation images).
    Transforms: train ``RandomResizedCrop(image_size)`` + horizontal flip (``augment=False``: the
    val transform), val ``Resize(round(image_size * 256 / 224))`` + ``CenterCrop(image_size)``;
    ``image_size`` defaults to 224. Normalisation: ImageNet mean/std (``imagenet``, default),
    ``pm1`` or ``none``. It cannot be downloaded automatically.
    Corrupt images are reported (BnnlabError naming the file) when they are loaded.
    """

    name = "imagenet"
    title = "ImageNet"
    default_num_classes = 1000
    default_in_channels = 3
    default_input_size = 224
    default_train_size = 1281167
    default_val_size = 50000
    normalizations = ("imagenet", "pm1", "none")

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if self.download:
            raise BnnlabError(
                f"{self.title} cannot be downloaded automatically: get it yourself and pass "
                "--data-dir DIR with train/<class>/ and val/<class>/ folders"
            )
        self._classes: list[str] | None = None

    def _how(self) -> str:
        what = "ImageNet cannot be downloaded automatically (ILSVRC-2012 from image-net.org)" \
            if self.name == "imagenet" else "nothing is downloaded for it"
        return (
            "pass --data-dir DIR pointing at a folder with train/<class>/*.JPEG and "
            f"val/<class>/* image folders; {what}"
        )

    @property
    def num_classes(self) -> int:
        if self._classes is None and (self.data_dir / "train").is_dir():
            self.check()
        if self._classes is not None:
            return len(self._classes)
        return super().num_classes

    @property
    def classes(self) -> list[str]:
        self.check()
        assert self._classes is not None
        return list(self._classes)

    def check(self) -> None:
        if self._classes is not None:
            return
        for split in ("train", "val"):
            path = self.data_dir / split
            if not path.is_dir():
                raise self._missing(path, self._how())
        train = _class_dirs(self.data_dir / "train")
        if not train:
            raise self._missing(self.data_dir / "train" / "<class>", self._how())
        val = _class_dirs(self.data_dir / "val")
        if val != train:
            only_train, only_val = sorted(set(train) - set(val)), sorted(set(val) - set(train))
            detail = "; ".join(
                f"only in {where}: {', '.join(names[:3])}{' ...' if len(names) > 3 else ''}"
                for where, names in (("train/", only_train), ("val/", only_val)) if names
            )
            raise BnnlabError(
                f"{self.title} class folders differ between {self.data_dir / 'train'} and "
                f"{self.data_dir / 'val'} ({len(train)} vs {len(val)}; {detail})"
            )
        self._classes = train

    def _transform(self, train: bool):
        from torchvision import transforms as T

        size = self.input_size
        if train and self.augment:
            tf = [T.RandomResizedCrop(size), T.RandomHorizontalFlip()]
        else:
            tf = [T.Resize(round(size * 256 / 224)), T.CenterCrop(size)]
        tf += [T.ToTensor(), *_normalize_transform(self.normalize, self.normalize, 3)]
        return T.Compose(tf)

    def _load(self, split: str) -> Dataset:
        from torchvision.datasets import ImageFolder

        self.check()
        path = self.data_dir / split
        try:
            return ImageFolder(str(path), transform=self._transform(split == "train"), loader=safe_pil_loader)
        except (FileNotFoundError, OSError) as exc:
            raise DataFileError(f"cannot read {self.title} split {path}: {_first_line(exc)}") from None


@DATASETS.register("imagefolder")
class ImageFolderDataModule(ImageNetDataModule):
    """Any ImageFolder tree ``DATA_DIR/train/<class>/*`` and ``DATA_DIR/val/<class>/*``.

    Same transforms and rules as ``imagenet``; the number of classes and samples come from the
    folders (so ``num_classes`` reads ``train/`` -- class folders only -- on first access).
    """

    name = "imagefolder"
    title = "image folder"
    default_num_classes = None
    default_train_size = None
    default_val_size = None

    @property
    def num_classes(self) -> int:
        self.check()
        assert self._classes is not None
        return len(self._classes)


# ---------------------------------------------------------------------------------------------
# Factory
# ---------------------------------------------------------------------------------------------


def create_datamodule(
    name: str,
    data_dir: str | os.PathLike | None = None,
    batch_size: int = 128,
    seed: int = 0,
    val_fraction: float | None = None,
    download: bool = False,
    augment: bool = True,
    num_workers: int = 0,
    image_size: int | None = None,
    train_limit: int | None = None,
    val_limit: int | None = None,
    normalize: str | None = None,
    **extra: Any,
) -> BnnDataModule:
    """Build the data module registered as ``name`` (see the module docstring for the table).

    ``normalize=None`` picks the dataset's default (``pm1`` everywhere except ImageNet /
    ImageFolder, which use ImageNet mean/std). ``extra`` holds dataset-specific options
    (``synthetic``: ``num_classes``, ``in_channels``). Nothing touches disk until ``check()``,
    ``setup()`` or a size that needs the files.
    """
    cls = DATASETS.get(name)
    try:
        return cls(
            data_dir=data_dir, batch_size=batch_size, seed=seed, val_fraction=val_fraction,
            download=download, augment=augment, num_workers=num_workers, image_size=image_size,
            train_limit=train_limit, val_limit=val_limit, normalize=normalize, **extra,
        )
    except TypeError as exc:
        if extra and "unexpected keyword" in str(exc):
            raise BnnlabError(f"dataset '{name}' does not take {', '.join(sorted(extra))}") from None
        raise


def dataset_info(name: str) -> DatasetInfo:
    """Classes, channels, input size and split sizes of a dataset, without touching disk."""
    return DATASETS.get(name).info()


def list_datasets() -> list[str]:
    return DATASETS.names()
