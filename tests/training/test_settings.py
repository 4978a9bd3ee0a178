"""From the flat config to each part's settings: every config field is read by some part, every part's
settings are frozen and built by keyword only, and the trainer reads the config in one place."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re

import pytest
from helpers import ROOT

from lrwa_fast import DFADConfig, LRwAConfig
from lrwa_fast.training import settings
from lrwa_fast.training.trainer import Trainer


def read_fields(config_class: type, **values) -> set[str]:
    """The config fields :func:`~lrwa_fast.training.settings.part_settings` reads from a ``config_class(**values)``."""
    read: set[str] = set()
    names = {f.name for f in dataclasses.fields(config_class)}

    class Recording(config_class):  # type: ignore[misc, valid-type]
        def __getattribute__(self, name: str):
            if name in names:
                read.add(name)
            return super().__getattribute__(name)

    config = Recording(**values)
    read.clear()  # the dataclass __init__ and __post_init__ do not count
    settings.part_settings(config)
    return read


# Configs that switch every optional part on between them: the buffer memory, the generative one, MAD, probes.
VARIANTS = [dict(), dict(memory_kind="generative", ema_decay=0.9, probe_every=2)]


@pytest.mark.parametrize("config_class", [DFADConfig, LRwAConfig])
def test_every_config_field_is_read_by_a_part(config_class):
    variants = VARIANTS if config_class is LRwAConfig else [dict(), dict(ema_decay=0.9, probe_every=2)]
    read = set().union(*(read_fields(config_class, **v) for v in variants))
    unread = {f.name for f in dataclasses.fields(config_class)} - read
    assert not unread, f"config fields no part reads: {sorted(unread)}"


def test_an_unread_field_would_be_caught():
    @dataclasses.dataclass
    class Extended(LRwAConfig):
        forgotten: int = 0

    read = set().union(*(read_fields(Extended, **v) for v in VARIANTS))
    assert {f.name for f in dataclasses.fields(Extended)} - read == {"forgotten"}


def test_one_builder_per_part():
    assert list(settings.BUILDERS) == [f.name for f in dataclasses.fields(settings.PartSettings)]


def settings_classes() -> set[type]:
    built = [settings.part_settings(LRwAConfig(**v)) for v in VARIANTS] + [settings.part_settings(DFADConfig())]
    return {type(getattr(parts, f.name)) for parts in built for f in dataclasses.fields(parts)} - {type(None)}


def test_the_parts_settings_cover_every_kind():
    names = {cls.__name__ for cls in settings_classes()}
    assert {"RuntimeSettings", "BufferSettings", "GenerativeSettings", "MetaSettings", "UpdaterSettings",
            "ObjectiveSettings", "EMASettings", "ProbeSettings", "KDLoss"} <= names


@pytest.mark.parametrize("cls", sorted(settings_classes(), key=lambda c: c.__name__), ids=lambda c: c.__name__)
def test_every_part_settings_class_is_frozen_and_keyword_only(cls):
    assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen
    assert all(f.kw_only for f in dataclasses.fields(cls)), "a part's settings are built by keyword only"
    first = dataclasses.fields(cls)[0]
    with pytest.raises(TypeError):
        cls(getattr(cls(**_required(cls)), first.name))  # one positional argument is refused


def _required(cls: type) -> dict:
    """Values for the fields without a default (UpdaterSettings' optimizer and horizon)."""
    from lrwa_fast.config import OptimizerConfig

    given = {"optimizer": OptimizerConfig(), "horizon": 10}
    return {f.name: given[f.name] for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}


def test_the_builders_pass_every_setting_by_keyword():
    tree = ast.parse((ROOT / "lrwa_fast" / "training" / "settings.py").read_text(encoding="utf-8"))
    positional = [ast.unparse(node)[:60] for node in ast.walk(tree)
                  if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id[0].isupper()
                  and node.args]
    assert not positional


def test_the_trainer_reads_the_config_in_one_place():
    """Trainer's methods read ``self.config`` only to validate it, turn it into settings, identify the run in a
    checkpoint and name its method; every part is built from ``self.settings``."""
    reads = re.compile(r"self\.config\b")
    readers = {name for name, fn in inspect.getmembers(Trainer, inspect.isfunction)
               if reads.search(inspect.getsource(fn))}
    readers |= {name for name, prop in inspect.getmembers(Trainer, lambda m: isinstance(m, property))
                if reads.search(inspect.getsource(prop.fget))}
    assert readers == {"__init__", "identity", "checkpoint_name"}
    assert len(reads.findall(inspect.getsource(Trainer.__init__))) == 2  # validated, then turned into settings
