"""MAPPO's value normalization for cadp_mappo.py (as CleanRL's PPO scripts take their running mean and
variance from gymnasium's normalization wrappers)."""

import torch
import torch.nn as nn


class ValueNormalizer(nn.Module):
    """Running mean and variance of the value targets (MAPPO's value normalization): the critic
    learns targets of unit scale whatever the reward scale. Buffers, so checkpoints carry them."""

    def __init__(self, min_var: float = 1e-2):
        super().__init__()
        self.min_var = min_var  # MAPPO's floor: while returns are all ~0, normalized targets must not explode
        self.register_buffer("mean", torch.zeros(()))
        self.register_buffer("var", torch.ones(()))
        self.register_buffer("count", torch.zeros(()))

    def update(self, values: torch.Tensor) -> None:
        # Chan et al.'s parallel update: exact mean/variance of everything seen so far
        batch_mean, batch_var, batch_count = values.mean(), values.var(unbiased=False), values.numel()
        total = self.count + batch_count
        delta = batch_mean - self.mean
        self.var.copy_(
            (self.var * self.count + batch_var * batch_count + delta**2 * self.count * batch_count / total) / total
        )
        self.mean.add_(delta * batch_count / total)
        self.count.copy_(total)

    def normalize(self, values: torch.Tensor) -> torch.Tensor:
        return (values - self.mean) / self.var.clamp(min=self.min_var).sqrt()

    def denormalize(self, values: torch.Tensor) -> torch.Tensor:
        return values * self.var.clamp(min=self.min_var).sqrt() + self.mean
