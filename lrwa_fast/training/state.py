"""The trainer's checkpoint: its parts' states gathered into one dict, the checks made before resuming,
and the files they are written to and read from.

It works on what any :class:`Checkpointable` offers (its parts, what identifies its run, its progress and
runtime), not on the trainer class, which it never imports. A checkpoint (format version 2) is every
part's state plus the iteration, history and the run's identity (trainer, student update, device type,
config, teacher fingerprint, architectures, world size). Data-parallel: the states of
:data:`PER_RANK_PARTS` of every rank are gathered into ``rank_states`` on rank 0, which writes the file;
every rank reads its own share back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from ..config import DFADConfig, from_dict, to_dict
from ..runtime import checkpoint as ckpt
from ..runtime.services import Runtime

# Parts whose state differs between data-parallel ranks: a checkpoint holds one state per rank.
PER_RANK_PARTS = ("memory", "random", "probes")


class Stateful(Protocol):
    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> Any: ...


class Checkpointable(Protocol):
    """What the checkpoint code uses of a trainer."""

    config: DFADConfig
    runtime: Runtime
    iteration: int
    history: dict[str, list[dict[str, Any]]]

    def parts(self) -> dict[str, Stateful]: ...

    def identity(self) -> dict[str, Any]: ...


def trainer_state(trainer: Checkpointable) -> dict[str, Any]:
    """The complete training state: each part's state plus what identifies the run; checks finiteness first.

    Tensors are the live ones (as ``nn.Module.state_dict``): serialise it, or deep-copy it to keep a
    snapshot in memory. Data-parallel: a collective (call it on every rank); rank 0 gets every rank's
    :data:`PER_RANK_PARTS` in ``rank_states``, the other ranks their local state.
    """
    trainer.runtime.guard.check()
    state = {"format_version": ckpt.FORMAT_VERSION, **trainer.identity(), "iteration": trainer.iteration,
             "history": trainer.history, **{name: part.state_dict() for name, part in trainer.parts().items()}}
    ranks = trainer.runtime.ranks
    if ranks.enabled:
        gathered = ranks.gather({name: state.pop(name) for name in PER_RANK_PARTS if name in state})
        if gathered is not None:
            state["rank_states"] = gathered
    return state


def load_trainer_state(trainer: Checkpointable, state: dict[str, Any]) -> None:
    """Restore :func:`trainer_state` into ``trainer``; refuses (``CheckpointError``) anything that does not fit."""
    state = _local_view(trainer, state)
    problems = compatibility_problems(trainer, state)
    if problems:
        raise ckpt.CheckpointError("cannot resume from this checkpoint: " + "; ".join(problems))
    try:
        for name, part in trainer.parts().items():
            part.load_state_dict(state[name])
    except (KeyError, ValueError) as err:
        raise ckpt.CheckpointError(f"cannot resume: {err}") from err
    trainer.iteration, trainer.history = int(state["iteration"]), state["history"]


def _local_view(trainer: Checkpointable, state: dict[str, Any]) -> dict[str, Any]:
    """The state with this rank's share of ``rank_states`` in place; refuses another world size."""
    ranks = trainer.runtime.ranks
    saved, world = state.get("world_size", 1), ranks.world_size
    if saved != world:
        raise ckpt.CheckpointError(f"cannot resume: the checkpoint was written by {saved} process(es) and "
                                   f"this run has {world}; the replay memory and the random streams are "
                                   f"sharded per process and are not re-sharded (resume with {saved})")
    if "rank_states" not in state:
        return state
    return {**state, **state["rank_states"][ranks.rank]}


def compatibility_problems(trainer: Checkpointable, state: dict[str, Any]) -> list[str]:
    """Why ``state`` cannot be loaded into ``trainer`` (empty when it can); refuses another format outright."""
    if state.get("format_version") != ckpt.FORMAT_VERSION:
        raise ckpt.CheckpointError(f"cannot resume: the state has format version {state.get('format_version')!r}, "
                                   f"this version of lrwa_fast reads format version {ckpt.FORMAT_VERSION}")
    mine, parts = trainer.identity(), trainer.parts()
    problems = []
    if state.get("update_type") != mine["update_type"]:
        problems.append(f"it was written with the student update {state.get('update_type')}, and this "
                        f"trainer uses {mine['update_type']} (pass update= to load)")
    if state.get("device_type", mine["device_type"]) != mine["device_type"]:
        problems.append(f"it was made on {state['device_type']} and this trainer runs on "
                        f"{mine['device_type']} (random generator states differ between devices)")
    if state.get("trainer") != mine["trainer"]:
        problems.append(f"checkpoint is for {state.get('trainer')}, not {mine['trainer']}")
    if state.get("teacher_fingerprint") != mine["teacher_fingerprint"]:
        problems.append("it was made with a different teacher (weights fingerprint differs)")
    missing = [name for name in parts if name not in state]
    if missing:
        problems.append(f"it holds no state for {missing}")
    if "memory" in state and "memory" not in parts:
        problems.append("it has a replay memory and this trainer has none")
    for part in ("student", "generator"):
        problems += ckpt.architecture_diff(state["architecture"][part], mine["architecture"][part], part)
    config_class = type(trainer.config)
    saved = with_defaults(to_dict(config_class()), state["config"])  # fields added since (nested too): their defaults
    return problems + ckpt.config_diff(saved, mine["config"], ignore=config_class.RESUMABLE)


def with_defaults(defaults: dict[str, Any], saved: dict[str, Any]) -> dict[str, Any]:
    """``saved`` with every key it lacks, at any depth, taken from ``defaults``."""
    return {**defaults, **{key: with_defaults(defaults[key], value)
                           if isinstance(value, dict) and isinstance(defaults.get(key), dict) else value
                           for key, value in saved.items()}}


def write_checkpoint(trainer: Checkpointable, folder: str | Path, keep: int) -> Path:
    """``folder/ckpt-<iteration>.pt``, written atomically, keeping the newest ``keep``
    (data-parallel: a collective; rank 0 writes, every rank returns its path)."""
    state = trainer_state(trainer)
    return trainer.runtime.ranks.from_main(lambda: ckpt.save_rotating(state, folder, trainer.iteration, keep))


def save(trainer: Checkpointable, path: str | Path) -> Path:
    """The complete state written to ``path`` atomically (data-parallel: as :func:`write_checkpoint`)."""
    state = trainer_state(trainer)
    return trainer.runtime.ranks.from_main(lambda: ckpt.atomic_save(state, path))


def saved_config(config_class: type[DFADConfig], state: dict[str, Any], path: str | Path) -> DFADConfig:
    """The config a checkpoint was written with, as ``config_class`` (``CheckpointError`` when it does not fit)."""
    try:
        return from_dict(config_class, state["config"])
    except ValueError as err:
        raise ckpt.CheckpointError(f"checkpoint {str(path)!r} holds an incompatible config: {err}") from err

