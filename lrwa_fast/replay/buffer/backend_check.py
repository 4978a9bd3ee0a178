"""The check of a compiled replay backend (:mod:`lrwa_fast.runtime.selfcheck`): a compiled backend's inserts (both
policies) and draws (with and without replacement, whole entries) on a small memory, against the PyTorch
reference, which they must equal bit for bit."""

from __future__ import annotations

import torch

from ...runtime.selfcheck import Check, WrongValue
from . import torch_backend
from .base import ReplayBackend
from .storage import TensorStorage

CAPACITY, SAMPLE_SHAPE, CLASSES = 13, (3, 5), 7  # odd sizes: inserts wrap and overflow, draws cross the end
BATCHES = (4, 6, 9)


def replay_check(backend: ReplayBackend) -> Check:
    """A check of ``backend`` (its ``insert`` and ``sample``) against :mod:`.torch_backend`."""
    def check(device: torch.device, dtype: torch.dtype) -> float:
        gen = torch.Generator().manual_seed(48)
        for policy in ("reservoir", "fifo"):
            ours, ref = (TensorStorage.allocate(CAPACITY, SAMPLE_SHAPE, CLASSES, device, dtype) for _ in range(2))
            seen = 0
            for step, rows in enumerate(BATCHES):
                x = torch.randn(rows, *SAMPLE_SHAPE, generator=gen).to(device, dtype)
                logits = torch.randn(rows, CLASSES, generator=gen).to(device, dtype)
                for impl, storage in ((backend, ours), (torch_backend, ref)):
                    impl.insert(storage, x, logits, policy=policy, seen=seen, seed=5, step=step)
                seen += rows
                _same(f"{policy} insert {step}", ours.tensors(), ref.tensors())
            for replace, entry in ((True, 0), (False, 0), (False, 3)):
                outs = [storage.empty_sample(entry or 8, dtype) for storage in (ours, ref)]
                slots = [impl.sample(storage, *out, fill=CAPACITY, replace=replace, seed=6, counter=2, entry=entry)
                         for impl, storage, out in ((backend, ours, outs[0]), (torch_backend, ref, outs[1]))]
                what = f"{policy} draw (replace={replace}, entry={entry})"
                _same(what, {"slots": slots[0], "x": outs[0][0], "logits": outs[0][1]},
                      {"slots": slots[1], "x": outs[1][0], "logits": outs[1][1]})
        return 0.0

    return check


def _same(what: str, ours: dict[str, torch.Tensor], ref: dict[str, torch.Tensor]) -> None:
    """Raise :class:`WrongValue` naming the first tensor that differs."""
    for name, tensor in ref.items():
        if not torch.equal(ours[name].cpu(), tensor.cpu()):
            differ = int((ours[name].cpu() != tensor.cpu()).sum())
            raise WrongValue(f"{what}: {differ} of {tensor.numel()} values of {name} differ from the reference")
