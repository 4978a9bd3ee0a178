"""The check of a compiled replay backend (:mod:`lrwa_fast.runtime.selfcheck`): its inserts (both policies, rows
given in the storage's dtype and in fp32, as the trainer gives them) and its draws (with and without replacement,
whole entries; into outputs of the storage's dtype and of fp32) on a small memory, against the PyTorch reference,
which they must equal bit for bit."""

from __future__ import annotations

import torch

from ...runtime.selfcheck import Check, WrongValue
from . import torch_backend
from .base import ReplayBackend
from .storage import TensorStorage

CAPACITY, SAMPLE_SHAPE, CLASSES = 13, (3, 5), 7  # odd sizes: inserts wrap and overflow, draws cross the end
BATCHES = (4, 6, 9)
DRAWS = ((True, 0), (False, 0), (False, 3))  # (replace, entry size: 0 for a uniform draw)


def replay_check(backend: ReplayBackend) -> Check:
    """A check of ``backend`` (its ``insert`` and ``sample``) against :mod:`.torch_backend`."""
    def check(device: torch.device, dtype: torch.dtype) -> float:
        gen = torch.Generator().manual_seed(48)
        for policy in ("reservoir", "fifo"):
            for given in dict.fromkeys((dtype, torch.float32)):  # the rows' dtype: the storage's, and fp32
                pair = [TensorStorage.allocate(CAPACITY, SAMPLE_SHAPE, CLASSES, device, dtype) for _ in range(2)]
                _insert(backend, pair, gen, policy, given, device)
                for out_dtype in dict.fromkeys((dtype, torch.float32)):
                    _draw(backend, pair, policy, given, out_dtype)
        return 0.0

    return check


def _insert(backend: ReplayBackend, pair: list[TensorStorage], gen: torch.Generator, policy: str,
            given: torch.dtype, device: torch.device) -> None:
    """The batches of :data:`BATCHES` into both storages, the backend's then the reference's, compared."""
    seen = 0
    for step, rows in enumerate(BATCHES):
        x = torch.randn(rows, *SAMPLE_SHAPE, generator=gen).to(device, given)
        logits = torch.randn(rows, CLASSES, generator=gen).to(device, given)
        for impl, storage in zip((backend, torch_backend), pair):
            impl.insert(storage, x, logits, policy=policy, seen=seen, seed=5, step=step)
        seen += rows
        _same(f"{policy} insert {step} of {given} rows", pair[0].tensors(), pair[1].tensors())


def _draw(backend: ReplayBackend, pair: list[TensorStorage], policy: str, given: torch.dtype,
          out_dtype: torch.dtype) -> None:
    """Each draw of :data:`DRAWS` from both storages into NaN-filled outputs (a path writing nothing shows)."""
    for replace, entry in DRAWS:
        outs = [tuple(t.fill_(float("nan")) for t in storage.empty_sample(entry or 8, out_dtype)) for storage in pair]
        slots = [impl.sample(storage, *out, fill=CAPACITY, replace=replace, seed=6, counter=2, entry=entry)
                 for impl, storage, out in zip((backend, torch_backend), pair, outs)]
        _same(f"{policy} draw (replace={replace}, entry={entry}) into {out_dtype} from {given} rows",
              {"slots": slots[0], "x": outs[0][0], "logits": outs[0][1]},
              {"slots": slots[1], "x": outs[1][0], "logits": outs[1][1]})


def _same(what: str, ours: dict[str, torch.Tensor], ref: dict[str, torch.Tensor]) -> None:
    """Raise :class:`WrongValue` naming the first tensor that differs (a NaN left unwritten differs from every
    value the reference writes)."""
    for name, tensor in ref.items():
        mine, theirs = ours[name].cpu(), tensor.cpu()
        if not torch.equal(mine, theirs):
            raise WrongValue(f"{what}: {int((mine != theirs).sum())} of {tensor.numel()} values of {name} differ "
                             f"from the reference")
