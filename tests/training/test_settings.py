"""From the flat config to each part's settings: every config field is read by some part, every part's
settings are frozen and built by keyword only, and the trainer reads the config in one place."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import operator
import re

import pytest

from lrwa_fast import DFADConfig, GeneratorLossWeights, KDLoss, LRwAConfig, MetaSettings, OptimizerConfig
from lrwa_fast.replay import BufferSettings, GenerativeSettings
from lrwa_fast.rules import SettingsError
from lrwa_fast.runtime.services import RuntimeSettings
from lrwa_fast.training import settings
from lrwa_fast.training.generator_ema import EMASettings
from lrwa_fast.training.generator_objective import ObjectiveSettings
from lrwa_fast.training.probes import ProbeSettings
from lrwa_fast.training.trainer import Trainer
from tests.support import ROOT


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
    built = next(part for part in _built_parts() if type(part) is cls)
    first = dataclasses.fields(cls)[0]
    with pytest.raises(TypeError):
        cls(getattr(built, first.name))  # one positional argument is refused


def _built_parts() -> list:
    built = [settings.part_settings(LRwAConfig(**v)) for v in VARIANTS]
    return [getattr(parts, f.name) for parts in built for f in dataclasses.fields(parts)]


def test_the_builders_pass_every_setting_by_keyword():
    """Every settings class is built from its field map, by name."""
    assert set(settings.SETTINGS) == set(settings.FIELDS)
    for name, cls in settings.SETTINGS.items():
        assert set(settings.FIELDS[name]) <= {f.name for f in dataclasses.fields(cls)}, name
    tree = ast.parse((ROOT / "lrwa_fast" / "training" / "settings.py").read_text(encoding="utf-8"))
    classes = {cls.__name__ for cls in settings.SETTINGS.values()}
    positional = [ast.unparse(node)[:60] for node in ast.walk(tree)
                  if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in classes
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
    assert len(reads.findall(inspect.getsource(Trainer.__init__))) == 2  # kept, then checked and turned into settings


# ----------------------------------------------------------------- each default written once: in the config
def test_every_default_a_part_takes_from_the_config_is_the_configs():
    """A settings field fed from a config key has no default, or the config's, taken by ``default_of``: a
    literal written in the part would fail here, so a default cannot drift between two copies. A settings
    class several parts share (``UpdaterSettings``: the student's, the generator's, the VAE's) takes no
    config default at all: each part's value is given."""
    classes = list(settings.SETTINGS.values())
    for name, fields in settings.FIELDS.items():
        own = {f.name: f for f in dataclasses.fields(settings.SETTINGS[name])}
        for field_name, source in fields.items():
            f = own[field_name]
            has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
            if classes.count(settings.SETTINGS[name]) > 1:
                assert "config" not in f.metadata, f"{name}.{field_name}: a shared class follows one part's default"
                continue
            if isinstance(source, settings.Derived):
                assert not has_default or f.metadata.get("config", source.keys[0]) in source.keys, (name, field_name)
                continue
            assert not has_default or f.metadata.get("config") == source, f"{name}.{field_name}: a default of its own"
            if has_default:
                default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
                assert default == operator.attrgetter(source)(LRwAConfig()), (name, field_name)


def test_a_literal_default_in_a_part_would_be_caught():
    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Drifted:
        capacity: int = 2048  # the config's value, written a second time

    f = dataclasses.fields(Drifted)[0]
    assert f.metadata.get("config") != "memory_capacity"


def test_the_parts_built_alone_match_the_trainers_defaults():
    """A part built on its own (``BufferSettings()``) equals the one the default config gives the trainer."""
    parts = settings.part_settings(LRwAConfig())
    assert BufferSettings() == parts.memory and MetaSettings() == parts.meta and KDLoss() == parts.loss
    assert RuntimeSettings() == parts.runtime and EMASettings() == parts.ema and ProbeSettings() == parts.probes
    assert ObjectiveSettings() == parts.objective
    assert GenerativeSettings(horizon=parts.loop.iterations) == settings.part_settings(
        LRwAConfig(memory_kind="generative")).memory


# ----------------------------------------------------------------- each rule written once: with its part
RULES = [  # (config fields, the part that owns the rule or None for a rule joining parts, text of the message)
    (dict(batch_size=0), "loop", "batch_size=0 (must be > 0)"),
    (dict(generator_steps=-1), "loop", "generator_steps=-1 (must be >= 0)"),
    (dict(keep_checkpoints=0), "checkpoints", "keep_checkpoints=0 (must be > 0)"),
    (dict(precision="fp8"), "runtime", "precision='fp8' (expected one of"),
    (dict(backend="cuda"), "runtime", "backend='cuda' (expected one of"),  # also KDLoss's: said once
    (dict(dist_timeout=0.0), "runtime", "dist_timeout=0.0 (must be > 0)"),
    (dict(loss="mse"), "loss", "loss='mse' (expected one of"),
    (dict(temperature=float("inf")), "loss", "temperature=inf (must be a positive finite number)"),
    (dict(adversarial_loss="mse"), "objective", "adversarial_loss='mse' (expected one of"),
    (dict(generator_weights=GeneratorLossWeights(bn_prior=-1.0)), "objective",
     "generator_weights.bn_prior=-1.0 (must be >= 0)"),
    (dict(student_optimizer=OptimizerConfig(name="lion")), "student_updater", "student_optimizer.name='lion'"),
    (dict(generator_optimizer=OptimizerConfig(momentum=1.0)), "generator_updater",
     "generator_optimizer.momentum and generator_optimizer.betas must lie in [0, 1)"),
    (dict(grad_clip=-1.0), "student_updater", "grad_clip=-1.0 (must be >= 0)"),
    (dict(memory_capacity=0), "buffer", "memory_capacity=0 (must be > 0)"),
    (dict(memory_dtype="int8"), "buffer", "memory_dtype='int8' (expected one of"),
    (dict(memory_draw="entry", memory_policy="reservoir"), "buffer",
     "memory_draw='entry' needs memory_policy='fifo' (a reservoir breaks insertions apart)"),
    (dict(memory_draw="entry", memory_policy="fifo", memory_capacity=100), "buffer",
     "memory_draw='entry' needs memory_capacity (100) to hold whole entries of memory_insert_size (32)"),
    (dict(memory_draw="entry", memory_policy="fifo", memory_batch_size=16), "buffer",
     "memory_draw='entry' draws one entry: memory_batch_size (16) must equal memory_insert_size (32)"),
    (dict(memory_kind="generative", vae_latent_dim=-2), "generative", "vae_latent_dim=-2 (must be > 0)"),
    (dict(memory_kind="generative", vae_optimizer=OptimizerConfig(lr=-1.0)), "generative",
     "vae_optimizer.lr and vae_optimizer.weight_decay must be >= 0"),
    (dict(meta_mode="second"), "meta", "meta_mode='second' (expected one of"),
    (dict(inner_lr=-1.0), "meta", "inner_lr=-1.0 (must be >= 0)"),
    (dict(bn_mode="joint"), "meta", "bn_mode='joint' updates the BatchNorm statistics in the joint replay pass: "
                                    "it needs joint_replay=True"),
    (dict(meta_mode="none"), "meta", "meta_mode='none' without joint_replay would sample the memory"),
    (dict(fd_epsilon=0.0), "meta", "fd_epsilon must be a positive finite number (or None for the rule), got 0.0"),
    (dict(ema_decay=1.0), "ema", "ema_decay=1.0 (must lie in [0, 1))"),
    (dict(ema_share=1.5), "ema", "ema_share=1.5 (must lie in [0, 1])"),
    (dict(probe_every=-1), "probes", "probe_every=-1 (must be >= 0)"),
    (dict(probe_size=0), "probes", "probe_size=0 (must be > 0)"),
    (dict(generator_weights=GeneratorLossWeights(adversarial=0.0)), None,
     "generator_weights are all zero but generator_steps > 0"),
    (dict(compile_student=True), None, "compile_student=True with meta_mode='exact': compiled graphs have no double "
                                       "backward"),
    (dict(memory_draw="entry", memory_policy="fifo", memory_insert_size=512, memory_batch_size=512,
          memory_capacity=1024), None, "memory_insert_size (512) must not exceed batch_size (256)"),
]


@pytest.mark.parametrize(("fields", "part", "text"), RULES, ids=lambda v: v if isinstance(v, str) else None)
def test_each_rule_breaks_once_with_the_message_of_its_part(fields, part, text):
    """The config's message is the part's own problem with its fields renamed to config keys: one definition."""
    config = LRwAConfig(**fields)
    with pytest.raises(SettingsError) as caught:
        settings.validate(config)
    assert [text in p.render() for p in caught.value.problems] == [True], caught.value
    if part is not None:
        with pytest.raises(SettingsError) as direct:
            settings.SETTINGS[part](**settings.values_of(part, config))
        assert [p.renamed(settings.config_names(part, config)).render() for p in direct.value.problems] == \
            [p.render() for p in caught.value.problems]


def test_every_problem_of_a_config_comes_together():
    """The parts' problems and those joining parts whose parts were built, in one message, each once."""
    with pytest.raises(ValueError) as caught:
        settings.validate(LRwAConfig(loss="x", memory_capacity=0, ema_share=2.0, backend="x", compile_student=True,
                                     generator_weights=GeneratorLossWeights(adversarial=0.0)))
    message = str(caught.value)
    assert message.startswith("invalid configuration: ")
    for key in ("loss='x'", "memory_capacity=0", "ema_share=2.0", "backend='x'",
                "compile_student=True with meta_mode='exact'", "generator_weights are all zero"):
        assert message.count(key) == 1, key
    with pytest.raises(ValueError) as caught:  # the loop broke its own rule: the rules joining it wait
        settings.validate(LRwAConfig(batch_size=0, compile_student=True))
    assert str(caught.value) == "invalid configuration: batch_size=0 (must be > 0)"


def test_a_derived_value_is_named_by_the_key_that_gave_it():
    """The VAE's code size is ``vae_latent_dim``, else ``latent_dim``: a bad one is named by where it came from."""
    with pytest.raises(SettingsError) as caught:
        settings.validate(LRwAConfig(memory_kind="generative", latent_dim=0))
    assert [p.render() for p in caught.value.problems] == ["latent_dim=0 (must be > 0)"]
    with pytest.raises(SettingsError) as caught:
        settings.validate(LRwAConfig(memory_kind="generative", vae_latent_dim=-2))
    assert [p.render() for p in caught.value.problems] == ["vae_latent_dim=-2 (must be > 0)"]


@pytest.mark.parametrize("phrase", [
    "a reservoir breaks insertions apart", "compiled graphs have no double",
    "updates the BatchNorm statistics in the joint replay pass", "would sample the memory and never use it",
    "(or None for the rule)", "an entry is the first samples of one fresh batch", "draws one entry",
    "are all zero but", "to hold whole entries of", "(must be > 0)", "(must be >= 0)", "(expected one of",
    "must lie in [0, 1), got", "(must be a positive finite number)"])
def test_each_rule_is_written_in_one_module(phrase):
    written = [p.relative_to(ROOT).as_posix() for p in sorted((ROOT / "lrwa_fast").rglob("*.py"))
               if phrase in p.read_text(encoding="utf-8")]
    assert len(written) == 1, written
