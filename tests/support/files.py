"""Files the tests write: a hostile pickle and a tiny ``distill`` config with its teacher and evaluation data."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from lrwa_fast.models import build_model


class CallsAFunction:
    """Pickles to a call of os.system, as a malicious file would."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def write_distill_config(tmp_path: Path, **trainer) -> Path:
    """A ``distill`` config file for a tiny LRwA run on a random cnn teacher, evaluated on random data."""
    torch.manual_seed(0)
    teacher = build_model("cnn", num_classes=10, in_channels=1)
    torch.save(teacher.state_dict(), tmp_path / "teacher.pt")
    torch.save({"x": torch.randn(20, 1, 8, 8), "y": torch.randint(0, 10, (20,))}, tmp_path / "eval.pt")
    spec = {
        "method": "lrwa",
        "teacher": {"arch": "cnn", "checkpoint": str(tmp_path / "teacher.pt"), "num_classes": 10,
                    "in_channels": 1},
        "student": {"arch": "cnn_small", "num_classes": 10, "in_channels": 1},
        "generator": {"img_size": 8, "ngf": 8},
        "trainer": {"batch_size": 8, "latent_dim": 16, "iterations": 4, "student_steps": 1, "device": "cpu",
                    "checkpoint_every": 2, **trainer},
        "eval_data": str(tmp_path / "eval.pt"),
        "eval_every": 2,
        "output_dir": str(tmp_path / "run"),
    }
    path = tmp_path / "distill.json"
    path.write_text(json.dumps(spec))
    return path
