"""Real datasets for evaluation and teacher training: the image datasets read from the files users keep on disk
(CIFAR-10/100, SVHN, Tiny-ImageNet; :func:`load_images` by name) and device-resident batches, and the embedded
benchmarks' data (scikit-learn's digits, MNIST-1D generated locally) as labelled splits."""

from .base import ImageData, ImageFormatError, ImageSet
from .cifar import DATASETS, CifarData, CifarFormatError, CifarSpec, RestrictedUnpickler, dataset_spec, load_cifar
from .digits import load_digits_split
from .images import IMAGE_SETS, image_set, load_images
from .loader import DeviceLoader, Normalize, random_crop_flip
from .mnist1d import MNIST1DSpec, load_mnist1d
from .splits import LabelledSplit
from .svhn import SvhnFormatError, load_svhn
from .tiny_imagenet import TinyImageNetFormatError, load_tiny_imagenet

__all__ = ["DATASETS", "IMAGE_SETS", "CifarData", "CifarFormatError", "CifarSpec", "DeviceLoader", "ImageData",
           "ImageFormatError", "ImageSet", "LabelledSplit", "MNIST1DSpec", "Normalize", "RestrictedUnpickler",
           "SvhnFormatError", "TinyImageNetFormatError", "dataset_spec", "image_set", "load_cifar",
           "load_digits_split", "load_images", "load_mnist1d", "load_svhn", "load_tiny_imagenet",
           "random_crop_flip"]
