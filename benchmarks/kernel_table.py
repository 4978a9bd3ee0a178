"""Speed and memory table of the fused kernels against PyTorch.

    python benchmarks/kernel_table.py [--smoke] [--json OUT]

* ``kd_loss``: forward + backward (student gradient) of the fused op, the eager reference and
  ``torch.compile`` of the reference, per kind, classes {10, 100, 1000, 32000, 128000} × rows
  {256, 4096}; median time over repeats (CUDA events) and peak extra memory.
* ``grad_alignment``: the multi-tensor kernel against the best PyTorch composition
  (``torch._foreach_mul`` + per-tensor sums, ``torch._foreach_norm``) and the eager reference, on
  random gradient lists shaped like the parameters of ResNet-18 and WRN-16-1 (100 classes).
* the device-to-device copy bandwidth, and the share of it each op reaches on its minimal traffic
  (inputs read once, gradients written once).

``--smoke`` runs tiny sizes on the CPU through the reference path (no compile) in seconds, so CI
keeps the script working; its figures mean nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lrwa_fast import ops
from lrwa_fast.models import build_model
from lrwa_fast.ops.alignment import grad_alignment_reference
from lrwa_fast.ops.losses import kd_loss_reference

KINDS = ("l1", "kl", "js")
FULL = {"classes": (10, 100, 1000, 32000, 128000), "rows": (256, 4096), "repeats": 20,
        "models": ("resnet18", "wrn16_1")}
SMOKE = {"classes": (10, 100), "rows": (4,), "repeats": 3, "models": ("wrn16_1",)}


def measure(fn: Callable[[], object], device: torch.device, repeats: int) -> tuple[float, float | None]:
    """Median milliseconds of ``fn`` after a warm-up, and its peak extra memory in MiB (CUDA only)."""
    fn()
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    times = []
    for _ in range(repeats):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    peak = (torch.cuda.max_memory_allocated() - base) / 2**20 if cuda else None
    return statistics.median(times), peak


def copy_bandwidth(device: torch.device, mib: int) -> float:
    """GB/s of a large device-to-device copy (bytes read + written)."""
    src = torch.empty(mib * 2**18, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    ms, _ = measure(lambda: dst.copy_(src), device, 10)
    return 2 * src.numel() * 4 / ms / 1e6


def kd_impls(kind: str, device: torch.device, compile_ok: bool) -> dict[str, Callable]:
    """Loss functions to compare for one kind."""
    impls = {"fused": lambda s, t: ops.kd_loss(s, t, kind=kind, temperature=4.0),
             "eager": lambda s, t: kd_loss_reference(s, t, kind=kind, temperature=4.0)}
    if compile_ok:
        torch._dynamo.reset()
        compiled = torch.compile(kd_loss_reference, dynamic=False)
        impls["compile"] = lambda s, t: compiled(s, t, kind=kind, temperature=4.0)
    return impls


def kd_case(kind: str, rows: int, classes: int, device: torch.device, repeats: int, compile_ok: bool,
            copy_gbs: float) -> list[dict]:
    """Forward + backward of each implementation for one kind and shape."""
    s = torch.randn(rows, classes, device=device, requires_grad=True)
    t = torch.randn(rows, classes, device=device)
    traffic = 3 * s.numel() * 4  # read s and t, write ∂L/∂s
    records = []
    for name, fn in kd_impls(kind, device, compile_ok).items():
        def step(fn=fn):
            s.grad = None
            fn(s, t).backward()
        ms, peak = measure(step, device, repeats)
        gbs = traffic / ms / 1e6
        records.append({"op": "kd_loss", "kind": kind, "rows": rows, "classes": classes, "impl": name,
                        "ms": ms, "peak_mib": peak, "gbs": gbs, "pct_copy": 100 * gbs / copy_gbs})
    return records


def bench_kd_loss(cfg: dict, device: torch.device, compile_ok: bool, copy_gbs: float) -> list[dict]:
    """All kinds and shapes of ``cfg``."""
    return [record for kind in KINDS for rows in cfg["rows"] for classes in cfg["classes"]
            for record in kd_case(kind, rows, classes, device, cfg["repeats"], compile_ok, copy_gbs)]


def foreach_alignment(a: list[torch.Tensor], b: list[torch.Tensor]) -> torch.Tensor:
    """The best plain-PyTorch composition: ``_foreach_mul`` + per-tensor sums, ``_foreach_norm``."""
    dots = torch.stack([p.sum(dtype=torch.float32) for p in torch._foreach_mul(a, b)])
    norms_a = torch.stack(torch._foreach_norm(a)).float().square()
    norms_b = torch.stack(torch._foreach_norm(b)).float().square()
    return torch.stack([dots, norms_a, norms_b], dim=1)


def alignment_case(model: str, device: torch.device, repeats: int, copy_gbs: float) -> list[dict]:
    """The three alignment implementations on gradient lists shaped like ``model``'s parameters."""
    shapes = [p.shape for p in build_model(model, num_classes=100).parameters()]
    a = [torch.randn(shape, device=device) for shape in shapes]
    b = [torch.randn(shape, device=device) for shape in shapes]
    traffic = 2 * sum(x.numel() for x in a) * 4
    impls = {"fused": lambda: ops.grad_alignment(a, b), "foreach": lambda: foreach_alignment(a, b),
             "eager": lambda: grad_alignment_reference(a, b)}
    records = []
    for name, fn in impls.items():
        ms, peak = measure(fn, device, repeats)
        gbs = traffic / ms / 1e6
        records.append({"op": "grad_alignment", "model": model, "tensors": len(a), "impl": name,
                        "ms": ms, "peak_mib": peak, "gbs": gbs, "pct_copy": 100 * gbs / copy_gbs})
    return records


def format_table(records: list[dict]) -> str:
    """Fixed-width text table of the records."""
    lines = [f"{'op':<15}{'case':<24}{'impl':<9}{'ms':>10}{'peak MiB':>10}{'GB/s':>9}{'% copy':>8}"]
    for r in records:
        case = (f"{r['kind']} {r['rows']}x{r['classes']}" if r["op"] == "kd_loss"
                else f"{r['model']} ({r['tensors']} t)")
        peak = "n/a" if r["peak_mib"] is None else f"{r['peak_mib']:.1f}"
        lines.append(f"{r['op']:<15}{case:<24}{r['impl']:<9}{r['ms']:>10.3f}{peak:>10}"
                     f"{r['gbs']:>9.1f}{r['pct_copy']:>8.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    """Run the sweep, print the table, optionally write JSON; returns the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU, for CI")
    parser.add_argument("--json", type=Path, help="write the records to this file")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    cfg = SMOKE if args.smoke else FULL
    copy_gbs = copy_bandwidth(device, 4 if args.smoke else 1024)
    records = bench_kd_loss(cfg, device, compile_ok=not args.smoke, copy_gbs=copy_gbs)
    records += [r for model in cfg["models"] for r in alignment_case(model, device, cfg["repeats"], copy_gbs)]
    result = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
              "copy_gbs": copy_gbs, "smoke": args.smoke, "records": records}
    print(f"device: {result['device']}, copy bandwidth {copy_gbs:.1f} GB/s")
    print(format_table(records))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
