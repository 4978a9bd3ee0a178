"""Every named choice of the library, in one place: the values a config field accepts and an
implementation dispatches on.

The configs validate against these tuples and the implementations import them from here, so a
choice is spelled once and the configs need no implementation module. A tuple is named after the
config field it serves.
"""

from __future__ import annotations

LOSS_KINDS: tuple[str, ...] = ("l1", "kl", "js")  # loss, adversarial_loss: lrwa_fast.ops.losses
NONFINITE_POLICIES: tuple[str, ...] = ("raise", "skip")  # nonfinite: lrwa_fast.runtime.guard
KERNEL_BACKENDS: tuple[str, ...] = ("auto", "torch", "triton")  # backend: lrwa_fast.ops.dispatch
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16")  # precision: lrwa_fast.runtime.precision
OPTIMIZERS: tuple[str, ...] = ("sgd", "adam")  # OptimizerConfig.name: lrwa_fast.optim.optimizers
SCHEDULES: tuple[str, ...] = ("cosine", "constant")  # OptimizerConfig.schedule
MEMORY_KINDS: tuple[str, ...] = ("buffer", "generative")  # memory_kind: lrwa_fast.replay
MEMORY_POLICIES: tuple[str, ...] = ("reservoir", "fifo")  # memory_policy: lrwa_fast.replay.buffer.writers
MEMORY_DRAWS: tuple[str, ...] = ("uniform", "entry")  # memory_draw: lrwa_fast.replay.buffer.samplers
MEMORY_DTYPES: tuple[str, ...] = ("float32", "float16", "bfloat16")  # memory_dtype
MEMORY_BACKENDS: tuple[str, ...] = ("auto", "torch", "cpp", "cuda")  # memory_backend: lrwa_fast.replay.buffer
META_GRADIENT_MODES: tuple[str, ...] = ("exact", "first_order", "finite_difference")  # MetaSettings(mode=)
META_MODES: tuple[str, ...] = (*META_GRADIENT_MODES, "none")  # meta_mode: lrwa_fast.updates.MetaUpdate
BN_MODES: tuple[str, ...] = ("acquire", "all", "retain_eval", "joint")  # bn_mode
SYNTHESES: tuple[str, ...] = ("generator", "inversion", "reinit", "meta")  # synthesis: lrwa_fast.training.synthesis
FD_SCHEMES: tuple[str, ...] = ("central", "one_sided")  # fd_scheme
