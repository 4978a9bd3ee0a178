"""Tiny-ImageNet reading: the extracted layout from either path, sorted-wnid labels, images as Pillow decodes them
(RGB channel order, greyscale made RGB), the test split alone, each bad input naming its file, no Pillow."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from PIL import Image

from lrwa_fast.data import IMAGE_SETS, TinyImageNetFormatError, load_images, load_tiny_imagenet
from lrwa_fast.testing import write_tiny_imagenet


def decoded(path):
    """An independent decode of one JPEG: Pillow, converted to RGB, as (3, 64, 64)."""
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB")).transpose(2, 0, 1)


def annotations(root):
    return [line.split("\t") for line in (root / "val" / "val_annotations.txt").read_text().splitlines()]


@pytest.mark.parametrize("which", ["parent", "root"])
def test_reads_both_splits_with_sorted_wnid_labels(tmp_path, which):
    root = write_tiny_imagenet(tmp_path, classes=3, per_class=4, val=6, seed=2)
    listed = (root / "wnids.txt").read_text().split()
    assert listed != sorted(listed), "the harness writes wnids.txt unsorted, as the real one is"
    data = load_images("tiny_imagenet", tmp_path if which == "parent" else root)
    assert data.spec is IMAGE_SETS["tiny_imagenet"] and data.spec.mean == (0.485, 0.456, 0.406)
    assert data.x_train.dtype == torch.uint8 and data.y_train.dtype == data.y_test.dtype == torch.int64
    assert data.x_train.shape == (12, 3, 64, 64) and data.x_test.shape == (6, 3, 64, 64)
    order = sorted(listed)
    expected = [(order.index(w), root / "train" / w / "images" / f"{w}_{k}.JPEG") for w in order for k in range(4)]
    assert data.y_train.tolist() == [label for label, _ in expected]
    for x, (_, file) in zip(data.x_train, expected):
        assert np.array_equal(x.numpy(), decoded(file))
    rows = annotations(root)
    assert data.y_test.tolist() == [order.index(wnid) for _, wnid, *_ in rows]
    for x, (name, *_) in zip(data.x_test, rows):
        assert np.array_equal(x.numpy(), decoded(root / "val" / "images" / name))


def test_class_indices_follow_the_sorted_ids_whatever_the_file_order(tmp_path):
    root = write_tiny_imagenet(tmp_path, classes=4, per_class=1, val=4, seed=5)
    before = load_tiny_imagenet(root)
    listed = (root / "wnids.txt").read_text().split()
    (root / "wnids.txt").write_text("\n".join(reversed(listed)) + "\n")
    after = load_tiny_imagenet(root)
    assert torch.equal(before.y_train, after.y_train) and torch.equal(before.y_test, after.y_test)
    assert torch.equal(before.x_train, after.x_train)
    assert before.y_train.tolist() == [0, 1, 2, 3]


def test_channel_order_is_rgb_and_greyscale_becomes_three_equal_channels(tmp_path):
    root = write_tiny_imagenet(tmp_path, classes=2, per_class=2, val=1)
    first = (root / "wnids.txt").read_text().split()[0]
    grey = root / "train" / first / "images" / f"{first}_0.JPEG"
    with Image.open(grey) as img:
        assert img.mode == "L", "the harness writes one greyscale JPEG"
    red = root / "val" / "images" / "val_0.JPEG"
    Image.new("RGB", (64, 64), (255, 0, 0)).save(red, format="JPEG")
    data = load_tiny_imagenet(tmp_path)
    i = sorted((root / "wnids.txt").read_text().split()).index(first) * 2
    x = data.x_train[i]
    assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2]) and x.float().std() > 10
    assert np.array_equal(x[0].numpy(), np.asarray(Image.open(grey)))
    assert data.x_test[0, 0].min() > 240 and data.x_test[0, 1:].max() < 15, "channel 0 is red"


def test_train_false_reads_no_training_image(tmp_path):
    root = write_tiny_imagenet(tmp_path, classes=2, per_class=2, val=3)
    for file in (root / "train").rglob("*.JPEG"):
        file.write_bytes(b"not a JPEG: it must not be opened")
    data = load_images("tiny_imagenet", tmp_path, train=False)
    assert data.x_train.shape == (0, 3, 64, 64) and data.y_train.shape == (0,) and data.y_train.dtype == torch.int64
    assert data.x_test.shape == (3, 3, 64, 64)
    with pytest.raises(TinyImageNetFormatError, match=r"_0.JPEG: cannot be decoded as a JPEG image"):
        load_images("tiny_imagenet", tmp_path)


def damage(root, what):
    """Break one thing of a written Tiny-ImageNet; returns the name the error message must give."""
    first = sorted((root / "wnids.txt").read_text().split())[0]
    ann = root / "val" / "val_annotations.txt"
    lines = ann.read_text().splitlines()
    if what == "no_train_folder":
        for file in (root / "train" / first / "images").iterdir():
            file.unlink()
        (root / "train" / first / "images").rmdir()
        return rf"no folder '.*train/{first}/images': expected train/<wnid>/images/ for every id of wnids.txt"
    if what == "no_train_image":
        for file in (root / "train" / first / "images").iterdir():
            file.unlink()
        return rf"no JPEG image in '.*train/{first}/images'"
    if what == "no_annotations":
        ann.unlink()
        return r"no '.*val_annotations.txt': expected val/val_annotations.txt labelling val/images/"
    if what in ("short_line", "bad_box", "path_in_name"):
        fields = lines[1].split("\t")
        lines[1] = {"short_line": "\t".join(fields[:2]), "bad_box": "\t".join([*fields[:5], "x"]),
                    "path_in_name": "\t".join(["../../secret.JPEG", *fields[1:]])}[what]
        ann.write_text("\n".join(lines) + "\n")
        return r"val_annotations.txt, line 2: expected 'file<TAB>wnid<TAB>x0<TAB>y0<TAB>x1<TAB>y1', got"
    if what == "unknown_wnid":
        lines[2] = lines[2].replace(lines[2].split("\t")[1], "n00000042")
        ann.write_text("\n".join(lines) + "\n")
        return r"val_annotations.txt, line 3: unknown WordNet id 'n00000042' \(not in wnids.txt\)"
    if what == "twice_annotated":
        ann.write_text("\n".join([*lines, lines[0]]) + "\n")
        return rf"val_annotations.txt, line {len(lines) + 1}: 'val_0.JPEG' annotated twice"
    if what == "missing_image":
        (root / "val" / "images" / "val_1.JPEG").unlink()
        return r"val_1.JPEG: no such image"
    if what in ("garbage", "truncated", "png"):
        file = root / "val" / "images" / "val_1.JPEG"
        if what == "garbage":
            file.write_bytes(b"\x00" * 100)
        elif what == "truncated":
            file.write_bytes(file.read_bytes()[:400])
        else:
            Image.new("RGB", (64, 64)).save(file, format="PNG")
        return r"val_1.JPEG: cannot be decoded as a JPEG image"
    if what == "wrong_size":
        Image.new("RGB", (32, 48)).save(root / "val" / "images" / "val_1.JPEG", format="JPEG")
        return r"val_1.JPEG: a 32x48 image, expected 64x64"
    if what == "bad_wnid":
        (root / "wnids.txt").write_text(f"{first}\n../etc\n")
        return r"wnids.txt, line 2: '../etc' is not a WordNet id"
    if what == "duplicate_wnid":
        (root / "wnids.txt").write_text(f"{first}\n\n{first}\n")
        return rf"wnids.txt, line 3: '{first}' listed twice \(first on line 1\)"
    if what == "empty_wnids":
        (root / "wnids.txt").write_text("\n")
        return r"wnids.txt: expected 1 to 200 WordNet ids, found 0"
    if what == "too_many_wnids":
        (root / "wnids.txt").write_text("".join(f"n{i:08d}\n" for i in range(201)))
        return r"wnids.txt: expected 1 to 200 WordNet ids, found 201"
    raise AssertionError(what)


@pytest.mark.parametrize("what", ["no_train_folder", "no_train_image", "no_annotations", "short_line", "bad_box",
                                  "path_in_name", "unknown_wnid", "twice_annotated", "missing_image", "garbage",
                                  "truncated", "png", "wrong_size", "bad_wnid", "duplicate_wnid", "empty_wnids",
                                  "too_many_wnids"])
def test_bad_input_names_the_file_and_the_problem(tmp_path, what):
    root = write_tiny_imagenet(tmp_path, classes=2, per_class=2, val=3)
    message = damage(root, what)
    with pytest.raises(TinyImageNetFormatError, match=message):
        load_images("tiny_imagenet", tmp_path)


def test_a_path_without_the_data_says_what_was_expected(tmp_path):
    with pytest.raises(TinyImageNetFormatError, match=r"no Tiny-ImageNet data at .*: expected the folder "
                                                      r"'tiny-imagenet-200' \(holding wnids.txt, train/ and val/\) "
                                                      r"or its parent"):
        load_images("tiny_imagenet", tmp_path)


def test_without_pillow_the_message_names_the_extra(tmp_path, monkeypatch):
    write_tiny_imagenet(tmp_path, classes=1, per_class=1, val=1)
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(ImportError, match=r"needs Pillow: pip install 'lrwa_fast\[images\]'"):
        load_images("tiny_imagenet", tmp_path)
