"""Early stopping on a validation score, keeping the model state of the first best evaluation."""
from __future__ import annotations

import copy

from torch import nn


class EarlyStopping:
    """``step(score)`` after each evaluation returns True once ``patience`` evaluations in a row brought no higher
    score; ``restore()`` loads the best state back into the model."""

    def __init__(self, model: nn.Module, patience: int):
        self.model, self.patience = model, patience
        self.best, self.stale, self._state = float("-inf"), 0, None

    def step(self, score: float) -> bool:
        if score > self.best:
            self.best, self.stale, self._state = score, 0, copy.deepcopy(self.model.state_dict())
        else:
            self.stale += 1
        return self.stale >= self.patience

    def restore(self) -> None:
        if self._state is not None:
            self.model.load_state_dict(self._state)
