"""SVHN reading: both layouts bit-exactly, the 10-means-0 labels, the extra split, the registry, each bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.io import loadmat, savemat

from lrwa_fast.data import IMAGE_SETS, ImageFormatError, SvhnFormatError, image_set, load_images, load_svhn
from lrwa_fast.testing import write_svhn_files


def written(file):
    """X and y as scipy reads them back (trusted: the test wrote them)."""
    content = loadmat(file)
    return content["X"], content["y"]


@pytest.mark.parametrize("layout", ["folder", "root_with_svhn"])
def test_reads_both_splits_bit_exactly(tmp_path, layout):
    folder = write_svhn_files(tmp_path / "svhn" if layout == "root_with_svhn" else tmp_path, train=13, test=5,
                              seed=3)
    data = load_images("svhn", tmp_path)
    assert data.spec is IMAGE_SETS["svhn"] and data.spec.mean == (0.4377, 0.4438, 0.4728)
    for split, x, y in (("train", data.x_train, data.y_train), ("test", data.x_test, data.y_test)):
        raw_x, raw_y = written(folder / f"{split}_32x32.mat")
        assert x.dtype == torch.uint8 and y.dtype == torch.int64
        assert x.shape == (raw_x.shape[3], 3, 32, 32) and y.shape == (raw_x.shape[3],)
        assert np.array_equal(x.numpy(), raw_x.transpose(3, 2, 0, 1))
        # X is (row, column, channel, image): image 1's green value at row 2, column 7
        assert x[1, 1, 2, 7] == raw_x[2, 7, 1, 1] and x[1, 1, 2, 7] != x[1, 1, 7, 2]
        tens = raw_y[:, 0] == 10
        assert tens.any() and not (y.numpy()[tens]).any(), "label 10 is the digit 0"
        assert np.array_equal(y.numpy()[~tens], raw_y[~tens, 0])
    assert data.x_train.shape[0] == 13 and data.x_test.shape[0] == 5


def test_train_false_reads_only_the_test_file(tmp_path):
    folder = write_svhn_files(tmp_path, train=4, test=3)
    (folder / "train_32x32.mat").unlink()
    data = load_images("svhn", tmp_path, train=False)
    assert data.x_train.shape == (0, 3, 32, 32) and data.y_train.shape == (0,) and data.y_train.dtype == torch.int64
    assert data.x_test.shape == (3, 3, 32, 32)


def test_the_extra_split_is_read_only_when_asked(tmp_path):
    write_svhn_files(tmp_path, train=4, test=3, extra=5, seed=1)
    plain = load_svhn(tmp_path)
    assert plain.x_train.shape[0] == 4 and load_images("svhn", tmp_path).x_train.shape[0] == 4
    both = load_svhn(tmp_path, extra=True)
    extra_x, extra_y = written(tmp_path / "extra_32x32.mat")
    assert torch.equal(both.x_train[:4], plain.x_train) and torch.equal(both.y_train[:4], plain.y_train)
    assert np.array_equal(both.x_train[4:].numpy(), extra_x.transpose(3, 2, 0, 1))
    assert np.array_equal(both.y_train[4:].numpy(), extra_y[:, 0] % 10)
    (tmp_path / "extra_32x32.mat").unlink()
    with pytest.raises(SvhnFormatError, match=r"lacks extra_32x32.mat \(expected train_32x32.mat, "
                                              r"extra_32x32.mat, test_32x32.mat\)"):
        load_svhn(tmp_path, extra=True)


def test_the_registry_has_the_statistics_and_their_source():
    assert image_set("svhn").std == (0.1980, 0.2010, 0.1970) and "ZSKT" in image_set("svhn").stats_source
    assert image_set("svhn").num_classes == 10 and image_set("svhn").image_size == 32


def v73_file(path):
    """The 128-byte header of a MATLAB v7.3 file (version 0x0200) followed by an HDF5 signature."""
    text = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    path.write_bytes(text.ljust(116, b" ") + bytes(8) + b"\x00\x02IM" + bytes(384) + b"\x89HDF\r\n\x1a\n" + bytes(64))


@pytest.mark.parametrize("damage, message", [
    ("truncate", r"test_32x32.mat: truncated or not a MATLAB file"),
    ("foreign", r"test_32x32.mat: truncated or not a MATLAB file"),
    ("v73", r"test_32x32.mat: a MATLAB v7.3 \(HDF5\) file; only the MATLAB v5 files as distributed"),
    ("no_x", r"test_32x32.mat: no 'X' variable \(found \['images', 'y'\]\)"),
    ("wrong_dtype", r"test_32x32.mat: 'X' must be a uint8 array of shape \(32, 32, 3, N\), got float64 array of "
                    r"shape \(32, 32, 3, 2\)"),
    ("wrong_shape", r"test_32x32.mat: 'X' must be a uint8 array of shape \(32, 32, 3, N\), got uint8 array of "
                    r"shape \(3, 32, 32, 2\)"),
    ("text_labels", r"test_32x32.mat: 'y' must be an array of integer labels, got <U1 array"),
    ("label_count", r"test_32x32.mat: 'y' has shape \(3, 1\), expected \(2, 1\) \(one label per image\)"),
    ("label_zero", r"test_32x32.mat: labels must lie in 1..10 \(10 stands for the digit 0\), found 0..10"),
    ("label_eleven", r"test_32x32.mat: labels must lie in 1..10 \(10 stands for the digit 0\), found 1..11"),
    ("fractional", r"test_32x32.mat: 'y' holds labels that are not integers"),
])
def test_bad_files_name_the_file_and_the_problem(tmp_path, damage, message):
    folder = write_svhn_files(tmp_path, train=3, test=2)
    file = folder / "test_32x32.mat"
    x = np.zeros((32, 32, 3, 2), np.uint8)
    y = np.array([[1], [10]], np.uint8)
    if damage == "truncate":
        file.write_bytes(file.read_bytes()[:300])
    elif damage == "foreign":
        file.write_bytes(b"PK\x03\x04 this is a zip file, not a MATLAB one" * 10)
    elif damage == "v73":
        v73_file(file)
    else:
        content = {"no_x": {"images": x, "y": y}, "wrong_dtype": {"X": x.astype(np.float64), "y": y},
                   "wrong_shape": {"X": x.transpose(2, 0, 1, 3).copy(), "y": y},
                   "text_labels": {"X": x, "y": np.array([["a"], ["b"]])},
                   "label_count": {"X": x, "y": np.array([[1], [2], [3]], np.uint8)},
                   "label_zero": {"X": x, "y": np.array([[0], [10]], np.uint8)},
                   "label_eleven": {"X": x, "y": np.array([[1], [11]], np.uint8)},
                   "fractional": {"X": x, "y": np.array([[1.0], [2.5]])}}[damage]
        savemat(file, content, format="5")
    with pytest.raises(SvhnFormatError, match=message):
        load_images("svhn", tmp_path)


def test_missing_files_say_what_was_expected(tmp_path):
    with pytest.raises(SvhnFormatError, match=r"no SVHN data at .*: expected train_32x32.mat, test_32x32.mat in "
                                              r"that folder or in its 'svhn' folder"):
        load_images("svhn", tmp_path)
    write_svhn_files(tmp_path / "svhn", train=3, test=2)
    (tmp_path / "svhn" / "test_32x32.mat").unlink()
    with pytest.raises(SvhnFormatError, match=r"SVHN folder .*svhn' lacks test_32x32.mat \(expected "
                                              r"train_32x32.mat, test_32x32.mat\)") as caught:
        load_images("svhn", tmp_path)
    assert isinstance(caught.value, ImageFormatError) and isinstance(caught.value, ValueError)
