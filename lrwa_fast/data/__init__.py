"""Real datasets for evaluation and teacher training: CIFAR-10/100 readers and device-resident batches."""

from .cifar import DATASETS, CifarData, CifarFormatError, CifarSpec, RestrictedUnpickler, dataset_spec, load_cifar
from .loader import DeviceLoader, Normalize, random_crop_flip

__all__ = ["DATASETS", "CifarData", "CifarFormatError", "CifarSpec", "DeviceLoader", "Normalize",
           "RestrictedUnpickler", "dataset_spec", "load_cifar", "random_crop_flip"]
