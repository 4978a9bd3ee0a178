"""Replay memory: storage, insertion policies and samplers, with interchangeable backends."""

from .buffer import POLICIES, ReplayBuffer

__all__ = ["POLICIES", "ReplayBuffer"]
