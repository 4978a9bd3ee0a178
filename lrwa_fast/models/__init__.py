"""Model zoo: the generators (images, 1-D signals), the demo CNNs, the MNIST-1D CNNs, and the classifiers of the DFKD
benchmark tables (CIFAR ResNets, Wide ResNets, VGG, MobileNetV2, ShuffleNetV2), built by name; teacher files of
the community's code bases read into them (:func:`load_teacher`)."""

from .cnn import SmallCNN
from .generator import Generator
from .mobilenet import MobileNetV2
from .resnet import ResNet, cifar_resnet, resnet18, resnet34, resnet50
from .shufflenet import CRDShuffleNetV2, ShuffleNetV2
from .signal import SignalCNN, SignalGenerator
from .teacher_file import TeacherFile, TeacherFileError, load_teacher
from .vgg import VGG, ClassicVGG
from .wrn import WideResNet
from .zoo import MODELS, build_model, model_names

__all__ = [
           "MODELS",
           "VGG",
           "CRDShuffleNetV2",
           "ClassicVGG",
           "Generator",
           "MobileNetV2",
           "ResNet",
           "ShuffleNetV2",
           "SignalCNN",
           "SignalGenerator",
           "SmallCNN",
           "TeacherFile",
           "TeacherFileError",
           "WideResNet",
           "build_model",
           "cifar_resnet",
           "load_teacher",
           "model_names",
           "resnet18",
           "resnet34",
           "resnet50",
]
