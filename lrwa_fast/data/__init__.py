"""Real datasets for evaluation and teacher training: CIFAR-10/100 readers and device-resident batches, and
the embedded benchmarks' data (scikit-learn's digits, MNIST-1D generated locally) as labelled splits."""

from .cifar import DATASETS, CifarData, CifarFormatError, CifarSpec, RestrictedUnpickler, dataset_spec, load_cifar
from .digits import load_digits_split
from .loader import DeviceLoader, Normalize, random_crop_flip
from .mnist1d import MNIST1DSpec, load_mnist1d
from .splits import LabelledSplit

__all__ = ["DATASETS", "CifarData", "CifarFormatError", "CifarSpec", "DeviceLoader", "LabelledSplit", "MNIST1DSpec",
           "Normalize", "RestrictedUnpickler", "dataset_spec", "load_cifar", "load_digits_split", "load_mnist1d",
           "random_crop_flip"]
