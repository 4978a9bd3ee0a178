"""Generative replay: a memory part that learns the pseudo-sample stream with a VAE instead of storing it.

The authors' second memory (``Ours-2`` in gaurav104/LRA, built on PRE-DFKD): during an iteration the
VAE learns from fresh batches (plus samples it decodes itself, so it keeps what it learned before), and
every retention batch is decoded from its prior, optionally after a step on the latent codes towards
confident, class-balanced teacher outputs; the teacher's logits on them come from a teacher forward.
Its size is the VAE's, whatever the run length. It follows the same part interface as
:class:`~lrwa_fast.replay.BufferMemory` (:class:`~lrwa_fast.replay.Memory`); the built-in VAEs are in
:mod:`.vae`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import OptimizerConfig, default_of
from ..ops import losses
from ..optim import Updater, UpdateResult, UpdaterSettings, gradients
from ..optim.optimizers import optimizer_problems
from ..rules import check, nested, non_negative, positive
from ..runtime.deprecation import renamed_method
from ..runtime.phases import phase
from ..runtime.services import Runtime
from .vae import check_vae, reparameterise, vae_loss

SEED_OFFSET = 0x6E4D  # the memory's stream is seeded with seed + this, apart from the trainer's latent stream


@dataclass(frozen=True, kw_only=True)
class GenerativeSettings:
    """How the memory learns and samples (the config's ``vae_*`` fields, ``memory_batch_size``,
    ``memory_start``, the generator's one-hot / balance weights, the run length and seed). Sizes are this
    rank's: the memory factory divides the config's global sizes by the number of ranks."""

    batch_size: int = default_of("memory_batch_size")  # per retention draw, and self-replayed per VAE update
    steps: int = default_of("vae_steps")  # VAE updates per iteration, on the iteration's first fresh batches
    fresh_size: int = default_of("vae_fresh_size")  # fresh samples per VAE update (the first of the batch)
    kl_weight: float = default_of("vae_kl_weight")
    teacher_weight: float = default_of("vae_teacher_weight")
    refine_steps: int = default_of("vae_refine_steps")  # Adam steps on the prior codes before decoding (0: none)
    refine_lr: float = default_of("vae_refine_lr")
    one_hot: float = default_of("generator_weights.one_hot")  # weights of the refinement's teacher terms
    balance: float = default_of("generator_weights.balance")
    start: int = default_of("memory_start")  # first iteration whose batches the VAE learns from
    latent_dim: int = default_of("latent_dim")  # the built-in VAE's code size (the config's vae_latent_dim, else)
    width: int = default_of("vae_width")  # the built-in VAE's width
    optimizer: OptimizerConfig = default_of("vae_optimizer")
    horizon: int = default_of("iterations")  # the run's iterations (the VAE optimiser's schedule)
    seed: int = default_of("seed")  # the memory's random stream is seeded with seed + SEED_OFFSET

    def __post_init__(self) -> None:
        check(self, [*positive(self, "batch_size", "steps", "fresh_size", "latent_dim", "width"),
                     *non_negative(self, "kl_weight", "teacher_weight", "refine_steps", "refine_lr", "start"),
                     *nested("optimizer", optimizer_problems(self.optimizer))])


class GenerativeMemory:
    """A VAE trained online on fresh pseudo-samples, sampled for retention batches.

    Its update goes through its own :class:`~lrwa_fast.optim.Updater` (named ``"vae"``), so the
    trainer's non-finite policy, metrics and BatchNorm rollback cover it; its state (VAE weights and
    buffers, optimiser, random stream, counters) is checkpointed with the trainer's.
    """

    def __init__(self, vae: nn.Module, teacher: nn.Module, sample_shape: tuple[int, ...],
                 settings: GenerativeSettings, runtime: Runtime) -> None:
        self.rng = torch.Generator(device=runtime.device).manual_seed(settings.seed + SEED_OFFSET)
        self.vae = vae.to(runtime.device)
        check_vae(self.vae, tuple(sample_shape), self.rng)
        self.teacher, self.settings = teacher, settings
        params = [p for p in self.vae.parameters() if p.requires_grad]
        own = UpdaterSettings(optimizer=settings.optimizer, horizon=settings.horizon, averaged=False)  # per rank
        self.updater = Updater("vae", params, own, runtime, rollback=(self.vae,))
        self.updates, self.seen = 0, 0
        self._pending: list[tuple[Tensor, Tensor]] = []

    def __len__(self) -> int:
        """Fresh samples the VAE has learned from (0: nothing to replay yet)."""
        return self.seen

    def observe(self, x: Tensor, t: Tensor) -> None:
        """Keep the first ``fresh_size`` samples of the iteration's first ``steps`` fresh batches."""
        if len(self._pending) < self.settings.steps:
            n = self.settings.fresh_size
            self._pending.append((x[:n], t[:n]))

    def end_of_iteration(self, iteration: int, *, clean: bool) -> None:
        """One VAE update per kept batch, unless a step of the iteration was skipped (it may have met a
        non-finite batch) or the memory has not started yet; then one step of the VAE's schedule."""
        pending, self._pending = self._pending, []
        for k, (x, t) in enumerate(pending if clean and iteration >= self.settings.start else []):
            snapshot = self.updater.snapshot()
            if self.updater.apply(self._vae_update(x, t), f"iteration {iteration}, vae step {k}", snapshot):
                self.updates, self.seen = self.updates + 1, self.seen + len(x)
        self.updater.advance_schedule()

    def _vae_update(self, x: Tensor, t: Tensor) -> UpdateResult:
        """The VAE's loss gradient on fresh samples plus (once it has learned) as many of its own."""
        if self.updates:
            x_old, t_old = self.retention_batch(x.dtype)
            x, t = torch.cat([x, x_old]), torch.cat([t, t_old])
        self.vae.train()
        with phase("vae forward/backward"):
            mu, log_var = self.vae.encode(x)
            recon = self.vae.decode(reparameterise(mu, log_var, self.rng))
            s = self.settings
            t_recon = self.teacher(recon) if s.teacher_weight else t
            loss = vae_loss(x, recon, mu, log_var, t, t_recon, kl_weight=s.kl_weight, teacher_weight=s.teacher_weight)
            grads = gradients(loss, self.updater.params)
        self.vae.eval()
        return UpdateResult(grads, {"loss_vae": loss})

    def retention_batch(self, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """A retention batch of ``batch_size`` decoded samples and the teacher's logits on them."""
        x = self.sample(self.settings.batch_size)
        with torch.no_grad(), phase("memory teacher forward"):
            t = self.teacher(x)
        return x.to(dtype), t.to(dtype)

    draw = renamed_method("draw", "retention_batch", since="0.5")

    def sample(self, n: int) -> Tensor:
        """``n`` samples decoded (VAE in eval mode, no graph) from prior codes refined by
        ``refine_steps`` Adam steps."""
        self.vae.eval()
        with phase("vae sample"):
            z = self.vae.sample(n, self.rng)
            if self.settings.refine_steps:
                z = self._refine(z)
            with torch.no_grad():
                return self.vae.decode(z)

    def _refine(self, z: Tensor) -> Tensor:
        """Adam steps (fresh state) on ``z`` against the teacher's one-hot and balance terms plus a
        pull of the batch's code mean and variance towards the prior's (0 and 1)."""
        z = z.detach().requires_grad_(True)
        optimizer = torch.optim.Adam([z], lr=self.settings.refine_lr)
        with torch.enable_grad():
            for _ in range(self.settings.refine_steps):
                z.grad = torch.autograd.grad(self.refine_loss(z), z)[0]
                optimizer.step()
        return z.detach()

    def refine_loss(self, z: Tensor) -> Tensor:
        """What the latent refinement minimises (public so it can be checked against a reference)."""
        s = self.settings
        t = self.teacher(self.vae.decode(z))
        codes = z.flatten(1)
        loss = F.mse_loss(codes.var(0, correction=0), torch.ones_like(codes[0])) + codes.mean(0).square().mean()
        if s.one_hot:
            loss = loss + s.one_hot * losses.one_hot_loss(t)
        if s.balance:
            loss = loss + s.balance * losses.class_balance_loss(t)
        return loss

    def metrics(self) -> dict[str, float]:
        return {"memory_vae_updates": self.updates}

    def state_dict(self) -> dict[str, Any]:
        return {"vae": self.vae.state_dict(), "updater": self.updater.state_dict(),
                "random": self.rng.get_state(), "updates": self.updates, "seen": self.seen}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; a state of another VAE is a ``ValueError`` naming what differs."""
        try:
            self.vae.load_state_dict(state["vae"])
        except RuntimeError as err:
            raise ValueError(f"generative memory state does not fit this VAE: {err}") from err
        self.updater.load_state_dict(state["updater"])
        self.rng.set_state(state["random"])
        self.updates, self.seen = int(state["updates"]), int(state["seen"])
