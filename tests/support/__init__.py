"""What the test modules share, besides the fixtures of ``tests/conftest.py``: the one package of the tests that
other test modules may import (``from tests.support import ROOT, run_meta``); no test module imports another.

- ``processes``: fresh interpreters on this checkout (:func:`subprocess_env`, :func:`run_python`, ...), ``ROOT``;
- ``meta_cases``: the meta-gradient's reference cases; ``files``: a hostile pickle, a tiny ``distill`` config;
- ``manifests``: teacher files in the community's layouts, rebuilt from ``tests/models/manifests``;
- ``workers``: the functions spawned ranks run (``from tests.support import workers as w``), imported by name in
  the spawned processes;
- ``torchrun``: the torchrun harness of the multi-process tests, and ``torchrun_user.py``, the user's script
  it runs.

The harness meant for users' tests too lives in :mod:`lrwa_fast.testing`.
"""

from .files import CallsAFunction, write_distill_config
from .manifests import EXPECTED_LAYOUT, distinct_tensors, manifest, manifest_entries, write_teacher_file
from .meta_cases import bn_cnn, flat, make_case, mlp, run_meta
from .processes import ROOT, assert_compiles, resume_in_a_fresh_process, run_python, subprocess_env

__all__ = ["EXPECTED_LAYOUT", "ROOT", "CallsAFunction", "assert_compiles", "bn_cnn", "distinct_tensors", "flat",
           "make_case", "manifest", "manifest_entries", "mlp", "resume_in_a_fresh_process", "run_meta", "run_python",
           "subprocess_env", "write_distill_config", "write_teacher_file"]
