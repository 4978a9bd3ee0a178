"""Synthesis rounds (DeepInversion, CMI, Fast): each iteration makes its pseudo-samples in a round of
``generator_steps`` optimisation steps, keeps the round's best batch (the lowest loss, as CMI's and Fast's releases
do; docs/methods.md on DeepInversion's) with the
teacher's logits in a pool, and the student steps draw from the pool (the DataFree code base's structure).

What a round optimises is the synthesis kind's: ``"inversion"`` the inputs themselves, from noise; ``"reinit"`` the
trainer's generator, re-initialised each round, and its latent codes; ``"meta"`` a copy of the trainer's generator
and its codes, the generator itself being the meta-learned initialisation (first-order MAML: the copy's gradients
summed over the round, one step of the meta optimiser). The loss is the generator objective's terms (the targets of
the one-hot term drawn per round) plus, for CMI, the instance contrast (:class:`InstanceContrast`).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd

from ..choices import SYNTHESES
from ..config import OptimizerConfig, default_of
from ..ops import synthesis_terms as terms
from ..replay.buffer import ReplayBuffer
from ..rules import Problem, check, non_negative, one_of, positive
from ..runtime.phases import phase
from .generator_objective import GeneratorObjective
from .inspection import eval_mode

ROUNDS = SYNTHESES[1:]  # the kinds that synthesise in rounds ("generator" is the trainer's own loop)
POOL_KEY = 0x9E3779B9  # added to the seed: the pool's draws independent of a replay memory keyed by the same seed
INIT_STD = 0.02  # the releases' re-initialisation: N(0, 0.02) weights (N(1, 0.02) BatchNorm scales), zero biases


@dataclass(frozen=True, kw_only=True)
class SynthesisSettings:
    """How an iteration's pseudo-samples are made (the config's ``synthesis*`` and ``contrastive*`` fields)."""

    kind: str = default_of("synthesis")
    steps: int = default_of("generator_steps")  # optimisation steps per round
    batch_size: int = default_of("batch_size")  # samples per round
    latent_dim: int = default_of("latent_dim")
    pool: int = default_of("synthesis_pool")
    latent_lr: float = default_of("synthesis_latent_lr")  # 0: the optimiser's learning rate
    warmup: int = default_of("synthesis_warmup")
    jitter: float = default_of("synthesis_jitter")
    flip: bool = default_of("synthesis_flip")
    reset_round: int = default_of("synthesis_reset_round")  # meta: re-initialise the first layer at this round
    clip_mean: tuple[float, ...] = default_of("synthesis_clip_mean")  # inversion: clip to [0, 1] under these
    clip_std: tuple[float, ...] = default_of("synthesis_clip_std")
    optimizer: OptimizerConfig = default_of("generator_optimizer")  # the round's (its lr and betas; Adam)
    contrastive: float = default_of("generator_weights.contrastive")
    contrastive_temperature: float = default_of("contrastive_temperature")
    contrastive_bank: int = default_of("contrastive_bank")
    contrastive_negatives: int = default_of("contrastive_negatives")
    contrastive_head_dim: int = default_of("contrastive_head_dim")
    seed: int = default_of("seed")

    def __post_init__(self) -> None:
        check(self, [*one_of(self, kind=SYNTHESES), *non_negative(self, "latent_lr", "warmup", "jitter", "reset_round"),
                     *positive(self, "pool", "contrastive_temperature", "contrastive_bank", "contrastive_negatives",
                               "contrastive_head_dim"), *self._joined()])

    def _joined(self) -> list[Problem]:
        problems = []
        if self.jitter >= 0.5:
            problems.append(Problem(f"{{jitter}} must be below 0.5 (a fraction of each size), got {self.jitter}"))
        if self.contrastive and self.kind not in ("reinit", "meta"):
            problems.append(Problem("{contrastive} > 0 needs {kind} 'reinit' or 'meta' (CMI's instance contrast "
                                    f"is a synthesis round's), got {self.kind!r}"))
        if self.reset_round and self.kind != "meta":
            problems.append(Problem(f"{{reset_round}} > 0 re-initialises the meta-learned generator: it needs {{kind}} "
                                    f"'meta', got {self.kind!r}"))
        problems.extend(self._clip_problems())
        if self.kind in ROUNDS and self.steps < 1:
            problems.append(Problem(f"{{kind}}={self.kind!r} needs {{steps}} >= 1 (the steps of a round)"))
        return problems

    def _clip_problems(self) -> list[Problem]:
        if not (self.clip_mean or self.clip_std):
            return []
        if len(self.clip_mean) != len(self.clip_std):
            return [Problem(f"{{clip_mean}} and {{clip_std}} are set together, one value per channel each, got "
                            f"{len(self.clip_mean)} and {len(self.clip_std)}")]
        problems = []
        if not all(math.isfinite(m) for m in self.clip_mean) or \
                not all(math.isfinite(sd) and sd > 0 for sd in self.clip_std):
            problems.append(Problem(f"{{clip_mean}} must be finite and {{clip_std}} positive and finite, got "
                                    f"{list(self.clip_mean)} and {list(self.clip_std)}"))
        if self.kind != "inversion":
            problems.append(Problem(f"{{clip_mean}} clips optimised inputs: it needs {{kind}} 'inversion', "
                                    f"got {self.kind!r}"))
        return problems

    def clip_bounds(self) -> tuple[Tensor, Tensor] | None:
        """Per channel, the normalised values of black and white (0 and 1 under ``clip_mean``, ``clip_std``)."""
        if not self.clip_mean:
            return None
        mean = torch.tensor(self.clip_mean, dtype=torch.float64)  # in float64, rounded once to the inputs' dtype
        std = torch.tensor(self.clip_std, dtype=torch.float64)
        return -mean / std, (1 - mean) / std

    @property
    def rounds(self) -> bool:
        """Whether samples come from synthesis rounds (else from the trainer's generator loop)."""
        return self.kind in ROUNDS


def _nothing() -> None:
    """Nothing to do at that point of the round."""


@dataclass(frozen=True)
class RoundSource:
    """What a round optimises (the optimiser's parameter groups), how it makes a batch, and its hooks: after each
    backward, after each optimiser step, at the round's end."""

    params: list[dict[str, Any]]
    make: Callable[[], Tensor]
    after_backward: Callable[[], None] = _nothing
    after_step: Callable[[], None] = _nothing
    finish: Callable[[], None] = _nothing


class SynthesisRounds:
    """A synthesis round per iteration into a pool the student steps draw from; owns the pool, the round
    counter, its random stream and (CMI) the contrast head and bank, (Fast) the meta optimiser."""

    def __init__(self, settings: SynthesisSettings, objective: GeneratorObjective, generator: nn.Module,
                 sample_shape: tuple[int, ...], num_classes: int, device: torch.device) -> None:
        self.settings, self.objective, self.generator = settings, objective, generator
        self.sample_shape, self.num_classes, self.device = tuple(sample_shape), num_classes, device
        self.rng = torch.Generator().manual_seed(settings.seed)  # on the CPU: the same draws on every device
        self.pool = ReplayBuffer(settings.pool, self.sample_shape, num_classes, policy="reservoir", device=device,
                                 seed=settings.seed + POOL_KEY)
        self.rounds = 0
        self.contrast = InstanceContrast(objective.teacher, settings, self.rng, self.sample_shape, device) \
            if settings.contrastive else None
        self.meta_optimizer = torch.optim.Adam(generator.parameters(), lr=settings.optimizer.lr * settings.steps,
                                               betas=settings.optimizer.betas) if settings.kind == "meta" else None
        self.first_layers = first_layers(generator) if settings.reset_round else []
        self.clip = settings.clip_bounds()
        channels = self.sample_shape[0] if len(self.sample_shape) > 1 else 1
        if self.clip is not None and len(settings.clip_mean) != channels:
            raise ValueError(f"synthesis_clip_mean has {len(settings.clip_mean)} values, the samples have "
                             f"{channels} channel(s)")

    # ----------------------------------------------------------------- a round
    def round(self, student: nn.Module) -> float:
        """One round: ``steps`` optimisation steps, the best batch and its logits into the pool; the best loss."""
        s = self.settings
        self.rounds += 1
        targets = torch.randint(0, self.num_classes, (s.batch_size,), generator=self.rng).to(self.device)
        source = self._source()
        optimizer = torch.optim.Adam(source.params, lr=s.optimizer.lr, betas=s.optimizer.betas)
        best_loss, best_x, best_features = math.inf, None, None
        with eval_mode(student):
            for _ in range(s.steps):
                with phase("round: samples"):
                    x = source.make()
                with phase("round: loss"):
                    loss, features = self._loss(x, student, targets)
                value = float(loss.detach())
                if not math.isfinite(value):
                    raise FloatingPointError(f"synthesis round {self.rounds}: the loss is {value}")
                if value < best_loss:
                    best_loss, best_x, best_features = value, x.detach().clone(), features
                optimizer.zero_grad(set_to_none=True)
                with phase("round: backward"):
                    loss.backward()
                with phase("round: optimiser"):
                    source.after_backward()
                    optimizer.step()
                    source.after_step()
                    if self.contrast is not None:
                        self.contrast.step()
        source.finish()
        self.objective.end_round()
        self._keep(best_x, best_features)
        return best_loss

    def _loss(self, x: Tensor, student: nn.Module, targets: Tensor) -> tuple[Tensor, Tensor | None]:
        """The round's loss on ``x`` and (CMI) the features the bank keeps should ``x`` be the best."""
        view = self._view(x)
        adversarial = self.rounds > self.settings.warmup
        if self.contrast is None:
            return self.objective.on_samples(x, view, student, adversarial=adversarial, targets=targets)[0], None
        with self.contrast.capture() as global_features:
            loss, _ = self.objective.on_samples(x, view, student, adversarial=adversarial, targets=targets)
        with phase("round: contrast"):
            with self.contrast.capture() as local_features:
                self.objective.teacher(local_view(x, self.rng))
            contrast, kept = self.contrast.loss(torch.cat(local_features, 1), torch.cat(global_features, 1))
        return loss + self.settings.contrastive * contrast, kept

    def _view(self, x: Tensor) -> Tensor:
        return jitter_and_flip(x, self.settings.jitter, self.settings.flip, self.rng)

    def _source(self) -> RoundSource:
        """What this kind's round optimises: the optimiser's parameter groups, how a batch is made, what follows
        each backward and each step and what ends the round."""
        s = self.settings
        z_lr = s.latent_lr or s.optimizer.lr
        if s.kind == "inversion":
            x = self._randn(s.batch_size, *self.sample_shape).requires_grad_()
            return RoundSource([{"params": [x]}], lambda: x, after_step=self._clipper(x))
        z = self._randn(s.batch_size, s.latent_dim).requires_grad_()
        if s.kind == "reinit":
            reinitialise(self.generator, self.rng)
            return RoundSource([{"params": list(self.generator.parameters())}, {"params": [z], "lr": z_lr}],
                               lambda: self.generator(z))
        if self.first_layers and self.rounds == s.reset_round:  # Fast's reset_l0
            reset_first_layers(self.first_layers, self.rng)
        fast = copy.deepcopy(self.generator).train()
        meta = FirstOrderMeta(self.generator, fast, self.meta_optimizer)
        return RoundSource([{"params": list(fast.parameters())}, {"params": [z], "lr": z_lr}], lambda: fast(z),
                           after_backward=meta.accumulate, finish=meta.step)

    def _clipper(self, x: Tensor) -> Callable[[], None]:
        """The inputs ``x`` clipped in place to the image range, per channel (nothing without ``clip_mean``)."""
        if self.clip is None:
            return _nothing
        shape = (-1,) + (1,) * (x.dim() - 2)
        low, high = (bound.to(x.device, x.dtype).view(shape) for bound in self.clip)

        def clip() -> None:
            with torch.no_grad():
                x.clamp_(low, high)
        return clip

    def _randn(self, *shape: int) -> Tensor:
        return torch.randn(shape, generator=self.rng).to(self.device)

    def _keep(self, x: Tensor, features: Tensor | None) -> None:
        """The round's best batch and the teacher's logits on it into the pool; its features into the bank."""
        with torch.no_grad(), phase("teacher forward"):
            logits = self.objective.teacher(x).float()
        self.pool.add(x.float(), logits)
        if self.contrast is not None and features is not None:
            self.contrast.remember(features)

    # ----------------------------------------------------------------- the student's batches
    def draw(self, n: int) -> tuple[Tensor, Tensor]:
        """``n`` pool samples and the teacher's logits on them (without replacement while the pool holds ``n``)."""
        return self.pool.sample(n, replace=len(self.pool) < n)

    # ----------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"rounds": self.rounds, "rng": self.rng.get_state(),
                                 "pool": self.pool.state_dict()}
        if self.contrast is not None:
            state["contrast"] = self.contrast.state_dict()
        if self.meta_optimizer is not None:
            state["meta_optimizer"] = self.meta_optimizer.state_dict()
        objective = self.objective.state_dict()
        if objective:  # the kept BatchNorm statistics (bn_momentum)
            state["objective"] = objective
        return state

    def _state_keys(self) -> set[str]:
        """The keys of :meth:`state_dict`, by what this synthesis holds."""
        held = {"contrast": self.contrast is not None, "meta_optimizer": self.meta_optimizer is not None,
                "objective": bool(self.objective.state_dict())}
        return {"rounds", "rng", "pool", *(key for key, present in held.items() if present)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        expected = self._state_keys()
        if set(state) != expected:
            raise ValueError(f"synthesis state holds {sorted(state)}, this synthesis needs {sorted(expected)} "
                             "(contrastive, synthesis and bn_prior_momentum decide them)")
        self.pool.load_state_dict(state["pool"])
        if "objective" in state:
            self.objective.load_state_dict(state["objective"])
        if self.contrast is not None:
            self.contrast.load_state_dict(state["contrast"])
        if self.meta_optimizer is not None:
            self.meta_optimizer.load_state_dict(state["meta_optimizer"])
        self.rounds = int(state["rounds"])
        self.rng.set_state(state["rng"])


class FirstOrderMeta:
    """Fast's meta-learned initialisation: the round's copy's gradients, summed over the round, are the meta
    generator's; one step of the meta optimiser at the end of the round (first-order MAML, Fast's release)."""

    def __init__(self, meta: nn.Module, fast: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.pairs = list(zip(meta.parameters(), fast.parameters(), strict=True))
        self.optimizer = optimizer
        self.sums = [torch.zeros_like(p) for p, _ in self.pairs]

    def accumulate(self) -> None:
        for total, (_, p) in zip(self.sums, self.pairs):
            if p.grad is not None:
                total.add_(p.grad)

    def step(self) -> None:
        for total, (p, _) in zip(self.sums, self.pairs):
            p.grad = total
        self.optimizer.step()
        for p, _ in self.pairs:
            p.grad = None


def reinitialise(model: nn.Module, rng: torch.Generator) -> None:
    """CMI's per-round reset: convolution and linear weights N(0, 0.02), BatchNorm scales N(1, 0.02), zero
    biases (drawn on the CPU from ``rng``)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, _ConvNd | nn.Linear) or \
                    (isinstance(m, _BatchNorm) and m.affine):
                mean = 1.0 if isinstance(m, _BatchNorm) else 0.0
                m.weight.copy_(mean + INIT_STD * torch.randn(m.weight.shape, generator=rng))
                if m.bias is not None:
                    m.bias.zero_()


def first_layers(model: nn.Module) -> list[nn.Module]:
    """What Fast's ``reset_l0`` re-initialises: the first linear or convolution layer of ``model`` (its generator's
    ``l1.0``, the projection of z) and the affine BatchNorm right after it (its ``conv_blocks.0``), in module order."""
    leaves = [m for m in model.modules() if next(m.children(), None) is None]
    for i, m in enumerate(leaves):
        if isinstance(m, _ConvNd | nn.Linear):
            after = leaves[i + 1:i + 2]
            return [m, *(b for b in after if isinstance(b, _BatchNorm) and b.affine)]
    raise ValueError(f"{type(model).__name__} has no linear or convolution layer to re-initialise")


def reset_first_layers(layers: list[nn.Module], rng: torch.Generator) -> None:
    """Fast's ``reset_l0``: weights N(0, 0.02) (the BatchNorm's scale too), zero biases (drawn on the CPU)."""
    with torch.no_grad():
        for m in layers:
            m.weight.copy_(INIT_STD * torch.randn(m.weight.shape, generator=rng))
            if m.bias is not None:
                m.bias.zero_()


def jitter_and_flip(x: Tensor, jitter: float, flip: bool, rng: torch.Generator) -> Tensor:
    """``x`` rolled by a random shift of up to ``jitter`` × each spatial size and (images, ``flip``) mirrored
    left-right with probability ½, the same for the whole batch (DeepInversion's ``jitter_and_flip``)."""
    if not jitter and not flip:
        return x
    spatial = terms.spatial(x)
    dims = tuple(range(2, spatial.dim()))
    shifts = tuple(int(torch.randint(-int(size * jitter), int(size * jitter) + 1, (1,), generator=rng))
                   for size in spatial.shape[2:])
    out = torch.roll(spatial, shifts, dims) if jitter else spatial
    if flip and spatial.dim() == 4 and float(torch.rand((), generator=rng)) < 0.5:
        out = torch.flip(out, dims=(3,))
    return out.reshape(x.shape)


def local_view(x: Tensor, rng: torch.Generator, scale: tuple[float, float] = (0.25, 1.0)) -> Tensor:
    """CMI's local view: a random crop of a random share ``scale`` of the area (square aspect), resized back to
    the full size (one crop for the batch)."""
    spatial = terms.spatial(x)
    sizes = spatial.shape[2:]
    share = scale[0] + (scale[1] - scale[0]) * float(torch.rand((), generator=rng))
    side = share ** (1.0 / len(sizes))
    crops = [max(1, round(size * side)) for size in sizes]
    starts = [int(torch.randint(0, size - crop + 1, (1,), generator=rng)) for size, crop in zip(sizes, crops)]
    window = spatial[(..., *(slice(a, a + c) for a, c in zip(starts, crops)))]
    mode = "bilinear" if len(sizes) == 2 else "linear"
    return F.interpolate(window, size=tuple(sizes), mode=mode, align_corners=False).reshape(x.shape)


class InstanceContrast:
    """CMI's contrastive part: the instance means of every BatchNorm layer's input (the teacher's features of a
    view), a projection head trained with the round, and a bank of earlier rounds' features as negatives."""

    def __init__(self, teacher: nn.Module, settings: SynthesisSettings, rng: torch.Generator,
                 sample_shape: tuple[int, ...], device: torch.device) -> None:
        self.teacher, self.settings, self.rng = teacher, settings, rng
        self.layers = [m for m in teacher.modules() if isinstance(m, _BatchNorm)]
        if not self.layers:
            raise ValueError("the contrastive term needs a teacher with BatchNorm layers (CMI's features are their "
                             "inputs' instance means)")
        with torch.no_grad(), eval_mode(teacher), self.capture() as found:
            teacher(torch.zeros(1, *sample_shape, device=device))
        self.dim = sum(f.shape[1] for f in found)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=rng)))
            self.head = nn.Sequential(nn.Linear(self.dim, self.dim), nn.ReLU(),
                                      nn.Linear(self.dim, settings.contrastive_head_dim)).to(device)
        self.optimizer = torch.optim.Adam(self.head.parameters(), lr=settings.optimizer.lr)
        self.bank = torch.zeros(settings.contrastive_bank, 2 * self.dim, device=device)  # local | global
        self.filled = self.pointer = 0

    @contextmanager
    def capture(self) -> Iterator[list[Tensor]]:
        """Hooks that collect the instance means of each BatchNorm input of the teacher forwards in the block."""
        found: list[Tensor] = []
        handles = [m.register_forward_hook(lambda _m, inputs, _out: found.append(terms.instance_means(inputs[0])))
                   for m in self.layers]
        try:
            yield found
        finally:
            for handle in handles:
                handle.remove()

    def loss(self, local: Tensor, global_: Tensor) -> tuple[Tensor, Tensor]:
        """The contrast of this step's views against each other and the bank's negatives, and the features the
        bank keeps should this step's batch be the round's best."""
        fresh = len(local)
        cached = self._negatives()
        cached_local, cached_global = cached.chunk(2, dim=1)
        projected = F.normalize(self.head(torch.cat([local, cached_local, global_, cached_global])), dim=1)
        proj_local, proj_global = projected.chunk(2, dim=0)
        loss = terms.contrastive_loss(proj_local, proj_global, fresh, self.settings.contrastive_temperature)
        return loss, torch.cat([local, global_], dim=1).detach()

    def _negatives(self) -> Tensor:
        n = min(self.settings.contrastive_negatives, self.filled)
        index = torch.randperm(self.filled, generator=self.rng)[:n].to(self.bank.device)
        return self.bank[index]

    def step(self) -> None:
        """The head's update (its gradients came with the round's backward)."""
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def remember(self, features: Tensor) -> None:
        """The round's best features into the bank (a ring over its rows)."""
        index = (self.pointer + torch.arange(len(features))) % len(self.bank)
        self.bank[index.to(self.bank.device)] = features.to(self.bank.dtype)  # bf16 rounds: the bank stays fp32
        self.pointer = int(index[-1] + 1) % len(self.bank)
        self.filled = min(len(self.bank), self.filled + len(features))

    def state_dict(self) -> dict[str, Any]:
        return {"head": self.head.state_dict(), "optimizer": self.optimizer.state_dict(), "bank": self.bank.clone(),
                "filled": self.filled, "pointer": self.pointer}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["bank"].shape != self.bank.shape:
            raise ValueError(f"contrast bank of shape {tuple(state['bank'].shape)}, this one is "
                             f"{tuple(self.bank.shape)}")
        self.head.load_state_dict(state["head"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.bank.copy_(state["bank"])
        self.filled, self.pointer = int(state["filled"]), int(state["pointer"])
