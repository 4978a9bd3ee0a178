"""The image-set registry: every dataset by name, the one place of each normalisation, the unknown name, and
``load_images`` giving what each dataset's own reader gives."""

from __future__ import annotations

import pytest
import torch

from lrwa_fast.data import (
    IMAGE_SETS,
    CifarData,
    ImageData,
    image_set,
    load_cifar,
    load_images,
    load_svhn,
    load_tiny_imagenet,
)
from lrwa_fast.data.cifar import DATASETS
from lrwa_fast.testing import write_svhn_files, write_synthetic_cifar, write_tiny_imagenet


def test_every_dataset_by_name_with_its_facts():
    assert sorted(IMAGE_SETS) == ["cifar10", "cifar100", "svhn", "tiny_imagenet"]
    assert [(s.num_classes, s.image_size) for s in IMAGE_SETS.values()] == [(10, 32), (100, 32), (10, 32),
                                                                            (200, 64)]
    for name, spec in IMAGE_SETS.items():
        assert spec.name == name and len(spec.mean) == len(spec.std) == 3 and spec.stats_source and spec.layout
        assert "\n" not in spec.stats_source + spec.layout
    assert image_set("cifar10").mean == (0.4914, 0.4822, 0.4465)
    assert not hasattr(DATASETS["cifar10"], "mean"), "the CIFAR normalisation is written once, in its ImageSet"
    assert image_set("cifar100").num_classes == DATASETS["cifar100"].num_classes
    assert CifarData is ImageData
    with pytest.raises(ValueError, match=r"unknown dataset 'mnist'; expected one of \['cifar10', 'cifar100', "
                                         r"'svhn', 'tiny_imagenet'\]"):
        load_images("mnist", ".")


@pytest.mark.parametrize("name", sorted(IMAGE_SETS))
@pytest.mark.parametrize("train", [True, False])
def test_load_images_gives_what_each_reader_gives(tmp_path, name, train):
    if name.startswith("cifar"):
        write_synthetic_cifar(tmp_path, name, train=7, test=3)
        own = load_cifar(name, tmp_path, train=train)
    elif name == "svhn":
        write_svhn_files(tmp_path, train=7, test=3)
        own = load_svhn(tmp_path, train=train)
    else:
        write_tiny_imagenet(tmp_path, classes=2, per_class=3, val=3)
        own = load_tiny_imagenet(tmp_path, train=train)
    data = load_images(name, tmp_path, train=train)
    size = IMAGE_SETS[name].image_size
    assert data.spec is own.spec is IMAGE_SETS[name]
    assert data.x_train.shape == ((7 if name != "tiny_imagenet" else 6) if train else 0, 3, size, size)
    assert data.x_test.shape == (3, 3, size, size)
    for field in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(data, field), getattr(own, field)), field
    assert data.y_train.dtype == data.y_test.dtype == torch.int64 and data.x_test.dtype == torch.uint8
    assert int(data.y_test.max()) < data.spec.num_classes
