"""Load a teacher from the file a DFKD code base saved, whatever its layout: :func:`load_teacher`.

The file is read with ``torch.load(weights_only=True)``, which builds tensors and plain containers only and runs no
code from the file. The wrapper is taken off (:data:`WRAPPERS`, DataParallel's ``module.`` prefix, ``torch.compile``'s
``_orig_mod.``), the architecture is recognised from the tensors' names and shapes (:mod:`.layouts`), the code base
from the wrapper and the architecture. A file holding a whole pickled model is refused unless the caller opts in
(``allow_pickle``: that runs code from the file); a layout nobody knows is refused in a few lines.
"""

from __future__ import annotations

import argparse
import json
import math
import pickle
import pickletools
import re
import shlex
import zipfile
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..runtime.checkpoint import CheckpointError
from .layouts import LAYOUTS, NAMINGS, Layout, Stats, layout, wrn_names
from .zoo import MODELS, build_model

DOCS = "docs/teachers.md (Bring your teacher)"
# Keys that hold the weights in the wrappers the code bases save, by wrapper kind; "bare": the dict itself.
WRAPPERS = {"checkpoint": "state_dict", "state_dict": "state_dict", "model": "model", "net": "net",
            "model_state_dict": "model_state_dict"}
PREFIXES = ("module.", "_orig_mod.")  # DataParallel / DistributedDataParallel, torch.compile
# Plain values some code bases keep beside the weights (argparse options, numpy scalars and arrays): safe to rebuild,
# also under the names numpy 1.x pickled them with.
SAFE_EXTRAS: list[Any] = [argparse.Namespace, np.ndarray, np.dtype, np._core.multiarray.scalar,
                          np._core.multiarray._reconstruct,
                          (np._core.multiarray.scalar, "numpy.core.multiarray.scalar"),
                          (np._core.multiarray._reconstruct, "numpy.core.multiarray._reconstruct"),
                          *(getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith("DType"))]
_ALLOWED = {extra[1] if isinstance(extra, tuple) else f"{extra.__module__}.{extra.__qualname__}"
            for extra in SAFE_EXTRAS}
_GLOBAL = re.compile(r"GLOBAL [\w.]+ was not an allowed global")  # torch's weights-only refusal of a class


class TeacherFileError(CheckpointError):
    """A teacher file that cannot be loaded: a pickled model without the opt-in, an unknown layout, a file whose
    stated architecture its tensors contradict. The message names the file and what to do."""


class ArchitectureMismatch(TeacherFileError):
    """A file whose tensors are another architecture (``found``) than the one given or written in it."""

    def __init__(self, message: str, found: str) -> None:
        super().__init__(message)
        self.found = found


@dataclass
class TeacherFile:
    """A teacher read from a file: the model (CPU, eval mode), what it is, and where it came from."""

    path: str
    model: nn.Module
    arch: str
    num_classes: int
    in_channels: int
    wrapper: str  # "bare", "checkpoint", "state_dict", "model", "net", "lrwa_fast", "pickled module"
    names: str  # "lrwa_fast" (this library's) or "community" (layouts.NAMINGS; the same for most classes)
    layouts: tuple[Layout, ...]  # the code bases that save this wrapper and architecture; () unknown
    meta: dict[str, Any] = field(default_factory=dict)  # what the file holds besides the weights (no tensors)

    @property
    def layout(self) -> str:
        """The recognised layout(s), by name, for reports."""
        return " | ".join(known.name for known in self.layouts) or f"unknown code base ({self.wrapper}, {self.names})"

    @property
    def code_bases(self) -> str:
        """The code bases that save files this way, as users know them."""
        return " | ".join(known.title for known in self.layouts) or "unknown"

    def known_normalisation(self, dataset: str) -> tuple[Stats, str] | None:
        """The statistics the teacher was trained with on ``dataset`` and where that is written, when the file
        says so or every recognised code base agrees; ``None`` when unknown."""
        if "mean" in self.meta and "std" in self.meta:
            return (tuple(self.meta["mean"]), tuple(self.meta["std"])), f"the teacher file ({self.path})"
        found = {known.normalisation.get(dataset) for known in self.layouts}
        if len(found) != 1 or None in found:
            return None
        return found.pop(), "; ".join(f"{known.name}: {known.normalisation_source}" for known in self.layouts)

    def published_accuracy(self, dataset: str) -> tuple[float, str] | None:
        """The top-1 accuracy (%) published for this file's architecture on ``dataset`` when every recognised
        code base publishes the same one (a bare ResNet-34 may be DFAD's or the DataFree bundle's)."""
        found = {known.published.get((dataset, self.arch)) for known in self.layouts}
        if len(found) != 1 or None in found:
            return None
        return found.pop(), "; ".join(known.published_source for known in self.layouts)


def load_teacher(path: str | Path, arch: str | None = None, *, allow_pickle: bool = False) -> TeacherFile:
    """Read the classifier in ``path`` (any supported layout, see :mod:`.layouts`), check it against ``arch``
    when given, and return it in eval mode on the CPU with what was recognised.

    ``allow_pickle=True`` also loads a file holding a whole pickled model; that **runs code from the file**
    (only for files you trust; the model's class must be importable). Raises :class:`TeacherFileError` (a
    ``CheckpointError``) naming the file for anything it cannot load; nothing is written.
    """
    path = str(path)
    wrapper, state, meta = _unwrap(_read(path, allow_pickle), path)
    state = _strip_prefixes(state)
    _classes_and_channels(state, path)  # a classifier at all
    fit = _choose(_exact_fits(state, path, arch, _declared_arch(meta, wrapper)), wrapper)
    model = build_model(fit.arch, fit.num_classes, fit.in_channels)
    model.load_state_dict({fit.renamed[k]: v for k, v in state.items()}, strict=False)  # only counters may lack
    _check_stats(meta, fit.in_channels, path)
    return TeacherFile(path, model.eval(), fit.arch, fit.num_classes, fit.in_channels, wrapper, fit.names,
                       _code_bases(wrapper, fit.arch, fit.names), meta)


def _exact_fits(state: dict[str, Tensor], path: str, arch: str | None, declared: str | None) -> list[_Fit]:
    """The architectures ``state`` fits exactly: ``arch`` only when given, else the file's ``declared`` one when it
    names a zoo model, else any; :class:`TeacherFileError` when ``arch`` or ``declared`` does not fit."""
    for name, who in ((arch, "given"), (declared if declared in _zoo_names() else None, "file's own")):
        if name is None:
            continue
        fits = identify(state, name)
        if fits:
            return fits
        found = identify(state)
        if found:
            raise ArchitectureMismatch(f"teacher file {path!r} holds a {found[0].arch} (its tensors' names and "
                                       f"shapes), not the {who} architecture {name!r}", found[0].arch)
        raise TeacherFileError(_unknown_message(path, state, _all_fits(state, [name]), name, who))
    fits = identify(state)
    if not fits:
        raise TeacherFileError(_unknown_message(path, state, _all_fits(state), None, ""))
    return fits


def _choose(fits: list[_Fit], wrapper: str) -> _Fit:
    """Among architectures of the same names and shapes (MobileNetV2 with ImageNet or CIFAR strides), the one a
    code base saves in this wrapper, else the first."""
    def saved_by(fit: _Fit) -> int:
        return sum(not known.library_names for known in _code_bases(wrapper, fit.arch, fit.names))

    return max(fits, key=saved_by)  # the first of the best


# ----------------------------------------------------------------------------- reading and unwrapping
def _read(path: str, allow_pickle: bool) -> Any:
    """The file's content: weights only, or with ``allow_pickle`` whatever its pickle builds."""
    file = Path(path)
    if not file.is_file():
        raise TeacherFileError(f"teacher file {path!r} does not exist")
    unsafe = _unsafe_globals(file)
    if not unsafe:
        try:
            with torch.serialization.safe_globals(SAFE_EXTRAS):
                return torch.load(file, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:  # a legacy (non-zip) file naming classes, or a damaged one
            unsafe = _legacy_globals(file) if _GLOBAL.search(str(err)) else []
            if not unsafe:
                raise TeacherFileError(_corrupt(path, err)) from None
        except Exception as err:  # truncated or foreign files fail in many ways
            raise TeacherFileError(_corrupt(path, err)) from None
    if not allow_pickle:
        raise TeacherFileError(_pickled_message(path, unsafe))
    try:
        return torch.load(file, map_location="cpu", weights_only=False)
    except (ImportError, AttributeError) as err:
        raise TeacherFileError(f"teacher file {path!r} holds a pickled object whose class cannot be imported here "
                               f"({type(err).__name__}: {err}); run where the code base that saved it is importable "
                               f"(its folder on PYTHONPATH)") from None
    except Exception as err:
        raise TeacherFileError(_corrupt(path, err)) from None


def _corrupt(path: str, err: Exception) -> str:
    return (f"teacher file {path!r} is corrupt or not a PyTorch weights file "
            f"({type(err).__name__}: {str(err).strip().splitlines()[0][:200] if str(err).strip() else ''})")


def _unsafe_globals(file: Path) -> list[str]:
    """The classes and functions a zip-format file's pickle names beyond tensors, containers and
    :data:`SAFE_EXTRAS` (torch reads them from the pickle's opcodes, nothing run); ``[]`` for another file (the
    legacy format: :func:`_legacy_globals` once it is refused; or not a torch file at all)."""
    if not zipfile.is_zipfile(file):
        return []
    try:
        found = torch.serialization.get_unsafe_globals_in_checkpoint(file)
    except Exception:  # a damaged archive: torch.load reports it
        return []
    return [name for name in found if name not in _ALLOWED]


def _legacy_globals(file: Path) -> list[str]:
    """The classes and functions the pickles of a legacy file (before torch 1.6: magic number, protocol, system
    information, the object, its storages' keys) name beyond what a weights file needs, read from their opcodes
    with :mod:`pickletools` (nothing run)."""
    names: list[str] = []
    try:
        with open(file, "rb") as fh:
            for _ in range(5):
                names += [arg.replace(" ", ".") for op, arg, _ in pickletools.genops(fh) if op.name == "GLOBAL"]
    except Exception:  # the stream ends or breaks: what was read is enough to name the classes
        pass
    weights = ("torch._utils.", "collections.OrderedDict", "torch.Size")  # tensors, storages and containers
    return list(dict.fromkeys(n for n in names if n not in _ALLOWED and not n.startswith(weights)
                              and not n.endswith("Storage")))


def _pickled_message(path: str, unsafe: list[str]) -> str:
    """Why a pickled object is refused, and the two ways out, in a few lines (the command quoted for a shell)."""
    named = sorted(unsafe, key=lambda name: name.startswith("torch."))  # the code base's own classes first
    classes = ", ".join(named[:3]) + (f" and {len(named) - 3} more" if len(named) > 3 else "")
    model = any(name.startswith("torch.nn.modules.") for name in unsafe)
    weights = ".state_dict()" if model else "['state_dict']"  # a checkpoint: the key that holds its weights
    code = (f'import torch; torch.save(torch.load({json.dumps(path)}, map_location="cpu", weights_only=False)'
            f'{weights.replace(chr(39), chr(34))}, {json.dumps(path + ".state_dict.pt")})')
    return (f"teacher file {path!r} holds {'a whole pickled model' if model else 'pickled objects'} ({classes}), "
            f"{'not a state dict' if model else 'besides plain values'}; lrwa_fast reads weights only "
            f"(torch.load weights_only=True runs no code from the file).\n"
            f"Convert it where its classes are importable (in the code base that saved it)"
            f"{'' if model else ', with the key that holds its weights'}:\n"
            f"  python -c {shlex.quote(code)}\n"
            f"or load it as it is with allow_pickle (--allow-pickle), which RUNS CODE FROM THE FILE: only for a "
            f"file you trust. See {DOCS}.")


def _unwrap(content: Any, path: str) -> tuple[str, dict[str, Tensor], dict[str, Any]]:
    """(wrapper kind, state dict, the file's other plain values) of what a teacher file holds."""
    if isinstance(content, nn.Module):
        return "pickled module", content.state_dict(), {}
    if not isinstance(content, Mapping):
        raise TeacherFileError(f"teacher file {path!r} holds a {type(content).__name__}, not a state dict or a "
                               f"checkpoint; see {DOCS}")
    if isinstance(content.get("format"), str) and content["format"].startswith("lrwa_fast teacher"):
        return "lrwa_fast", dict(content["model"]), _plain(content, "model")
    for kind, key in WRAPPERS.items():
        inner = content.get(key)
        if kind == "checkpoint" and not ("arch" in content or "best_acc1" in content):
            continue
        if isinstance(inner, nn.Module):  # only there when the file was unpickled with the opt-in
            return "pickled module", inner.state_dict(), _plain(content, key)
        if _is_state_dict(inner):
            return kind, dict(inner), _plain(content, key)
    if _is_state_dict(content):
        return "bare", dict(content), {}
    tensors = sum(isinstance(v, Tensor) for v in content.values())
    raise TeacherFileError(f"teacher file {path!r} holds a dict with keys {sorted(map(str, content))[:8]} ({tensors} "
                           f"tensors) but no state dict (names to tensors) under {sorted(set(WRAPPERS.values()))}; "
                           f"see {DOCS}")


def _is_state_dict(value: Any) -> bool:
    """A non-empty mapping of names to tensors."""
    return isinstance(value, Mapping) and bool(value) and all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in value.items())


def _plain(content: Mapping[str, Any], weights: str) -> dict[str, Any]:
    """The wrapper's values worth reporting: numbers, strings and short lists (no optimiser states)."""
    return {k: v for k, v in content.items() if k != weights and isinstance(v, (int, float, str, list, tuple))
            and not (isinstance(v, (list, tuple)) and len(v) > 8)}


def _strip_prefixes(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Without the ``module.`` / ``_orig_mod.`` prefix every key carries (repeatedly: DataParallel of a compiled
    model)."""
    for _ in range(3):
        prefix = next((p for p in PREFIXES if state and all(k.startswith(p) for k in state)), None)
        if prefix is None:
            break
        state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def _check_stats(meta: dict[str, Any], channels: int, path: str) -> None:
    """Refuse a file whose stated normalisation is not ``channels`` finite means and positive deviations."""
    if "mean" in meta or "std" in meta:
        problem = stats_problem(meta.get("mean"), meta.get("std"), channels)
        if problem:
            raise TeacherFileError(f"teacher file {path!r} states a normalisation that cannot be used: {problem}")


def stats_problem(mean: Any, std: Any, channels: int) -> str | None:
    """What is wrong with per-channel normalisation statistics for ``channels`` channels (``None``: nothing)."""
    for name, values in (("mean", mean), ("std", std)):
        if not isinstance(values, (list, tuple)) or len(values) != channels or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
            return f"{name} must be {channels} finite numbers, got {values!r}"
    if min(std) <= 0:
        return f"std must be positive, got {std!r}"
    return None


def _declared_arch(meta: dict[str, Any], wrapper: str) -> str | None:
    """The file's own ``arch`` field in the library's names (a code base's alias mapped), if it has one."""
    if not isinstance(meta.get("arch"), str):
        return None
    for known in LAYOUTS:
        if known.wrapper == wrapper and meta["arch"] in known.aliases:
            return known.arch_name(meta["arch"])
    return meta["arch"]


def _classes_and_channels(state: dict[str, Tensor], path: str = "<state dict>") -> tuple[int, int]:
    """Classes (rows of the last 2-D weight: the classifier) and input channels (the first convolution's)."""
    matrices = [v for k, v in state.items() if v.dim() == 2 and k.endswith("weight")]
    convs = [v for v in state.values() if v.dim() in (3, 4)]
    if not matrices or not convs:
        raise TeacherFileError(f"teacher file {path!r} holds no convolution and linear weights: not a classifier "
                               f"this library builds; see {DOCS}")
    return matrices[-1].shape[0], convs[0].shape[1]


# ----------------------------------------------------------------------------- recognising the architecture
LIBRARY, COMMUNITY = "lrwa_fast", "community"  # the names a file's tensors carry (the same for most classes)


@dataclass(frozen=True)
class _Fit:
    """How a file's tensors fit one architecture under one naming (its classes and input channels read from the
    tensors that architecture's classifier and first convolution are)."""

    arch: str
    names: str
    num_classes: int
    in_channels: int
    missing: tuple[str, ...]  # the library's names
    unexpected: tuple[str, ...]  # the file's names
    reshaped: tuple[str, ...]  # the file's names
    renamed: dict[str, str]
    shapes_shared: float  # the share of tensor shapes both sides have, names aside (1: the same architecture)

    @property
    def distance(self) -> int:
        return len(self.missing) + len(self.unexpected) + len(self.reshaped)

    @property
    def nearness(self) -> tuple[float, float]:
        """How near a fit is: the shapes shared, then the tensors in place over both sides' (1, 1: exact)."""
        placed = len(self.renamed) - len(self.unexpected) - len(self.reshaped)
        return self.shapes_shared, placed / (placed + self.distance)


def identify(state: dict[str, Tensor], arch: str | None = None) -> list[_Fit]:
    """The architectures whose tensors' names (the library's, or the community's where they differ) and shapes
    are exactly ``state``'s, each with the renaming to the library's names; only ``arch`` when given."""
    return [fit for fit in _all_fits(state, [arch] if arch else None) if fit.distance == 0]


def _all_fits(state: dict[str, Tensor], names: list[str] | None = None) -> list[_Fit]:
    """The fit of ``state`` to each of ``names`` (default: the zoo and the Wide ResNet its keys describe)."""
    candidates = names or list(dict.fromkeys([*_zoo_names(), *_wrn_guess(state)]))
    return [fit for name in candidates for fit in _fits(state, name)]


def _zoo_names() -> list[str]:
    """The image classifiers of the zoo (the 1-D MNIST-1D models take no images)."""
    return [name for name in MODELS if not name.startswith("cnn1d")]


def _wrn_guess(state: dict[str, Tensor]) -> list[str]:
    """``wrn<D>_<W>`` from a Wide ResNet's keys (either naming): 3n blocks give D = 6n + 4, the classifier's
    inputs 64·W."""
    renamed = wrn_names(list(state)) or {k: k for k in state}
    blocks = {name.split(".")[1] for name in renamed.values() if name.startswith("blocks.")}
    head = [k for k, name in renamed.items() if name == "linear.weight"]
    if not blocks or len(blocks) % 3 or not head:
        return []
    return [f"wrn{len(blocks) // 3 * 6 + 4}_{state[head[0]].shape[1] // 64}"]


@cache
def _expected(arch: str, num_classes: int = 10, in_channels: int = 3
              ) -> tuple[type[nn.Module], dict[str, tuple[int, ...]], str, str]:
    """The model class, its state dict's shapes, and the names of its first convolution's and its classifier's
    weights; built on the meta device (no memory, no initialisation)."""
    with torch.device("meta"):
        model = build_model(arch, num_classes, in_channels)
    convs = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv1d, nn.Conv2d))]
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    return (type(model), {k: tuple(v.shape) for k, v in model.state_dict().items()}, f"{convs[0]}.weight",
            f"{linears[-1]}.weight")


def _fits(state: dict[str, Tensor], arch: str) -> list[_Fit]:
    """The fit of ``state`` to ``arch`` under each naming its class has."""
    try:
        cls, _, conv, classifier = _expected(arch)
    except (ValueError, RuntimeError, TypeError, IndexError):  # not a name of the zoo, or no convolution
        return []
    namings = [(LIBRARY, None), (COMMUNITY, NAMINGS[cls])] if cls in NAMINGS else [(COMMUNITY, None)]
    fits = []
    for names, rename in namings:
        renamed = rename(list(state)) if rename else {k: k for k in state}
        if renamed is None:
            continue
        theirs = {name: key for key, name in renamed.items()}
        if conv not in theirs or classifier not in theirs or state[theirs[conv]].dim() < 3 \
                or state[theirs[classifier]].dim() != 2:
            sizes = _classes_and_channels(state)
        else:
            sizes = state[theirs[classifier]].shape[0], state[theirs[conv]].shape[1]
        try:
            expected = _expected(arch, *sizes)[1]
        except (ValueError, RuntimeError, TypeError):  # sizes this architecture cannot take
            continue
        shapes = Counter(tuple(v.shape) for v in state.values()) & Counter(expected.values())
        fits.append(_Fit(arch, names, *sizes,
                         missing=tuple(k for k in expected
                                       if k not in theirs and not k.endswith("num_batches_tracked")),
                         unexpected=tuple(k for k in state if renamed[k] not in expected),
                         reshaped=tuple(k for k, v in state.items()
                                        if expected.get(renamed[k], tuple(v.shape)) != tuple(v.shape)),
                         renamed=renamed, shapes_shared=sum(shapes.values()) / max(len(state), len(expected))))
    return fits


def _unknown_message(path: str, state: dict[str, Tensor], fits: list[_Fit], arch: str | None, who: str) -> str:
    """A few lines: the file, the nearest known layout, its first missing / unexpected / reshaped keys."""
    lines = [f"teacher file {path!r}: {len(state)} tensors in a layout this library does not know"
             + (f" as the {who} architecture {arch!r}" if arch else "")]
    if fits:
        near = max(fits, key=lambda fit: fit.nearness)
        lines.append(f"nearest known layout: {near.arch} with {near.names} names")
        for what, keys in (("missing", near.missing), ("unexpected", near.unexpected),
                           ("of another shape", near.reshaped)):
            if keys:
                more = f" and {len(keys) - 3} more" if len(keys) > 3 else ""
                lines.append(f"  {what}: {', '.join(keys[:3])}{more}")
    lines.append(f"supported layouts, and how to convert others: {DOCS}")
    return "\n".join(lines)


def _code_bases(wrapper: str, arch: str, names: str) -> tuple[Layout, ...]:
    """The code bases that save ``arch`` in this wrapper with these names; this library's own, for this
    library's names (and for the classes named alike everywhere) when no code base does."""
    if wrapper == "lrwa_fast":
        return (layout("lrwa_fast"),)
    if names == COMMUNITY:
        found = tuple(known for known in LAYOUTS if known.wrapper == wrapper and arch in known.archs)
        if found or _expected(arch)[0] in NAMINGS:
            return found
    return tuple(known for known in LAYOUTS if known.wrapper == wrapper and known.library_names)
