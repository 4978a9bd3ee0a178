"""The generative memory's cost: an LRwA iteration with the VAE memory against the buffer memory and
against DFAD (one run, variants timed round-robin, medians), and the memory footprint of each for a
ResNet-size CIFAR run (the authors' buffer against the VAE's parameters and optimiser state).

    python benchmarks/generative_cost.py --cases cnn,cnn32 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import math

import torch

from lrwa_fast.bench.cases import CASES, ITERATION_VARIANTS
from lrwa_fast.bench.steps import step_functions
from lrwa_fast.bench.timing import measure, summarize_times
from lrwa_fast.replay.buffer import ReplayBuffer
from lrwa_fast.replay.vae import default_vae

MB = 2**20


def iteration_times(case_names: list[str], repeats: int, warmup: int) -> list[dict]:
    """Median ms of one iteration (1 generator + 5 student steps) per variant and case, on the CPU."""
    device = torch.device("cpu")
    rows = []
    for name in case_names:
        stats = summarize_times(measure(step_functions(CASES[name], device, ITERATION_VARIANTS), device,
                                        repeats, warmup))
        rows.append({"case": CASES[name].name, "variants": stats})
    return rows


def tensor_bytes(tensors: list[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def footprint(latent_dims: tuple[int, ...] = (1000, 256), width: int = 64) -> dict:
    """Bytes of the authors' CIFAR-100 buffer (10 entries of 512 // 8 images, 3×32×32 float32), of the
    same capacity in this library's buffer (with 100-class logits), and of the built-in conv VAE with
    its Adam state, for the authors' latent size and the library's default."""
    capacity, shape, classes = 10 * (512 // 8), (3, 32, 32), 100
    buffer = ReplayBuffer(capacity, shape, classes, backend="torch")
    out = {"buffer_samples": capacity,
           "authors_buffer_bytes": capacity * math.prod(shape) * 4,
           "lrwa_buffer_bytes": tensor_bytes([v for v in buffer.state_dict().values()
                                              if isinstance(v, torch.Tensor)]),
           "vae": {}}
    for latent in latent_dims:
        vae = default_vae(shape, latent, width)
        params = sum(p.numel() for p in vae.parameters())
        weights = tensor_bytes(list(vae.state_dict().values()))
        out["vae"][latent] = {"parameters": params, "weights_bytes": weights,
                              "with_adam_bytes": weights + 2 * params * 4}
    return out


def format_report(times: list[dict], sizes: dict) -> str:
    lines = ["| case | variant | median ms | IQR ms | × DFAD iteration | × buffer LRwA |", "|---|---|---|---|---|---|"]
    for row in times:
        v = row["variants"]
        for name, s in v.items():
            lines.append(f"| {row['case']} | {name} | {s['median_ms']:.1f} | {s['q1_ms']:.1f}–{s['q3_ms']:.1f} | "
                         f"{s['median_ms'] / v['dfad_iteration']['median_ms']:.2f} | "
                         f"{s['median_ms'] / v['lrwa_iteration']['median_ms']:.2f} |")
    lines += ["", "| memory | what it holds | MiB |", "|---|---|---|",
              f"| authors' buffer | {sizes['buffer_samples']} images 3×32×32 float32 | "
              f"{sizes['authors_buffer_bytes'] / MB:.2f} |",
              f"| lrwa_fast buffer, same capacity | images + 100 logits + insertion steps | "
              f"{sizes['lrwa_buffer_bytes'] / MB:.2f} |"]
    for latent, v in sizes["vae"].items():
        lines.append(f"| conv VAE, latent {latent}, width 64 | {v['parameters']:,} parameters (+ Adam state) | "
                     f"{v['weights_bytes'] / MB:.2f} ({v['with_adam_bytes'] / MB:.2f}) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default="cnn,cnn32")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--json", default="")
    args = parser.parse_args(argv)
    times = iteration_times([c for c in args.cases.split(",") if c], args.repeats, args.warmup)
    sizes = footprint()
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"times": times, "footprint": sizes}, f, indent=1)
    print(format_report(times, sizes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
