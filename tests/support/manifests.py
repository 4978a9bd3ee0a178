"""Teacher files in the community's layouts, rebuilt from the manifests in ``tests/models/manifests``: the names and
shapes of the tensors each code base's own model definitions produce and the keys of the wrapper it saves them
in (facts recorded from the originals at the commits the manifests name; how: ``benchmarks/RESULTS.md``,
"Teacher files of the community")."""

from __future__ import annotations

import argparse
import gzip
import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import torch

from .processes import ROOT

MANIFESTS = ROOT / "tests" / "models" / "manifests"
# The layout lrwa_fast must recognise for each code base's files (the architecture decides where two share one)
EXPECTED_LAYOUT = {"datafree": "datafree", "cmi": "datafree", "dfad": "dfad", "lra": "lra", "zskt": "zskt",
                   "chenyaofo": "pytorch-cifar-models", "repdistiller": "repdistiller", "kuangliu": "kuangliu",
                   "spaceshipnet": "spaceshipnet"}


@cache
def manifest(base: str) -> dict:
    with gzip.open(MANIFESTS / f"{base}.json.gz", "rt", encoding="utf-8") as fh:
        return json.load(fh)


def manifest_entries() -> Iterator[tuple[str, str, dict]]:
    """(code base, entry name, entry) for every file recorded."""
    for path in sorted(MANIFESTS.glob("*.json.gz")):
        base = path.name.removesuffix(".json.gz")
        for name, entry in manifest(base)["files"].items():
            yield base, name, entry


def distinct_tensors(entry: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    """The entry's state dict with seeded values no two tensors share (so where each one lands can be told), a
    model that computes finite logits: small random weights, positive running variances, and a distinct count for
    each BatchNorm's ``num_batches_tracked``."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for i, (key, shape) in enumerate(entry["tensors"]):
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(1000 + i)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=g) + 0.5
        else:
            state[key] = torch.randn(shape, generator=g) * 0.1
    return state


def wrapped(entry: dict, state: dict[str, torch.Tensor], prefix: str = "") -> object:
    """What the code base writes: the weights (each key prefixed, as DataParallel does) under the key its wrapper
    uses, its other recorded keys with plain values."""
    weights = {prefix + k: v for k, v in state.items()}
    kind = entry["wrapper"]
    if kind == "bare":
        return weights
    weights_key = {"checkpoint": "state_dict", "state_dict": "state_dict", "repdistiller_best": "model",
                   "repdistiller_last": "model", "kuangliu": "net"}[kind]
    plain = {"arch": entry["arch"], "epoch": 200, "best_acc1": 0.95, "best_acc": 75.6, "acc": 95.2,
             "optimizer": {"state": {}, "param_groups": [{"lr": 0.1, "params": [0, 1]}]},
             "scheduler": {"milestones": {120: 1}, "gamma": 0.2, "last_epoch": 200},
             "opt": argparse.Namespace(model=entry["arch"], dataset="cifar100", learning_rate=0.05)}
    return {key: weights if key == weights_key else plain[key] for key in entry["wrapper_keys"]}


def write_teacher_file(path: Path, entry: dict, seed: int = 0, prefix: str = "") -> dict[str, torch.Tensor]:
    """Save the entry's file at ``path``; returns its (unprefixed) state dict."""
    state = distinct_tensors(entry, seed)
    torch.save(wrapped(entry, state, prefix), path)
    return state
