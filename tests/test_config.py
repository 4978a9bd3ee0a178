"""Configs: files and key=value overrides, types, validation of ranges and combinations."""

from __future__ import annotations

import json

import pytest

from lrwa_fast.config import DFADConfig, LRwAConfig, load_config, to_dict
from lrwa_fast.training.settings import validate


def test_config_files_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("inner_lr: 0.2\nstudent_optimizer:\n  lr: 1e-3\n")
    cfg = load_config(LRwAConfig, path, ["generator_weights.bn_prior=2", "meta_mode=first_order"])
    assert (cfg.inner_lr, cfg.student_optimizer.lr, cfg.generator_weights.bn_prior, cfg.meta_mode) == (
        0.2, 0.001, 2.0, "first_order")
    assert cfg.student_optimizer.momentum == 0.9, "unspecified nested fields keep their defaults"
    json_path = tmp_path / "c.json"
    json_path.write_text(json.dumps(to_dict(cfg)))
    assert load_config(LRwAConfig, json_path) == cfg


def test_a_list_of_any_length():
    cfg = load_config(DFADConfig, None, ["synthesis_clip_mean=[0.5, 1]", "synthesis_clip_std=[0.25]"])
    assert (cfg.synthesis_clip_mean, cfg.synthesis_clip_std) == ((0.5, 1.0), (0.25,))
    assert load_config(DFADConfig, None, ["synthesis_clip_mean=[]"]).synthesis_clip_mean == ()
    with pytest.raises(ValueError, match="synthesis_clip_mean must be a list of values"):
        load_config(DFADConfig, None, ["synthesis_clip_mean=0.5"])
    with pytest.raises(ValueError, match="synthesis_clip_std must be a number"):
        load_config(DFADConfig, None, ["synthesis_clip_std=[wide]"])


@pytest.mark.parametrize("overrides, match", [
    (["batch_size"], "key=value"),
    (["inner_lr=0.1"], "unknown config key"),
    (["batch_size=1.5"], "batch_size must be int"),
    (["student_optimizer.lr=fast"], "student_optimizer.lr must be a number"),
    (["student_optimizer.betas=[0.9]"], "must be a list of 2 values"),
    (["seed=1", "seed.x=2"], "seed is not a mapping"),
])
def test_bad_overrides(overrides, match):
    with pytest.raises(ValueError, match=match):
        load_config(DFADConfig, None, overrides)


@pytest.mark.parametrize("overrides, match", [
    ({"batch_size": 0}, "batch_size=0"),
    ({"loss": "mse"}, "loss='mse'"),
    ({"temperature": -1.0}, "temperature=-1.0"),
    ({"generator_weights": {"adversarial": 0.0}}, "all zero"),
    ({"student_optimizer": {"name": "lion"}}, "student_optimizer.name='lion'"),
    ({"student_optimizer": {"momentum": 1.0}}, "student_optimizer.momentum and student_optimizer.betas must lie in"),
    ({"generator_optimizer": {"lr": -1.0}}, "generator_optimizer.lr and generator_optimizer.weight_decay must be >= 0"),
    ({"student_optimizer": {"schedule": "step"}}, "schedule='step'"),
])
def test_validation_names_the_field(overrides, match):
    from lrwa_fast.config import from_dict

    base = to_dict(DFADConfig())
    for key, value in overrides.items():
        base[key] = {**base[key], **value} if isinstance(value, dict) else value
    with pytest.raises(ValueError, match=match):
        validate(from_dict(DFADConfig, base))


def test_all_problems_are_reported_at_once():
    with pytest.raises(ValueError, match=r"batch_size=0.*loss='x'|loss='x'.*batch_size=0"):
        validate(DFADConfig(batch_size=0, loss="x"))
