"""Count what crosses the process group: the payload of every all-reduce while a counter is active.

The library's collectives know nothing of it: :class:`AllReduceTraffic` wraps
``torch.distributed.all_reduce`` and the functional all-reduce for the duration of a ``with`` block
(the library looks both up at call time), so a test or benchmark can measure the bytes an
iteration sends.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any

import torch.distributed as dist
import torch.distributed._functional_collectives as funcol
from torch import Tensor


class AllReduceTraffic:
    """``with AllReduceTraffic() as traffic: ...``; then ``traffic.bytes`` is the payload all-reduced
    by this process inside the block (elements × element size, summed over calls)."""

    def __init__(self) -> None:
        self.bytes = 0
        self.calls = 0
        self._saved: list[tuple[Any, str, Callable[..., Any]]] = []

    def _counting(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def counted(tensor: Tensor, *args: Any, **kwargs: Any) -> Any:
            self.bytes += tensor.numel() * tensor.element_size()
            self.calls += 1
            return original(tensor, *args, **kwargs)

        return counted

    def __enter__(self) -> AllReduceTraffic:
        for owner in (dist, funcol):
            original = owner.all_reduce
            self._saved.append((owner, "all_reduce", original))
            owner.all_reduce = self._counting(original)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        for owner, name, original in reversed(self._saved):
            setattr(owner, name, original)
        self._saved.clear()
