"""The replay memory of pseudo-samples and the teacher's logits on them: a storage, a writer, a
sampler and a backend, composed."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Literal

import torch
from torch import Tensor

from ...choices import MEMORY_DRAWS, MEMORY_POLICIES
from ...config import LRwAConfig
from ...rules import Problem, SettingsError, one_of
from .backends import resolve_backend
from .samplers import EntrySampler, UniformSampler
from .storage import TensorStorage
from .writers import WRITERS

Policy = Literal["reservoir", "fifo"]
STORAGE_DTYPE: torch.dtype = getattr(torch, LRwAConfig.memory_dtype)  # the config's memory_dtype


class ReplayBuffer:
    """Fixed-capacity memory of samples and teacher logits, resident on ``device``.

    ``policy="reservoir"`` keeps every item offered with equal probability ``capacity / seen``;
    ``"fifo"`` keeps the newest ``capacity`` (:mod:`.writers`). Sampling is uniform over the filled
    slots, or with ``draw="entry"`` one whole stored insertion of ``entry_size`` samples per draw (FIFO only,
    every ``add`` then of ``entry_size`` samples: :mod:`.samplers`). All randomness is counter-based
    (Philox keyed by ``seed``), so results
    are reproducible and the same across backends (:mod:`.backends`; ``backend="auto"`` defers to
    ``LRWA_FAST_MEMORY_BACKEND``). Storing the teacher's logits saves a teacher forward per replay.
    ``dtype`` is the storage dtype (float16/bfloat16 halve the memory); samples come back in
    ``float32`` unless asked otherwise.
    """

    def __init__(self, capacity: int, sample_shape: tuple[int, ...] | torch.Size, num_classes: int, *,
                 policy: Policy = LRwAConfig.memory_policy, device: str | torch.device = "cpu",
                 dtype: torch.dtype = STORAGE_DTYPE, seed: int | None = None,
                 backend: str = LRwAConfig.memory_backend, draw: str = LRwAConfig.memory_draw,
                 entry_size: int | None = None) -> None:
        if not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"capacity must be an integer >= 1, got {capacity!r}")
        _check_draw(draw, entry_size, policy, capacity)
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be an integer >= 1, got {num_classes!r}")
        if not dtype.is_floating_point:
            raise ValueError(f"storage dtype must be floating point, got {dtype}")
        self.capacity = capacity
        self.sample_shape = tuple(int(d) for d in sample_shape)
        self.num_classes = num_classes
        self.dtype = dtype
        key = int(torch.randint(0, 2**62, (1,))) if seed is None else int(seed) & (2**64 - 1)
        where = torch.device(device)
        self.backend_name, self._backend = resolve_backend(backend, where, dtype)
        self.storage = TensorStorage.allocate(capacity, self.sample_shape, num_classes, where, dtype)
        self.device = self.storage.x.device  # with its index ("cuda:0"), as every tensor on it reports
        self.writer = WRITERS[policy](key)
        self.sampler = UniformSampler(key) if draw == "uniform" else EntrySampler(key, entry_size)

    @property
    def policy(self) -> str:
        """The writer's insertion policy, ``"reservoir"`` or ``"fifo"``."""
        return self.writer.policy

    @property
    def draw(self) -> str:
        """The sampler's kind: ``"uniform"`` or ``"entry"`` (whole insertions)."""
        return self.sampler.kind

    @property
    def seed(self) -> int:
        """The Philox key of every draw (shared by writer and sampler)."""
        return self.sampler.seed

    @property
    def seen(self) -> int:
        """Items offered in the buffer's life."""
        return self.writer.seen

    @property
    def adds(self) -> int:
        """Batches added in the buffer's life."""
        return self.writer.adds

    @property
    def draws(self) -> int:
        """Items drawn with replacement (or in whole entries) in the buffer's life."""
        return self.sampler.draws

    @property
    def calls(self) -> int:
        """Draws without replacement in the buffer's life."""
        return self.sampler.calls

    def __len__(self) -> int:
        """The number of filled slots."""
        return min(self.writer.seen, self.capacity)

    def __repr__(self) -> str:
        return (f"ReplayBuffer(capacity={self.capacity}, fill={len(self)}, seen={self.seen}, "
                f"policy={self.policy!r}, draw={self.draw!r}, sample_shape={self.sample_shape}, "
                f"num_classes={self.num_classes}, device={self.device}, backend={self.backend_name!r})")

    def add(self, x: Tensor, teacher_logits: Tensor, *, step: int | None = None) -> None:
        """Offer a batch ``x`` (``(B, *sample_shape)``) with its teacher logits ``(B, num_classes)``.

        ``step`` is recorded per slot (default: the number of earlier ``add`` calls). With whole-entry draws
        every batch is one entry of ``entry_size`` samples.
        Raises ``ValueError`` on bad input; the buffer is then unchanged.
        """
        self._check_batch(x, teacher_logits)
        if isinstance(self.sampler, EntrySampler) and x.shape[0] != self.sampler.size:
            raise ValueError(f"this buffer draws whole entries of {self.sampler.size} samples: add batches of "
                             f"{self.sampler.size}, got {x.shape[0]}")
        self.writer.write(self._backend, self.storage, x.detach(), teacher_logits.detach(), step)

    def empty_sample(self, n: int, dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
        """Uninitialised ``(x, logits)`` of ``n`` items in ``dtype`` on the buffer's device: outputs
        to allocate once and pass to :meth:`sample` as ``out`` on every draw."""
        return self.storage.empty_sample(n, dtype)

    def sample(self, n: int, rng: torch.Generator | None = None, *, replace: bool = True,
               dtype: torch.dtype = torch.float32,
               out: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        """``n`` drawn ``(x, teacher_logits)``: uniformly, with or without replacement, or (``draw="entry"``)
        one whole stored entry of ``n = entry_size`` (``replace`` does not apply).

        ``rng`` (optional) supplies this call's Philox key; otherwise the buffer's seed is
        used with an advancing counter. ``out``: pre-allocated ``(x, logits)`` of shapes
        ``(n, *sample_shape)`` and ``(n, num_classes)`` in ``dtype`` on the buffer's device, sharing
        no memory with the buffer or each other (see :meth:`empty_sample`); written and returned
        instead of new tensors.
        Raises ``ValueError`` when empty or an argument is invalid; the buffer is then unchanged.
        """
        x, logits, _ = self.sample_with_indices(n, rng, replace=replace, dtype=dtype, out=out)
        return x, logits

    def sample_with_indices(self, n: int, rng: torch.Generator | None = None, *,
                            replace: bool = True, dtype: torch.dtype = torch.float32,
                            out: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """As :meth:`sample`, also returning the slot indices drawn."""
        fill = len(self)
        self.sampler.check(n, fill, replace)
        if not dtype.is_floating_point:
            raise ValueError(f"output dtype must be floating point, got {dtype}")
        out_x, out_logits = self.storage.empty_sample(n, dtype) if out is None else self._check_out(out, n, dtype)
        slots = self.sampler.sample_into(self._backend, self.storage, out_x, out_logits, fill=fill, replace=replace,
                                         rng=rng)
        return out_x, out_logits, slots

    def _check_out(self, out: tuple[Tensor, Tensor], n: int, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """``out`` as ``(x, logits)`` if a draw of ``n`` in ``dtype`` fits it, else ``ValueError`` saying why."""
        shapes = ((n, *self.sample_shape), (n, self.num_classes))
        if not (isinstance(out, tuple | list) and len(out) == 2 and isinstance(out[0], Tensor)
                and isinstance(out[1], Tensor)):
            raise ValueError("out must be a pair of tensors (x, logits)")
        for name, t, shape in zip(("x", "logits"), out, shapes):
            if t.shape != shape or t.dtype != dtype or t.device != self.device or not t.is_contiguous():
                raise ValueError(f"out {name} must be a contiguous {dtype} tensor of shape {shape} on "
                                 f"{self.device}, got {t.dtype} {tuple(t.shape)} on {t.device}"
                                 f"{'' if t.is_contiguous() else ' (not contiguous)'}")
            if t.requires_grad:
                raise ValueError(f"out {name} requires grad; pass a tensor outside autograd")
        memories = [t.untyped_storage().data_ptr() for t in (*out, self.storage.x, self.storage.logits)]
        if len(set(memories)) < len(memories):
            raise ValueError("out tensors must not share memory with each other or with the buffer's storage")
        return out[0], out[1]

    def ages(self, now: int) -> Tensor:
        """``now - inserted_at`` of every filled slot (for age statistics)."""
        return now - self.storage.inserted_at[: len(self)]

    def _check_batch(self, x: Tensor, logits: Tensor) -> None:
        """Raise ``ValueError`` unless ``x`` / ``logits`` are a non-empty batch of this buffer's shapes and device."""
        if not isinstance(x, Tensor) or not isinstance(logits, Tensor):
            raise ValueError("x and teacher_logits must be tensors")
        if x.shape[1:] != self.sample_shape or x.dim() != len(self.sample_shape) + 1:
            raise ValueError(f"x must have shape (batch, {', '.join(map(str, self.sample_shape))}), "
                             f"got {tuple(x.shape)}")
        if logits.dim() != 2 or logits.shape[1] != self.num_classes:
            raise ValueError(f"teacher_logits must have shape (batch, {self.num_classes}), "
                             f"got {tuple(logits.shape)}")
        if x.shape[0] != logits.shape[0]:
            raise ValueError(f"x has {x.shape[0]} rows but teacher_logits has {logits.shape[0]}")
        if x.shape[0] == 0:
            raise ValueError("cannot add an empty batch")
        for name, t in (("x", x), ("teacher_logits", logits)):
            if not t.dtype.is_floating_point:
                raise ValueError(f"{name} must be floating point, got {t.dtype}")
            if t.device != self.device:
                raise ValueError(f"{name} is on {t.device} but the buffer lives on {self.device}")

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to restore the buffer exactly (tensors are copies on the CPU)."""
        return {**self._shape_state(), "dtype": str(self.dtype).removeprefix("torch."),
                "writer": self.writer.state_dict(), "sampler": self.sampler.state_dict(),
                **{name: t.detach().cpu().clone() for name, t in self.storage.tensors().items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict`; raises ``ValueError`` naming any mismatch (unchanged then).

        A state of lrwa_fast 0.2, whose writer and sampler counters sit side by side at the top level
        (one shared ``seed``), is read too.
        """
        expected = self._shape_state()
        parts = {"writer": state.get("writer", state), "sampler": state.get("sampler", state)}
        saved, mine = ((parts["sampler"].get("kind", "uniform"), parts["sampler"].get("size")),
                       (self.draw, getattr(self.sampler, "size", None)))
        if saved != mine:
            raise ValueError(f"replay state draws {_draw_name(*saved)}, this buffer draws {_draw_name(*mine)} "
                             "(memory_draw)")
        missing = [k for k in (*expected, *self.storage.tensors()) if k not in state]
        missing += [f"{part}.{k}" for part, owner in (("writer", self.writer), ("sampler", self.sampler))
                    for k in owner.state_dict() if k not in parts[part]]
        if missing:
            raise ValueError(f"replay state is missing {missing}")
        diffs = [f"{k}: checkpoint {tuple(state[k]) if k == 'sample_shape' else state[k]!r} "
                 f"vs buffer {v!r}"
                 for k, v in expected.items()
                 if (tuple(state[k]) if k == "sample_shape" else state[k]) != v]
        if diffs:
            raise ValueError("replay state does not fit this buffer: " + "; ".join(diffs))
        for name, t in self.storage.tensors().items():
            if tuple(state[name].shape) != tuple(t.shape):
                raise ValueError(f"replay state tensor {name!r} has shape {tuple(state[name].shape)}, "
                                 f"expected {tuple(t.shape)}")
        for name, t in self.storage.tensors().items():
            t.copy_(state[name])
        self.writer.load_state_dict(parts["writer"])
        self.sampler.load_state_dict(parts["sampler"])

    def _shape_state(self) -> dict[str, Any]:
        """The fields a saved state must match to load into this buffer."""
        return {"capacity": self.capacity, "sample_shape": self.sample_shape,
                "num_classes": self.num_classes, "policy": self.policy}


def draw_problems(settings: object, entry_size: str) -> list[Problem]:
    """The rules of a buffer's policy and draw (fields of ``settings``; ``entry_size``: the field holding the
    size of an entry): whole-entry draws need FIFO slots and a capacity of whole entries."""
    problems = one_of(settings, policy=MEMORY_POLICIES, draw=MEMORY_DRAWS)
    if settings.draw != "entry":
        return problems
    if settings.policy != "fifo":
        problems.append(Problem("{draw}='entry' needs {policy}='fifo' (a reservoir breaks insertions apart)"))
    size, capacity = getattr(settings, entry_size), settings.capacity
    if isinstance(size, int) and size > 0 and capacity % size:
        problems.append(Problem(f"{{draw}}='entry' needs {{capacity}} ({capacity}) to hold whole entries of "
                                f"{{{entry_size}}} ({size})"))
    return problems


def _check_draw(draw: str, entry_size: int | None, policy: str, capacity: int) -> None:
    """``ValueError`` unless the policy and draw are known and, for whole entries, FIFO slots hold whole
    entries of ``entry_size``, given with whole-entry draws only."""
    args = SimpleNamespace(draw=draw, entry_size=entry_size, policy=policy, capacity=capacity)
    problems = draw_problems(args, "entry_size")
    if draw == "uniform" and entry_size is not None:
        problems.append(Problem("{entry_size} goes with {draw}='entry'"))
    if draw == "entry" and (not isinstance(entry_size, int) or entry_size < 1):
        problems.append(Problem(f"{{draw}}='entry' needs {{entry_size}}, an integer >= 1, got {entry_size!r}"))
    if problems:
        raise SettingsError("ReplayBuffer", problems)


def _draw_name(draw: str, size: int | None) -> str:
    return repr(draw) if size is None else f"{draw!r} entries of {size}"
