"""Reference loss terms of the methods DFKD papers compare against (plain PyTorch, as each release computes them):
DAFL's information entropy, ZSKT's attention transfer, the decision-adversarial KL of CMI and Fast, DeepInversion's
image priors and adaptive competition, and CMI's instance contrast. docs/methods.md names the released line each
follows; the tests compare each with a float64 transcription of the paper's equation.

Spatial terms take samples of any layout the library's models use: ``(batch, length)`` signals,
``(batch, channels, length)`` and ``(batch, channels, height, width)`` images.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .losses import kd_row_losses

JS_CLAMP = (0.01, 0.99)  # DeepInversion's release clamps the probabilities of its Jensen-Shannon term to this


def information_entropy_loss(teacher_logits: Tensor) -> Tensor:
    """DAFL's ``Σ_c p̄_c log10 p̄_c``, p̄ the batch-mean teacher softmax: the negative base-10 entropy, minimised
    to balance the classes (``class_balance_loss`` × 1/ln 10, less a constant)."""
    mean_prob = F.softmax(teacher_logits, dim=1).mean(dim=0)
    return (mean_prob * torch.log10(mean_prob)).sum()


def attention_map(features: Tensor) -> Tensor:
    """ZSKT's spatial attention of a feature map ``(batch, channels, *spatial)``: the channel mean of the squared
    activations, flattened and L2-normalised per sample."""
    return F.normalize(features.pow(2).mean(dim=1).flatten(1), dim=1)


def attention_transfer_loss(student_features: Tensor, teacher_features: Tensor) -> Tensor:
    """Mean squared difference of the two attention maps (ZSKT's ``attention_diff``); spatial sizes must match."""
    s, t = attention_map(student_features), attention_map(teacher_features)
    if s.shape != t.shape:
        raise ValueError(f"attention maps of different sizes: student {tuple(student_features.shape)}, "
                         f"teacher {tuple(teacher_features.shape)}")
    return (s - t).pow(2).mean()


def agreeing_adversarial_loss(student_logits: Tensor, teacher_logits: Tensor, *, kind: str = "kl",
                              temperature: float = 1.0) -> Tensor:
    """CMI's and Fast's decision-adversarial term: ``-mean_i m_i D_i``, D_i the row discrepancy of ``kind`` and
    ``m_i = 1`` where the student's and the teacher's classes agree (samples already misclassified are left)."""
    rows = kd_row_losses(student_logits.float(), teacher_logits.float(), kind, temperature)
    return -(rows * agreement(student_logits, teacher_logits)).mean()


def agreement(student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
    """1.0 where the student's and the teacher's classes (argmax) are the same, else 0.0 (fp32, per row)."""
    return (student_logits.argmax(dim=1) == teacher_logits.argmax(dim=1)).float()


def clamped_js_divergence(student_logits: Tensor, teacher_logits: Tensor, temperature: float = 3.0) -> Tensor:
    """DeepInversion's Jensen-Shannon divergence: softmaxes at ``temperature``, each probability clamped to
    :data:`JS_CLAMP`, ``½KL(P‖M) + ½KL(Q‖M)`` averaged over rows (``F.kl_div`` with ``batchmean``)."""
    p = F.softmax(student_logits / temperature, dim=1)
    q = F.softmax(teacher_logits / temperature, dim=1)
    m = (0.5 * (p + q)).clamp(*JS_CLAMP)
    p, q = p.clamp(*JS_CLAMP), q.clamp(*JS_CLAMP)
    return 0.5 * F.kl_div(p.log(), m, reduction="batchmean") + 0.5 * F.kl_div(q.log(), m, reduction="batchmean")


def competition_loss(student_logits: Tensor, teacher_logits: Tensor, temperature: float = 3.0) -> Tensor:
    """Adaptive DeepInversion's competition: ``1 - clamp(JS, 0, 1)``, minimised where teacher and student
    disagree."""
    return 1.0 - clamped_js_divergence(student_logits, teacher_logits, temperature).clamp(0.0, 1.0)


def spatial(x: Tensor) -> Tensor:
    """Samples as ``(batch, channels, *spatial)``: a signal ``(batch, length)`` gains a channel."""
    return x.unsqueeze(1) if x.dim() == 2 else x


def _differences(x: Tensor) -> list[Tensor]:
    """Neighbour differences: along the length of a signal; for images DeepInversion's four (horizontal,
    vertical and both diagonals)."""
    x = spatial(x)
    if x.dim() == 3:
        return [x[..., :-1] - x[..., 1:]]
    if x.dim() != 4:
        raise ValueError(f"samples must be (batch, length), (batch, channels, length) or (batch, channels, height, "
                         f"width), got {tuple(x.shape)}")
    return [x[:, :, :, :-1] - x[:, :, :, 1:], x[:, :, :-1, :] - x[:, :, 1:, :],
            x[:, :, 1:, :-1] - x[:, :, :-1, 1:], x[:, :, :-1, :-1] - x[:, :, 1:, 1:]]


def total_variation_l1(x: Tensor) -> Tensor:
    """Sum over the neighbour differences of their mean absolute value (DeepInversion's ``loss_var_l1``)."""
    return sum((d.abs().mean() for d in _differences(x)), x.new_zeros(()))


def total_variation_l2(x: Tensor) -> Tensor:
    """Sum over the neighbour differences of their Frobenius norm (DeepInversion's ``loss_var_l2``)."""
    return sum((torch.linalg.vector_norm(d) for d in _differences(x)), x.new_zeros(()))


def input_l2_loss(x: Tensor) -> Tensor:
    """Mean over samples of each sample's L2 norm (DeepInversion's ``loss_l2``)."""
    return torch.linalg.vector_norm(x.flatten(1), dim=1).mean()


def contrastive_loss(local: Tensor, global_: Tensor, fresh: int, temperature: float) -> Tensor:
    """CMI's instance contrast on projected, normalised features: row i of ``local`` (a local view) must pick
    row i of ``global_`` (the global view, held fixed) among all rows, by cross-entropy over
    ``local @ global_ᵀ / temperature``. The first ``fresh`` rows are this round's samples, the rest the memory
    bank's; the two groups are averaged separately and added (so the bank does not dilute the fresh gradient)."""
    logits = local @ global_.detach().T / temperature
    rows = F.cross_entropy(logits, torch.arange(len(logits), device=logits.device), reduction="none")
    if len(rows) == fresh:
        return rows.mean()
    return rows[:fresh].mean() + rows[fresh:].mean()


def instance_means(features: Tensor) -> Tensor:
    """The mean of each sample's channels over its spatial positions (CMI's feature of a layer's input)."""
    return features if features.dim() == 2 else features.flatten(2).mean(dim=2)
