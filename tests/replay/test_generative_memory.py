"""Generative replay memory: VAE loss and sampling against float64 references, image and vector samples,
a user's VAE, every meta and BatchNorm mode, the non-finite policy on the VAE update, bit-exact resume
in a fresh process, constant memory, profile phases, and refusals."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import Tensor, nn

from lrwa_fast import GeneratorLossWeights, LRwAConfig, LRwATrainer, NonFiniteError, OptimizerConfig
from lrwa_fast.replay.generative_memory import GenerativeMemory
from lrwa_fast.replay.vae import MLPVAE, ConvVAE, kl_divergence, reparameterise, vae_loss
from lrwa_fast.runtime.phases import PhaseTimer
from lrwa_fast.testing import tiny_models
from tests.support import resume_in_a_fresh_process

CONFIG = dict(batch_size=16, latent_dim=8, iterations=12, student_steps=2, device="cpu", seed=3,
              memory_batch_size=6, memory_kind="generative", vae_width=4, vae_latent_dim=5, vae_fresh_size=10,
              vae_steps=2, log_every=2)


def trainer(**overrides) -> LRwATrainer:
    return LRwATrainer(*tiny_models(), LRwAConfig(**{**CONFIG, **overrides}))


# ----------------------------------------------------------------- numerics against plain references
def l1_reference(a: Tensor, b: Tensor) -> float:
    flat_a, flat_b = a.double().flatten().tolist(), b.double().flatten().tolist()
    return sum(abs(u - v) for u, v in zip(flat_a, flat_b)) / len(flat_a)


def kl_reference(mu: Tensor, log_var: Tensor) -> float:
    rows = [sum(-0.5 * (1 + lv - m * m - math.exp(lv)) for m, lv in zip(mr, lr))
            for mr, lr in zip(mu.double().tolist(), log_var.double().tolist())]
    return sum(rows) / len(rows)


@pytest.mark.parametrize("shape,latent", [((3, 2, 5, 7), 5), ((1, 11), 1), ((4, 3), 7)])
def test_vae_loss_matches_a_plain_float64_reference(shape, latent):
    gen = torch.Generator().manual_seed(sum(shape) + latent)
    n = shape[0]
    x, recon = torch.randn(shape, generator=gen), torch.randn(shape, generator=gen)
    mu, log_var = torch.randn(n, latent, generator=gen), 0.5 * torch.randn(n, latent, generator=gen)
    t, t_recon = torch.randn(n, 6, generator=gen), torch.randn(n, 6, generator=gen)
    got = vae_loss(x, recon, mu, log_var, t, t_recon, kl_weight=0.3, teacher_weight=2.0)
    want = l1_reference(recon, x) + 2.0 * l1_reference(t_recon, t) + 0.3 * kl_reference(mu, log_var)
    assert float(got) == pytest.approx(want, rel=1e-5)
    assert float(kl_divergence(mu, log_var)) == pytest.approx(kl_reference(mu, log_var), rel=1e-5)
    no_teacher = vae_loss(x, recon, mu, log_var, t, t_recon, kl_weight=0.0, teacher_weight=0.0)
    assert float(no_teacher) == pytest.approx(l1_reference(recon, x), rel=1e-5)


def test_reparameterisation_uses_the_given_stream():
    mu, log_var = torch.randn(3, 4), torch.randn(3, 4)
    gen = torch.Generator().manual_seed(5)
    eps = torch.randn(3, 4, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(reparameterise(mu, log_var, gen), mu + torch.exp(0.5 * log_var) * eps)


def refine_reference(vae: nn.Module, teacher: nn.Module, z0: Tensor, lr: float, one_hot: float,
                     balance: float) -> Tensor:
    """One Adam step from a fresh state on the refinement loss, written out in float64."""
    z = z0.double().requires_grad_(True)
    t = teacher(vae.decode(z))
    p = torch.softmax(t, 1)
    labels = t.argmax(1)
    ce = -torch.log(p[torch.arange(len(t)), labels]).mean()
    p_bar = p.mean(0)
    balance_term = torch.log(torch.tensor(float(t.shape[1]), dtype=torch.float64)) + (p_bar * p_bar.log()).sum()
    mean, var = z.mean(0), ((z - z.mean(0)) ** 2).mean(0)
    moments = ((var - 1) ** 2).mean() + (mean**2).mean()
    (grad,) = torch.autograd.grad(moments + one_hot * ce + balance * balance_term, z)
    return (z - lr * grad / (grad.abs() + 1e-8)).detach()  # Adam's first step: m̂ = g, v̂ = g²


@pytest.mark.parametrize("refine_steps", [0, 1])
def test_sampling_matches_a_float64_reference(refine_steps):
    weights = GeneratorLossWeights(adversarial=1.0, one_hot=1.0, balance=2.0)
    tr = trainer(vae_refine_steps=refine_steps, vae_refine_lr=0.05, generator_weights=weights)
    memory = tr.memory
    memory.observe(*tr.fresh_batch())
    memory.end_of_iteration(0, clean=True)  # one update: the BatchNorm buffers are no longer the defaults
    state = memory.rng.get_state()
    x, t = memory.retention_batch(torch.float32)
    vae64, teacher64 = copy.deepcopy(memory.vae).double().eval(), copy.deepcopy(tr.teacher).double()
    z0 = torch.randn(6, 5, generator=torch.Generator().set_state(state))
    z = refine_reference(vae64, teacher64, z0, 0.05, 1.0, 2.0) if refine_steps else z0.double()
    with torch.no_grad():
        x_ref = vae64.decode(z)
        t_ref = teacher64(x_ref)
    assert x.shape == (6, 1, 8, 8)
    torch.testing.assert_close(x.double(), x_ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(t.double(), t_ref, rtol=1e-4, atol=1e-4)
    if refine_steps:  # the step moved the codes: the refinement is not a no-op
        with torch.no_grad():
            assert not torch.allclose(vae64.decode(z0.double()), x_ref, atol=1e-3)


# ----------------------------------------------------------------- sample kinds and VAEs
class VectorGenerator(nn.Module):
    def __init__(self, latent: int, dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(latent, 32), nn.ReLU(), nn.Linear(32, dim))

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


def mlp(dim: int, classes: int) -> nn.Module:
    return nn.Sequential(nn.Linear(dim, 16), nn.ReLU(), nn.Linear(16, classes))


def test_image_samples_get_a_conv_vae_and_are_replayed():
    tr = trainer(iterations=3, log_every=1)
    assert isinstance(tr.memory, GenerativeMemory) and isinstance(tr.memory.vae, ConvVAE)
    metrics = [tr.step() for _ in range(3)]
    assert tr.memory.updates == 6 and len(tr.memory) == 6 * 10
    assert "loss_retain" in metrics[-1] and "loss_vae" in metrics[-1]
    assert all(torch.isfinite(p).all() for p in tr.student.parameters())


def test_vector_samples_get_an_mlp_vae_and_are_replayed():
    torch.manual_seed(0)
    cfg = LRwAConfig(**{**CONFIG, "iterations": 3, "log_every": 1})
    tr = LRwATrainer(mlp(7, 5), mlp(7, 5), VectorGenerator(8, 7), cfg)
    assert isinstance(tr.memory.vae, MLPVAE)
    metrics = [tr.step() for _ in range(3)]
    assert tr.memory.retention_batch(torch.float32)[0].shape == (6, 7)
    assert "loss_retain" in metrics[-1] and tr.memory.updates == 6


class UniformPriorVAE(nn.Module):
    """A user's VAE: linear encoder/decoder over flat vectors, prior U(-1, 1)^3 (the protocol only)."""

    def __init__(self, dim: int, latent: int = 3, out: int | None = None) -> None:
        super().__init__()
        self.latent = latent
        self.enc = nn.Linear(dim, 2 * latent)
        self.dec = nn.Linear(latent, dim if out is None else out)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.enc(x).chunk(2, dim=1)

    def decode(self, z: Tensor) -> Tensor:
        return self.dec(z)

    def sample(self, n: int, rng: torch.Generator) -> Tensor:
        return 2 * torch.rand(n, self.latent, generator=rng) - 1


def test_a_user_vae_following_the_protocol_is_trained_and_sampled():
    torch.manual_seed(0)
    vae = UniformPriorVAE(7)
    before = copy.deepcopy(vae.state_dict())
    cfg = LRwAConfig(**{**CONFIG, "iterations": 2, "log_every": 1})
    tr = LRwATrainer(mlp(7, 5), mlp(7, 5), VectorGenerator(8, 7), cfg, vae=vae)
    assert tr.memory.vae is vae
    assert "loss_retain" in [tr.step() for _ in range(2)][-1]
    assert not torch.equal(before["dec.weight"], vae.dec.weight)


# ----------------------------------------------------------------- modes and policies
@pytest.mark.parametrize("meta_mode", ["exact", "first_order", "finite_difference"])
@pytest.mark.parametrize("bn_mode", ["acquire", "all", "retain_eval"])
def test_every_meta_and_bn_mode_runs(meta_mode, bn_mode):
    tr = trainer(iterations=2, log_every=1, meta_mode=meta_mode, bn_mode=bn_mode, loss="kl")
    metrics = [tr.step() for _ in range(2)]
    assert "loss_retain" in metrics[-1]
    assert all(v == v for v in metrics[-1].values()), metrics[-1]  # no NaN


class NaNEncoderVAE(UniformPriorVAE):
    """Decodes fine (draws work) but its encoder gives NaN, so every VAE loss is non-finite."""

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu, log_var = super().encode(x)
        return mu * float("nan"), log_var


def test_the_nonfinite_policy_covers_the_vae_update():
    torch.manual_seed(0)
    cfg = LRwAConfig(**{**CONFIG, "iterations": 3, "nonfinite": "skip", "log_every": 1})
    vae = NaNEncoderVAE(7)
    before = copy.deepcopy(vae.state_dict())
    tr = LRwATrainer(mlp(7, 5), mlp(7, 5), VectorGenerator(8, 7), cfg, vae=vae)
    with pytest.warns(RuntimeWarning, match="vae step 0"):
        metrics = [tr.step() for _ in range(3)]
    assert metrics[-1]["skipped_steps"] == 3 * 2 and tr.memory.updates == 0 and len(tr.memory) == 0
    assert all(torch.equal(before[k], v) for k, v in vae.state_dict().items())
    raising = LRwATrainer(mlp(7, 5), mlp(7, 5), VectorGenerator(8, 7), LRwAConfig(**{**CONFIG, "iterations": 3}),
                          vae=NaNEncoderVAE(7))
    with pytest.raises(NonFiniteError, match="iteration 0, vae step 0"):
        raising.step()


def test_a_skipped_vae_update_restores_its_batchnorm_buffers():
    tr = trainer(nonfinite="skip")
    memory = tr.memory
    buffers = [b.clone() for b in memory.vae.buffers()]
    x, t = tr.fresh_batch()
    with pytest.warns(RuntimeWarning):
        memory.observe(x * float("nan"), t)
        memory.end_of_iteration(0, clean=True)
    assert tr.runtime.guard.skipped == 1 and memory.updates == 0
    assert all(torch.equal(a, b) for a, b in zip(buffers, memory.vae.buffers()))


# ----------------------------------------------------------------- state
def assert_same_memory(a: dict, b: dict) -> None:
    for name, value in a["vae"].items():
        assert torch.equal(value, b["vae"][name]), f"vae.{name} differs"
    assert torch.equal(a["random"], b["random"])
    assert (a["updates"], a["seen"]) == (b["updates"], b["seen"])


@pytest.mark.slow
def test_resume_in_a_fresh_process_is_bit_exact(tmp_path):
    straight = trainer(iterations=8)
    straight.train(progress=False)
    first = trainer(iterations=8)
    first.train(3, progress=False)
    want, got = straight.state_dict(), resume_in_a_fresh_process(first, tmp_path)
    for key in ("student", "generator"):
        assert all(torch.equal(want[key][n], got[key][n]) for n in want[key]), key
    assert_same_memory(want["memory"], got["memory"])
    assert want["history"] == got["history"] and want["iteration"] == got["iteration"]


@pytest.mark.slow
def test_memory_is_constant_whatever_the_run_length():
    tr = trainer()

    def nbytes() -> int:
        state = tr.memory.state_dict()
        tensors = [v for v in state["vae"].values()]
        tensors += [s for group in state["updater"]["optimizer"]["state"].values() for s in group.values()
                    if isinstance(s, Tensor)]
        return sum(t.numel() * t.element_size() for t in tensors)

    tr.train(1, progress=False)
    after_one = nbytes()
    tr.train(3, progress=False)
    assert nbytes() == after_one and tr.memory.updates == 4 * 2


def test_the_vae_schedule_follows_the_iterations():
    cosine = OptimizerConfig(name="adam", lr=1e-3, weight_decay=0.0, schedule="cosine")
    tr = trainer(iterations=4, vae_optimizer=cosine)
    tr.train(2, progress=False)
    assert tr.memory.updater.lr == pytest.approx(0.5e-3)


def test_a_state_of_another_vae_is_refused():
    small, wide = trainer(), trainer(vae_width=6)
    with pytest.raises(ValueError, match="does not fit this VAE"):
        wide.memory.load_state_dict(small.memory.state_dict())


def test_profile_shows_the_memory_phases():
    tr = trainer()
    tr.train(1, progress=False)
    timer = PhaseTimer(tr.device)
    with timer.active():
        tr.step()
    assert {"vae sample", "memory teacher forward", "vae forward/backward", "optimizer (vae)"} <= set(timer.seconds)
    assert "memory sample" not in timer.seconds  # the buffer's phase


# ----------------------------------------------------------------- refusals
@pytest.mark.parametrize("field,value", [("memory_kind", "replay"), ("vae_width", 0), ("vae_steps", 0),
                                         ("vae_kl_weight", -1.0), ("vae_refine_steps", -1)])
def test_bad_fields_are_refused_by_name(field, value):
    with pytest.raises(ValueError, match=f"{field}="):
        trainer(**{field: value})


def test_a_vae_decoding_another_shape_is_refused():
    torch.manual_seed(0)
    cfg = LRwAConfig(**CONFIG)
    with pytest.raises(ValueError, match=r"vae: decoded samples must have the generator's sample shape "
                                         r"\(batch, 7\), got \(2, 6\)"):
        LRwATrainer(mlp(7, 5), mlp(7, 5), VectorGenerator(8, 7), cfg, vae=UniformPriorVAE(7, out=6))


def test_an_object_without_the_protocol_is_refused():
    cfg = LRwAConfig(**CONFIG)
    with pytest.raises(ValueError, match=r"vae must be an nn\.Module with encode"):
        LRwATrainer(mlp(7, 5), mlp(7, 5), VectorGenerator(8, 7), cfg, vae=nn.Linear(3, 7))


def test_a_sample_shape_without_a_built_in_vae_is_refused():
    class MatrixGenerator(VectorGenerator):
        def forward(self, z: Tensor) -> Tensor:
            return super().forward(z).view(-1, 2, 3)

    student = nn.Sequential(nn.Flatten(), mlp(6, 5))
    with pytest.raises(ValueError, match=r"no built-in VAE for samples of shape \(2, 3\)"):
        LRwATrainer(copy.deepcopy(student), student, MatrixGenerator(8, 6), LRwAConfig(**CONFIG))


def test_a_vae_with_the_buffer_memory_is_refused():
    cfg = LRwAConfig(**{**CONFIG, "memory_kind": "buffer"})
    with pytest.raises(ValueError, match="vae is used only with memory_kind='generative'"):
        LRwATrainer(mlp(7, 5), mlp(7, 5), VectorGenerator(8, 7), cfg, vae=UniformPriorVAE(7))


def test_generative_memory_is_a_memory_part():
    from lrwa_fast.replay import Memory

    memory = trainer().memory
    assert isinstance(memory, GenerativeMemory) and isinstance(memory, Memory)
