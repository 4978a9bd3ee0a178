"""CIFAR reading: every accepted layout bit-exactly, the restricted unpickler, each bad input, device batches."""

from __future__ import annotations

import os
import pickle
import tarfile

import numpy as np
import pytest
import torch

from lrwa_fast.data import CifarFormatError, DeviceLoader, Normalize, load_cifar, random_crop_flip
from lrwa_fast.data.cifar import DATASETS
from lrwa_fast.runtime.metrics import accuracy
from lrwa_fast.testing.cifar_files import write_synthetic_cifar
from tests.support import CallsAFunction


def expected_split(folder, files, label_key):
    """The split as read by plain pickle (trusted: the test wrote it)."""
    xs, ys = [], []
    for name in files:
        with open(folder / name, "rb") as fh:
            d = pickle.load(fh, encoding="bytes")
        xs.append(d[b"data"].reshape(-1, 3, 32, 32))
        ys += d[label_key.encode()]
    return np.concatenate(xs), np.array(ys)


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
@pytest.mark.parametrize("layout", ["root", "folder", "archive", "root_with_archive"])
def test_reads_every_layout_bit_exactly(tmp_path, name, layout):
    spec = DATASETS[name]
    folder = write_synthetic_cifar(tmp_path / "ref", name, train=13, test=5, seed=3)
    archive = write_synthetic_cifar(tmp_path / "arc", name, train=13, test=5, seed=3, archive=True)
    if layout == "root_with_archive":
        (tmp_path / "only").mkdir()
        os.replace(archive, tmp_path / "only" / spec.archive)
    path = {"root": tmp_path / "ref", "folder": folder, "archive": archive,
            "root_with_archive": tmp_path / "only"}[layout]
    data = load_cifar(name, path)
    x_train, y_train = expected_split(folder, spec.train_files, spec.label_key)
    x_test, y_test = expected_split(folder, spec.test_files, spec.label_key)
    assert data.x_train.dtype == torch.uint8 and data.y_train.dtype == torch.int64
    assert data.x_train.shape == (13, 3, 32, 32) and data.x_test.shape == (5, 3, 32, 32)
    assert np.array_equal(data.x_train.numpy(), x_train) and np.array_equal(data.y_train.numpy(), y_train)
    assert np.array_equal(data.x_test.numpy(), x_test) and np.array_equal(data.y_test.numpy(), y_test)
    # channel planes: the first 1024 bytes of a row are the red plane, row-major
    with open(folder / spec.test_files[0], "rb") as fh:
        row = pickle.load(fh, encoding="bytes")[b"data"][0]
    assert np.array_equal(data.x_test[0, 0].numpy(), row[:1024].reshape(32, 32))
    assert np.array_equal(data.x_test[0, 2, 1].numpy(), row[2048 + 32: 2048 + 64])



def write_file(folder, name, obj=None, raw=None):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(raw if raw is not None else pickle.dumps(obj, protocol=2))


def test_restricted_unpickler_refuses_a_file_that_calls_a_function(tmp_path):
    folder = write_synthetic_cifar(tmp_path, "cifar10", train=5, test=2)
    marker = tmp_path / "pwned"
    write_file(folder, "data_batch_2", {b"data": CallsAFunction(marker), b"labels": [0]})
    with pytest.raises(CifarFormatError, match=r"data_batch_2: refused to load '(posix|os)\.system'"):
        load_cifar("cifar10", tmp_path)
    assert not marker.exists(), "the function must never run"


@pytest.mark.parametrize("damage, message", [
    ("truncate", r"test_batch: truncated or not a CIFAR pickle"),
    ("foreign", r"test_batch: truncated or not a CIFAR pickle"),
    ("not_dict", r"test_batch: expected a pickled dict, got list"),
    ("no_labels", r"test_batch: no 'labels' entry"),
    ("wrong_dtype", r"test_batch: 'data' must be a uint8 array of shape \(N, 3072\), got float32 array"),
    ("wrong_width", r"test_batch: 'data' must be a uint8 array of shape \(N, 3072\), got uint8 array of shape "
                    r"\(2, 1024\)"),
    ("label_count", r"test_batch: 'labels' has shape \(3,\), expected \(2,\)"),
    ("label_range", r"test_batch: labels must lie in \[0, 10\), found 0\.\.10"),
])
def test_bad_files_name_the_file_and_the_problem(tmp_path, damage, message):
    folder = write_synthetic_cifar(tmp_path, "cifar10", train=5, test=2)
    good = (folder / "test_batch").read_bytes()
    data = np.zeros((2, 3072), np.uint8)
    content = {
        "truncate": dict(raw=good[: len(good) // 2]),
        "foreign": dict(raw=b"PK\x03\x04 this is a zip file"),
        "not_dict": dict(obj=[1, 2]),
        "no_labels": dict(obj={b"data": data}),
        "wrong_dtype": dict(obj={b"data": data.astype(np.float32), b"labels": [0, 1]}),
        "wrong_width": dict(obj={b"data": data[:, :1024], b"labels": [0, 1]}),
        "label_count": dict(obj={b"data": data, b"labels": [0, 1, 2]}),
        "label_range": dict(obj={b"data": data, b"labels": [0, 10]}),
    }[damage]
    write_file(folder, "test_batch", **content)
    with pytest.raises(CifarFormatError, match=message):
        load_cifar("cifar10", tmp_path)


def test_missing_folder_file_and_member_say_what_was_expected(tmp_path):
    with pytest.raises(CifarFormatError, match=r"no cifar100 data at .*expected the folder 'cifar-100-python' "
                                               r"\(holding train, test\) or the archive 'cifar-100-python.tar.gz'"):
        load_cifar("cifar100", tmp_path)
    folder = write_synthetic_cifar(tmp_path, "cifar10", train=5, test=2)
    (folder / "data_batch_3").unlink()
    (folder / "test_batch").unlink()
    with pytest.raises(CifarFormatError, match=r"folder .*cifar-10-batches-py' lacks data_batch_3, test_batch "
                                               r"\(expected data_batch_1, .*, test_batch\)"):
        load_cifar("cifar10", tmp_path)
    archive = tmp_path / "partial.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder / "data_batch_1", arcname="cifar-10-batches-py/data_batch_1")
    with pytest.raises(CifarFormatError, match=r"partial.tar.gz' lacks cifar-10-batches-py/data_batch_2"):
        load_cifar("cifar10", archive)
    broken = tmp_path / "broken.tar.gz"
    broken.write_bytes(archive.read_bytes()[:40])
    with pytest.raises(CifarFormatError, match=r"broken.tar.gz' is not a readable .tar.gz"):
        load_cifar("cifar10", broken)
    with pytest.raises(ValueError, match=r"unknown dataset 'cifar1000'"):
        load_cifar("cifar1000", tmp_path)


def test_normalize_matches_the_formula():
    images = torch.randint(0, 256, (4, 3, 5, 5), dtype=torch.uint8)
    mean, std = (0.1, 0.5, 0.9), (0.2, 0.3, 0.4)
    out = Normalize(mean, std)(images)
    expected = (images.double() / 255 - torch.tensor(mean, dtype=torch.float64).view(1, 3, 1, 1)) \
        / torch.tensor(std, dtype=torch.float64).view(1, 3, 1, 1)
    torch.testing.assert_close(out.double(), expected, rtol=1e-6, atol=1e-6)


def test_random_crop_flip_is_a_padded_crop_possibly_mirrored():
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(1, 256, (64, 3, 8, 8), dtype=torch.uint8)
    out = random_crop_flip(images, padding=2, flip=True, rng=gen)
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    flips = 0
    for img, pad in zip(out, padded):
        crops = {(dy, dx, f) for dy in range(5) for dx in range(5) for f in (False, True)
                 if torch.equal(img, (pad[:, dy: dy + 8, dx: dx + 8].flip(-1) if f else pad[:, dy: dy + 8,
                                                                                                  dx: dx + 8]))}
        assert crops, "every output is a crop of the padded image, mirrored or not"
        flips += all(f for _, _, f in crops)
    assert 16 < flips < 48, f"about half mirrored, got {flips}/64"
    assert torch.equal(random_crop_flip(images, padding=0, flip=False, rng=gen), images)


def test_device_loader_covers_the_epoch_once_and_normalises():
    images = torch.randint(0, 256, (10, 3, 4, 4), dtype=torch.uint8)
    labels = torch.arange(10)
    norm = Normalize((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    loader = DeviceLoader(images, labels, 4, norm, device=torch.device("cpu"), padding=0, flip=False, seed=1)
    assert len(loader) == 3
    seen = []
    for x, y in loader:
        assert x.dtype == torch.float32
        torch.testing.assert_close(x, norm(images[y]))
        seen += y.tolist()
    assert sorted(seen) == list(range(10)) and seen != list(range(10))


def test_accuracy_applies_the_transform_per_batch():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3, 2))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[1.0, 0, 0], [-1.0, 0, 0]]))
        model[1].bias.zero_()
    x = torch.tensor([[[[0]], [[0]], [[0]]], [[[255]], [[0]], [[0]]]], dtype=torch.uint8).repeat(3, 1, 1, 1)
    y = torch.tensor([1, 0] * 3)
    norm = Normalize((0.5, 0.5, 0.5), (1.0, 1.0, 1.0))  # 0 → −0.5 (class 1), 255 → +0.5 (class 0)
    assert accuracy(model, x, y, batch=4, transform=norm) == 1.0
    assert accuracy(model, x.float(), y, batch=4) == 0.5
