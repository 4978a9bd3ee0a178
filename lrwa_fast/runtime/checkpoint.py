"""Checkpoint files: atomic writes, rotation, fingerprints and the checks made before resuming.

A checkpoint is a ``torch.save`` of plain containers and tensors only, so it loads with
``weights_only=True`` (no arbitrary pickles). Writes go to a temporary file in the same folder,
are flushed and fsync'ed, then renamed over the target: a write killed half-way never replaces a
good checkpoint.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import torch
from torch import nn

FORMAT_VERSION = 2  # 2: a dict of the trainer's parts' states; 1 (before 0.2): one flat dict, not read
_NAME = re.compile(r"^ckpt-(\d{8})\.pt$")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: corrupt, incompatible or made with another teacher."""


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to ``path`` atomically (temporary file, fsync, rename, fsync of the folder)."""
    return atomic_write(path, lambda fh: torch.save(obj, fh))


def atomic_write_text(text: str, path: str | Path) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically, as :func:`atomic_save`."""
    return atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write`` on a temporary file beside ``path``, fsync it, rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(path.parent)
    return path


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_file(path: str | Path, kind: str = "a lrwa_fast checkpoint") -> Any:
    """``torch.load`` of ``path`` onto the CPU, tensors and containers only (``weights_only``);
    :class:`CheckpointError` naming the file when it is missing, truncated or not ``kind``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated or foreign files fail in many ways
        raise CheckpointError(f"checkpoint {str(path)!r} is corrupt or not {kind} "
                              f"({type(err).__name__}: {err})") from err


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint file, refusing anything that is not a complete lrwa_fast checkpoint."""
    state = load_file(path)
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        found = state.get("format_version") if isinstance(state, dict) else type(state).__name__
        older = " (written by lrwa_fast 0.1, before checkpoints held the trainer's parts; resume it with " \
                "that version or start a new run)" if found == 1 else ""
        raise CheckpointError(f"checkpoint {str(path)!r} has format version {found!r}{older}; this version "
                              f"of lrwa_fast reads format version {FORMAT_VERSION}")
    return state


def checkpoint_path(folder: str | Path, iteration: int) -> Path:
    return Path(folder) / f"ckpt-{iteration:08d}.pt"


def list_checkpoints(folder: str | Path) -> list[Path]:
    """Checkpoints written by :func:`save_rotating` in ``folder``, oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if _NAME.match(p.name))


def latest_checkpoint(folder: str | Path) -> Path | None:
    found = list_checkpoints(folder)
    return found[-1] if found else None


def save_rotating(obj: Any, folder: str | Path, iteration: int, keep: int) -> Path:
    """Write ``ckpt-<iteration>.pt`` atomically, then delete all but the newest ``keep`` (and the
    temporary files of writers that died).

    Checkpoints of later iterations than this one belong to a run that was resumed from an earlier
    point: they move to ``superseded/`` (nothing is deleted) so "newest" stays this run's.
    """
    path = atomic_save(obj, checkpoint_path(folder, iteration))
    later = [p for p in list_checkpoints(folder) if int(_NAME.match(p.name).group(1)) > iteration]
    if later:
        (Path(folder) / "superseded").mkdir(exist_ok=True)
        for p in later:
            os.replace(p, Path(folder) / "superseded" / p.name)
    for old in list_checkpoints(folder)[:-keep]:
        old.unlink(missing_ok=True)
    for tmp in Path(folder).glob(".ckpt-*.pt.tmp-*"):
        pid = int(tmp.name.rsplit("-", 1)[1])
        if not _alive(pid):
            tmp.unlink(missing_ok=True)
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fingerprint(module: nn.Module) -> str:
    """SHA-256 over the names, shapes, dtypes and values of a module's parameters and buffers."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        t = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{tuple(t.shape)}:{t.dtype};".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def architecture(module: nn.Module) -> dict[str, list[Any]]:
    """Name → [shape, dtype] of every parameter and buffer: what must match to load weights."""
    return {name: [list(t.shape), str(t.dtype)] for name, t in module.state_dict().items()}


def architecture_diff(saved: dict[str, list[Any]], current: dict[str, list[Any]], what: str) -> list[str]:
    """Human-readable differences between two :func:`architecture` summaries."""
    problems = []
    missing, extra = sorted(set(saved) - set(current)), sorted(set(current) - set(saved))
    if missing:
        problems.append(f"{what} lacks {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    if extra:
        problems.append(f"{what} has unexpected {extra[:5]}{' ...' if len(extra) > 5 else ''}")
    problems += [f"{what}.{k}: checkpoint {_describe(saved[k])} vs model {_describe(current[k])}"
                 for k in sorted(set(saved) & set(current)) if list(saved[k]) != list(current[k])][:5]
    return problems


def _describe(entry: list[Any]) -> str:
    shape, dtype = entry
    return f"{tuple(shape)} {str(dtype).removeprefix('torch.')}"


def config_diff(saved: dict[str, Any], current: dict[str, Any], prefix: str = "",
                ignore: frozenset[str] = frozenset()) -> list[str]:
    """Keys whose values differ between two nested config dicts, except the (dotted) keys in ``ignore``."""
    out = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_diff(a, b, f"{prefix}{key}.", ignore)
        elif a != b and f"{prefix}{key}" not in ignore:
            out.append(f"{prefix}{key}: checkpoint {a!r} vs given {b!r}")
    return out
