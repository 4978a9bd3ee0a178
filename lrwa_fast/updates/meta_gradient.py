"""The LRwA student update as a pure function of the student's parameters (``torch.func``).

Objective, for parameters θ, inner learning rate α, inner weight decay λ, acquisition weight a and
retain weight w::

    L_acq(θ)  = D(S_θ(x_acq), t_acq)                 knowledge acquisition (fresh samples)
    θ'        = θ − α (∇L_acq(θ) + λ θ)               inner step (one SGD step with weight decay)
    L_ret(θ') = D(S_θ'(x_mem), t_mem)                 knowledge retention (memory samples)
    J(θ)      = a · L_acq(θ) + w · L_ret(θ')  [+ D(S_θ(x_acq ∪ x_mem), t_acq ∪ t_mem)  with joint_replay]

The defaults (λ = 0, a = 1, no joint term) are the paper's objective; the authors' released step is
λ = 5e-4, a = 0 with the joint term (their outer loss has no separate acquisition term).

``mode="exact"`` returns ∇J = a ∇L_acq + w ((1 − αλ) I − α H_acq) ∇L_ret(θ'), back-propagating through
the inner step (second order); ``mode="first_order"`` drops the Hessian term (it treats ∇L_acq in θ' as
a constant, so the decay's factor 1 − αλ stays); ``mode="finite_difference"`` keeps it, with H_acq·v
(v = ∇L_ret(θ')) from acquisition gradients at perturbed weights instead of a double backward (as
DARTS does):

* ``fd_scheme="central"``: H·v ≈ (∇L_acq(θ + εv) − ∇L_acq(θ − εv)) / 2ε, error O(ε²);
* ``fd_scheme="one_sided"``: H·v ≈ (∇L_acq(θ + εv) − ∇L_acq(θ)) / ε, error O(ε), one pass fewer
  (it reuses the gradient at θ).

The step ε‖v‖ = c·(1 + ‖θ‖) balances truncation against rounding: c = u^(1/3) (central) or
u^(1/2) (one-sided) for the unit roundoff u of the dtype the forwards run in (θ's, or autocast's
under mixed precision; about 6e-6 / 1.5e-8 in float64, 4.9e-3 / 3.5e-4 in float32);
``fd_epsilon`` overrides ε itself. The extra passes normalise with
batch statistics as the acquisition pass does and never update running statistics; nothing is
kept for a double backward, so this mode also runs with a compiled student. Unlike the authors'
released code (``higher`` with ``copy_initial_weights=True``), θ' here is a differentiable
function of the model's own parameters, so the retention term reaches them.

BatchNorm (``bn_mode``), when the model is in training mode:

* ``"acquire"`` (default): both passes normalise with their batch statistics; only the acquisition
  pass updates the running statistics (once per step, like a plain KD step). The retention pass
  sees copies of the buffers, so memory samples never enter the running statistics.
* ``"all"``: both passes use batch statistics and both update the running statistics.
* ``"retain_eval"``: the retention pass normalises with the running statistics (as at test time)
  and updates nothing; the acquisition pass behaves as in ``"acquire"``.
* ``"joint"`` (with ``joint_replay``): every pass uses batch statistics and only the joint pass (at θ,
  on fresh and memory samples together) updates the running statistics: the authors' released step,
  whose inner loop (``higher``) works on copies of the buffers.

In evaluation mode every pass uses the running statistics and nothing is updated. The model's
``.grad`` fields are never touched: gradients come back in :class:`MetaResult`.

Data parallelism (``ranks``): each rank passes its shard of the acquisition and memory batches and
gets the gradient of the *global* J over the union of the shards. The inner step uses the globally
averaged acquisition gradient, through a differentiable all-reduce in ``exact`` mode (so the
second-order term sees the global inner step); ``finite_difference`` perturbs along the global
retention gradient; the rank's contribution is then averaged in one all-reduce. This global inner
step is the default and only form: each rank taking its own inner step (as learn2learn's
distributed MAML does) optimises the mean of per-shard objectives, which depends on the number of
processes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn.modules.batchnorm import _BatchNorm

from .. import ops
from ..choices import BN_MODES, FD_SCHEMES, META_MODES
from ..config import default_of
from ..optim import gradients, zeros_for_unused
from ..rules import Problem, check, non_negative, one_of
from ..runtime.deprecation import renamed_keyword
from ..runtime.distributed import Ranks
from ..runtime.phases import phase
from ..runtime.precision import compute_dtype, scaled, unscaled
from .base import KDLoss

MetaMode = Literal["exact", "first_order", "finite_difference", "none"]
BNMode = Literal["acquire", "all", "retain_eval", "joint"]
FDScheme = Literal["central", "one_sided"]
Batch = tuple[Tensor, Tensor]  # samples and the teacher's logits on them


@dataclass(frozen=True, kw_only=True)
class MetaSettings:
    """The LRwA update's objective and how its gradient is computed (the config's ``meta_mode``,
    ``inner_lr``, ``inner_weight_decay``, ``acquire_weight``, ``retain_weight``, ``joint_replay``,
    ``bn_mode``, ``fd_scheme`` and ``fd_epsilon``); checked once, here, when built.

    ``mode="none"`` means no meta term: :class:`~lrwa_fast.updates.MetaUpdate` then takes the acquisition
    gradient alone (:func:`meta_gradient` refuses it). ``alignment=False`` skips the gradient cosine (a
    reduction over every parameter), for steps whose metrics nobody reads.
    """

    mode: MetaMode = default_of("meta_mode")
    inner_lr: float = default_of("inner_lr")  # α of the inner step
    inner_weight_decay: float = default_of("inner_weight_decay")  # λ of θ' = θ − α(∇L_acq + λθ) (authors': 5e-4)
    acquire_weight: float = default_of("acquire_weight")  # a in J = a·L_acq + w·L_ret(θ') (the authors': 0)
    retain_weight: float = default_of("retain_weight")  # w in J = a·L_acq + w·L_ret(θ')
    joint_replay: bool = default_of("joint_replay")  # add L(θ; x_acq ∪ x_mem) to J, as the authors' code does
    bn_mode: BNMode = default_of("bn_mode")
    fd_scheme: FDScheme = default_of("fd_scheme")  # finite_difference only
    fd_epsilon: float | None = default_of("fd_epsilon")  # finite_difference only; None: the module docstring's rule
    alignment: bool = True

    def __post_init__(self) -> None:
        check(self, [*one_of(self, mode=META_MODES, bn_mode=BN_MODES, fd_scheme=FD_SCHEMES),
                     *non_negative(self, "inner_lr", "inner_weight_decay", "acquire_weight", "retain_weight"),
                     *self._pairing_problems(), *self._epsilon_problems()])

    def _pairing_problems(self) -> list[Problem]:
        """Terms that need another: a joint BatchNorm pass or no meta term both need the joint replay term."""
        problems = []
        if self.bn_mode == "joint" and not self.joint_replay:
            problems.append(Problem("{bn_mode}='joint' updates the BatchNorm statistics in the joint replay pass: "
                                    "it needs {joint_replay}=True"))
        if self.mode == "none" and not self.joint_replay:
            problems.append(Problem("{mode}='none' without {joint_replay} would sample the memory and never use it "
                                    "(use DFADTrainer, or set {joint_replay}=True)"))
        return problems

    def _epsilon_problems(self) -> list[Problem]:
        eps = self.fd_epsilon
        if eps is None or (isinstance(eps, int | float) and math.isfinite(eps) and eps > 0):
            return []
        return [Problem(f"{{fd_epsilon}} must be a positive finite number (or None for the rule), got {eps!r}")]


@dataclass
class MetaResult:
    """Gradient of the LRwA objective and the quantities worth logging (0-d tensors, no sync).

    ``grad_cosine`` is the cosine between ∇L_acq(θ) and ∇L_ret(θ'), the retention gradient at the
    inner-step weights (the first-order form of the paper's alignment term, which uses ∇L_ret(θ));
    ``None`` when the settings asked for no alignment. Without a meta term (``mode="none"``) there is
    no ``loss_ret`` nor cosine, and no ``loss_acq`` either when its weight is 0 (its pass is skipped).
    """

    grads: dict[str, Tensor]
    loss_acq: Tensor | None
    loss_ret: Tensor | None
    grad_cosine: Tensor | None
    loss_joint: Tensor | None = None  # with joint_replay


L1 = KDLoss(kind="l1")  # meta_gradient's default loss, the authors'


@renamed_keyword("memory", "retention", since="0.5")
def meta_gradient(model: nn.Module, acquisition: Batch, retention: Batch, *, loss: KDLoss = L1,
                  settings: MetaSettings = MetaSettings(), ranks: Ranks | None = None, average: bool = True,
                  loss_scale: Tensor | None = None) -> MetaResult:
    """Gradient of J(θ) (see the module docstring) w.r.t. every trainable parameter of ``model``, for the
    fresh batch ``acquisition = (x_acq, t_acq)`` and the memory batch ``retention = (x_mem, t_mem)`` under the
    distillation loss ``loss`` (its kind, temperature and kernel backend) and ``settings``;
    ``settings.mode="none"`` drops the meta term: J = a·L_acq(θ) + the joint term.

    ``ranks`` (e.g. ``Ranks(group)`` or a trainer's): the inputs are this rank's shards and the result is
    the gradient of the global J, identical on every rank, its losses the global ones. ``average=False``
    returns this rank's share instead (its mean over the ranks is the global gradient), for a caller that
    adds terms of its own before one all-reduce; the cosine then pairs the global acquisition gradient
    with this rank's retention gradient. ``loss_scale`` (fp16): every backward runs on the scaled losses
    and the gradients come back multiplied by it (the losses and the cosine do not).
    """
    names, theta = _trainable(model)
    ranks = ranks if ranks is not None else Ranks()
    meta, grads, logged = settings.mode != "none", None, {}
    if meta or settings.acquire_weight:
        loss_acq, g_acq = _acquisition(model, names, theta, acquisition, loss, settings, loss_scale)
        logged["acq"] = loss_acq.detach()
        if meta:
            grads, logged["ret"], logged["cosine"] = _with_meta_term(model, names, theta, acquisition, retention, g_acq,
                                                                     loss=loss, settings=settings, ranks=ranks,
                                                                     loss_scale=loss_scale)
        else:
            grads = _weighted(g_acq, settings.acquire_weight)
    if settings.joint_replay:
        logged["joint"], g_joint = _joint_gradients(model, dict(zip(names, theta)), acquisition, retention, loss,
                                                   settings.bn_mode, loss_scale)
        grads = g_joint if grads is None else torch._foreach_add(grads, g_joint)
    present = {k: v for k, v in logged.items() if v is not None}
    if average:
        grads, values = ranks.average_both(grads, list(present.values()))
        present = dict(zip(present, values))
    return MetaResult(dict(zip(names, grads)), present.get("acq"), present.get("ret"), present.get("cosine"),
                      present.get("joint"))


def _acquisition(model: nn.Module, names: list[str], theta: list[Tensor], acquisition: Batch, loss: KDLoss,
                 settings: MetaSettings, loss_scale: Tensor | None) -> tuple[Tensor, list[Tensor]]:
    """L_acq(θ) and its gradient (kept differentiable for the exact meta-gradient); under ``bn_mode="joint"``
    the pass leaves the BatchNorm statistics to the joint one."""
    x_acq, t_acq = acquisition
    with phase("acquisition forward"):
        outputs = _forward_for_pass(model, dict(zip(names, theta)), x_acq, update_buffers=False) \
            if settings.bn_mode == "joint" else model(x_acq)
        loss_acq = loss(outputs, t_acq)
    with phase("acquisition backward"):
        return loss_acq, gradients(scaled(loss_acq, loss_scale), theta, create_graph=settings.mode == "exact")


def _weighted(grads: list[Tensor], weight: float) -> list[Tensor]:
    return grads if weight == 1 else torch._foreach_mul(grads, weight)


def _with_meta_term(model: nn.Module, names: list[str], theta: list[Tensor], acquisition: Batch, retention: Batch,
                    g_acq: list[Tensor], *, loss: KDLoss, settings: MetaSettings, ranks: Ranks,
                    loss_scale: Tensor | None) -> tuple[list[Tensor], Tensor, Tensor | None]:
    """a·∇L_acq + w·(dθ'/dθ)ᵀ∇L_ret(θ') (inner step, retention pass, its pull-back by the mode), L_ret and
    the gradient cosine."""
    (x_acq, t_acq), (x_mem, t_mem) = acquisition, retention
    exact, inner_lr, decay = settings.mode == "exact", settings.inner_lr, settings.inner_weight_decay
    with phase("inner update"):
        g_inner = unscaled(ranks.average_differentiable(g_acq) if exact else ranks.average(g_acq), loss_scale)
        theta_inner = _inner_step(theta, g_inner, inner_lr, decay, differentiable=exact)
    if exact:
        with ranks.collective("the second-order backward"):
            loss_ret, g_ret, outer = _retention_exact(model, names, theta, theta_inner, x_mem, t_mem,
                                                      settings.bn_mode, loss, loss_scale)
    else:
        loss_ret, g_ret = _retention_first_order(model, theta, theta_inner, x_mem, t_mem, settings.bn_mode, loss,
                                                 loss_scale)
        outer = g_ret if decay == 0 else torch._foreach_mul(g_ret, 1 - inner_lr * decay)  # dθ'/dθ without H
        if settings.mode == "finite_difference" and inner_lr != 0:
            direction = unscaled(ranks.average(g_ret), loss_scale)  # v = ∇L_ret(θ'), global
            with phase("finite-difference passes"):
                hv = _hessian_vector_fd(model, theta, g_acq, direction,
                                        lambda: scaled(loss(model(x_acq), t_acq), loss_scale), settings.fd_scheme,
                                        settings.fd_epsilon)
            outer = torch._foreach_add(outer, hv, alpha=-inner_lr)
    with phase("combine + alignment"):
        g_acq = [g.detach() for g in g_acq]
        grads = torch._foreach_add(_weighted(g_acq, settings.acquire_weight), outer, alpha=settings.retain_weight)
        g_global = [g.detach() for g in g_inner] if ranks.enabled else g_acq
        cosine = ops.grad_cosine(g_global, g_ret, backend=loss.backend) if settings.alignment else None
    return grads, loss_ret.detach(), cosine


def _joint_gradients(model: nn.Module, params: dict[str, Tensor], acquisition: Batch, retention: Batch, loss: KDLoss,
                    bn_mode: str, loss_scale: Tensor | None) -> tuple[Tensor, list[Tensor]]:
    """The joint replay term L(θ; x_acq ∪ x_mem) at the current weights and its gradient (scaled by
    ``loss_scale``): the authors' loss on the fresh and memory samples together; it updates the BatchNorm
    statistics under ``bn_mode`` ``"all"`` and ``"joint"``."""
    x, t = torch.cat([acquisition[0], retention[0]]), torch.cat([acquisition[1], retention[1]])
    with phase("joint replay forward/backward"):
        joint = loss(_forward_for_pass(model, params, x, update_buffers=bn_mode in ("all", "joint")), t)
        return joint, gradients(scaled(joint, loss_scale), list(params.values()))


Distance = Callable[[Tensor, Tensor], Tensor]


def _retention_exact(model: nn.Module, names: list[str], theta: list[Tensor], theta_inner: list[Tensor],
                     x_mem: Tensor, t_mem: Tensor, bn_mode: str, distance: Distance,
                     loss_scale: Tensor | None) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """L_ret(θ'), ∇L_ret at θ', and its pull-back ((1 − αλ)I − αH)∇L_ret to θ through the inner step."""
    with phase("retention forward"), _retention_context(model, bn_mode):
        params = dict(zip(names, theta_inner))
        loss_ret = distance(_forward_for_pass(model, params, x_mem, update_buffers=bn_mode == "all"), t_mem)
    with phase("retention backward"):
        g_ret = gradients(scaled(loss_ret, loss_scale), theta_inner)
    with phase("second-order backward"):
        second = torch.autograd.grad(theta_inner, theta, g_ret, allow_unused=True)
    return loss_ret, g_ret, zeros_for_unused(second, theta)


def _retention_first_order(model: nn.Module, theta: list[Tensor], theta_inner: list[Tensor], x_mem: Tensor,
                           t_mem: Tensor, bn_mode: str, distance: Distance,
                           loss_scale: Tensor | None) -> tuple[Tensor, list[Tensor]]:
    """L_ret and its gradient at the constant θ', evaluated by the model itself with its parameters
    holding θ' for the duration (cheaper than a functional call on small models)."""
    with _holding(model, theta, theta_inner, keep_buffers=bn_mode != "all"), _retention_context(model, bn_mode):
        with phase("retention forward"):
            loss_ret = distance(model(x_mem), t_mem)
        with phase("retention backward"):
            g_ret = gradients(scaled(loss_ret, loss_scale), theta)
    return loss_ret, g_ret


@contextmanager
def _holding(model: nn.Module, params: list[Tensor], values: list[Tensor], *, keep_buffers: bool) -> Iterator[None]:
    """Let ``params`` hold ``values`` (no copy) and, with ``keep_buffers``, the buffers copies of theirs
    (:func:`_buffer_copies`), for the duration.

    Autocast keeps low-precision copies of leaf parameters for the duration of its context; they
    are dropped on entry and exit, or a forward inside would run on the old values.
    """
    held = [*params, *model.buffers()] if keep_buffers and model.training else list(params)
    saved = [t.data for t in held]
    for t, v in zip(held, [*values, *_buffer_copies(model, keep_buffers).values()]):
        t.data = v
    torch.clear_autocast_cache()
    try:
        yield
    finally:
        for t, v in zip(held, saved):
            t.data = v
        torch.clear_autocast_cache()


def _hessian_vector_fd(model: nn.Module, theta: list[Tensor], g_acq: list[Tensor], v: list[Tensor],
                       acquisition_loss: Callable[[], Tensor], scheme: str,
                       epsilon: float | None) -> list[Tensor]:
    """H_acq·v by finite differences of acquisition gradients (rule in the module docstring); the
    perturbed passes leave the parameters and the BatchNorm running statistics as they were."""
    central = scheme == "central"
    with torch.no_grad():
        v_norm = _global_norm(v)
        if epsilon is None:
            unit = torch.finfo(compute_dtype(theta[0])).eps  # the autocast dtype under mixed precision
            radius = unit ** (1 / 3 if central else 1 / 2) * (1 + _global_norm(theta))
        else:
            radius = epsilon * v_norm
        step = torch._foreach_mul(v, radius / v_norm.clamp_min(torch.finfo(v_norm.dtype).tiny))  # ε·v
        base = [p.detach() for p in theta]
        shifted = [torch._foreach_add(base, step)] + ([torch._foreach_sub(base, step)] if central else [])
    grads = []
    for values in shifted:
        with _holding(model, theta, values, keep_buffers=True):
            grads.append(gradients(acquisition_loss(), theta))
    with torch.no_grad():
        scale = torch.where(radius > 0, v_norm / (radius * (2 if central else 1)), 0.0)
        return torch._foreach_mul(torch._foreach_sub(grads[0], grads[1] if central else g_acq), scale)


def _global_norm(tensors: list[Tensor]) -> Tensor:
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(tensors)))


def _trainable(model: nn.Module) -> tuple[list[str], list[Tensor]]:
    pairs = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not pairs:
        raise ValueError("the model has no trainable parameters")
    return [n for n, _ in pairs], [p for _, p in pairs]


def _inner_step(theta: list[Tensor], grads: list[Tensor], lr: float, decay: float, *,
                differentiable: bool) -> list[Tensor]:
    """θ' = θ − lr·(g + decay·θ) (one SGD step with weight decay, as ``torch.optim.SGD`` takes it) in
    multi-tensor ops: a graph node of θ (exact) or constants (first order)."""
    with torch.set_grad_enabled(differentiable and torch.is_grad_enabled()):
        base = theta if differentiable else [p.detach() for p in theta]
        step = grads if decay == 0 else torch._foreach_add(grads, base, alpha=decay)
        return list(torch._foreach_add(base, step, alpha=-lr))


def _forward_for_pass(model: nn.Module, params: dict[str, Tensor], x: Tensor, *, update_buffers: bool) -> Tensor:
    """Forward at ``params``; buffers are the model's own when the pass may update them (``update_buffers``),
    copies otherwise (:func:`_buffer_copies`)."""
    return functional_call(model, (params, _buffer_copies(model, not update_buffers)), (x,))


def _buffer_copies(model: nn.Module, keep: bool) -> dict[str, Tensor]:
    """The one way a pass leaves the BatchNorm running statistics as they were: it runs on copies of the
    buffers. ``{}`` (the pass uses the model's own) unless ``keep`` and the model is in training mode (in
    evaluation mode nothing updates them)."""
    return {n: b.clone() for n, b in model.named_buffers()} if keep and model.training else {}


@contextmanager
def _retention_context(model: nn.Module, bn_mode: str) -> Iterator[None]:
    """Put BatchNorm layers in eval mode for the retention pass when ``bn_mode="retain_eval"``
    (each layer's own flag is restored afterwards)."""
    switched = []
    if bn_mode == "retain_eval" and model.training:
        switched = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.training]
    for m in switched:
        m.eval()
    try:
        yield
    finally:
        for m in switched:
            m.train()

