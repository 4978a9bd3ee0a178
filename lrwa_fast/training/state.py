"""The trainer's checkpoint: its parts' states gathered into one dict, the checks made before resuming,
and the files they are written to and read from.

A checkpoint (format version 2) is every part's state (:meth:`~lrwa_fast.training.trainer.Trainer.parts`)
plus the iteration, history, config and what identifies the run (trainer, student update, device
type, teacher fingerprint, architectures, world size). Data-parallel: the states of
:data:`PER_RANK_PARTS` of every rank are gathered into ``rank_states`` on rank 0, which writes the
file; every rank reads its own share back.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from ..config import DFADConfig, from_dict, to_dict
from ..runtime import checkpoint as ckpt

if TYPE_CHECKING:
    from .trainer import Trainer

# Parts whose state differs between data-parallel ranks: a checkpoint holds one state per rank.
PER_RANK_PARTS = ("memory", "random", "probes")


def trainer_state(trainer: Trainer) -> dict[str, Any]:
    """The complete training state: each part's state plus what identifies the run; checks finiteness first.

    Tensors are the live ones (as ``nn.Module.state_dict``): serialise it, or deep-copy it to keep a
    snapshot in memory. Data-parallel: a collective (call it on every rank); rank 0 gets every rank's
    :data:`PER_RANK_PARTS` in ``rank_states``, the other ranks their local state.
    """
    trainer.guard.check()
    state = _local_state(trainer)
    if trainer.ranks.enabled:
        gathered = trainer.ranks.gather({name: state.pop(name) for name in PER_RANK_PARTS if name in state})
        if gathered is not None:
            state["rank_states"] = gathered
    return state


def _local_state(trainer: Trainer) -> dict[str, Any]:
    return {
        "format_version": ckpt.FORMAT_VERSION, "trainer": trainer.checkpoint_name,
        "world_size": trainer.ranks.world_size,
        "update_type": type(trainer.update).__qualname__,
        "device_type": trainer.device.type, "config": to_dict(trainer.config),
        "teacher_fingerprint": trainer.teacher_fingerprint,
        "architecture": {"student": ckpt.architecture(trainer.student),
                         "generator": ckpt.architecture(trainer.generator)},
        "iteration": trainer.iteration, "history": trainer.history,
        **{name: part.state_dict() for name, part in trainer.parts().items()},
    }


def load_trainer_state(trainer: Trainer, state: dict[str, Any]) -> None:
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


def _local_view(trainer: Trainer, state: dict[str, Any]) -> dict[str, Any]:
    """The state with this rank's share of ``rank_states`` in place; refuses another world size."""
    saved, world = state.get("world_size", 1), trainer.ranks.world_size
    if saved != world:
        raise ckpt.CheckpointError(f"cannot resume: the checkpoint was written by {saved} process(es) and "
                                   f"this run has {world}; the replay memory and the random streams are "
                                   f"sharded per process and are not re-sharded (resume with {saved})")
    if "rank_states" not in state:
        return state
    return {**state, **state["rank_states"][trainer.ranks.rank]}


def compatibility_problems(trainer: Trainer, state: dict[str, Any]) -> list[str]:
    """Why ``state`` cannot be loaded into ``trainer`` (empty when it can); refuses another format outright."""
    if state.get("format_version") != ckpt.FORMAT_VERSION:
        raise ckpt.CheckpointError(f"cannot resume: the state has format version {state.get('format_version')!r}, "
                                   f"this version of lrwa_fast reads format version {ckpt.FORMAT_VERSION}")
    problems = []
    update_type = type(trainer.update).__qualname__
    if state.get("update_type") != update_type:
        problems.append(f"it was written with the student update {state.get('update_type')}, and this "
                        f"trainer uses {update_type} (pass update= to load)")
    if state.get("device_type", trainer.device.type) != trainer.device.type:
        problems.append(f"it was made on {state['device_type']} and this trainer runs on "
                        f"{trainer.device.type} (random generator states differ between devices)")
    if state.get("trainer") != trainer.checkpoint_name:
        problems.append(f"checkpoint is for {state.get('trainer')}, not {trainer.checkpoint_name}")
    if state.get("teacher_fingerprint") != trainer.teacher_fingerprint:
        problems.append("it was made with a different teacher (weights fingerprint differs)")
    missing = [name for name in trainer.parts() if name not in state]
    if missing:
        problems.append(f"it holds no state for {missing}")
    if "memory" in state and trainer.memory is None:
        problems.append("it has a replay memory and this trainer has none")
    for part, module in (("student", trainer.student), ("generator", trainer.generator)):
        problems += ckpt.architecture_diff(state["architecture"][part], ckpt.architecture(module), part)
    config_class = type(trainer.config)
    saved = {**to_dict(config_class()), **state["config"]}  # fields added since: their defaults
    return problems + ckpt.config_diff(saved, to_dict(trainer.config), ignore=config_class.RESUMABLE)


def write_checkpoint(trainer: Trainer, folder: str | Path) -> Path:
    """``folder/ckpt-<iteration>.pt``, written atomically, keeping the newest ``config.keep_checkpoints``
    (data-parallel: a collective; rank 0 writes, every rank returns its path)."""
    state = trainer_state(trainer)
    return trainer.ranks.from_main(lambda: ckpt.save_rotating(state, folder, trainer.iteration,
                                                              trainer.config.keep_checkpoints))


def save(trainer: Trainer, path: str | Path) -> Path:
    """The complete state written to ``path`` atomically (data-parallel: as :func:`write_checkpoint`)."""
    state = trainer_state(trainer)
    return trainer.ranks.from_main(lambda: ckpt.atomic_save(state, path))


def load(cls: type[Trainer], path: str | Path, teacher: nn.Module, student: nn.Module, generator: nn.Module,
         config: DFADConfig | None = None, *, saved: dict[str, Any] | None = None, **parts: Any) -> Trainer:
    """A ``cls`` for freshly built modules, restored from checkpoint ``path`` (``config``: the checkpoint's
    unless given; ``saved``: the checkpoint already read from ``path``; ``parts`` go to the constructor)."""
    from .trainer import METHODS  # the pinned trainers, by the names checkpoints give them

    state = saved if saved is not None else ckpt.read_checkpoint(path)
    named = {t.__name__: t for t in METHODS.values()}.get(state.get("trainer"))
    if named is None or cls.method not in (None, named.method):
        raise ckpt.CheckpointError(f"checkpoint {str(path)!r} is for {state.get('trainer')}, not {cls.__name__}")
    try:
        config = config if config is not None else from_dict(named.config_class, state["config"])
    except ValueError as err:
        raise ckpt.CheckpointError(f"checkpoint {str(path)!r} holds an incompatible config: {err}") from err
    trainer = cls(teacher, student, generator, config, **parts)
    trainer.load_state_dict(state)
    return trainer
