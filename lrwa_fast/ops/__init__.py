"""Fused ops and their references: the public entries :func:`kd_loss`, :func:`grad_alignment` and
:func:`grad_cosine` (:mod:`.fused`), the one place choosing a Triton kernel or the reference
(:mod:`.dispatch`), and the plain PyTorch references that specify them (:mod:`.losses`,
:mod:`.alignment`). The kernels themselves are in ``lrwa_fast.kernels``."""

from .fused import grad_alignment, grad_cosine, kd_loss

__all__ = ["grad_alignment", "grad_cosine", "kd_loss"]
