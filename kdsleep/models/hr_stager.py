"""A heart-rate sleep stager: a bidirectional GRU over per-epoch HRV features and a heart-rate curve embedding.

For every 30-s epoch the model reads two streams built from heartbeat times
(:func:`kdsleep.hr_bundle.beat_inputs`): a vector of HRV features
(:func:`kdsleep.data.hrv_features.recording_features`, standardised with the training set's mean and SD)
and the epoch's heart-rate curve at a low rate (:func:`kdsleep.data.heart_rate.heart_rate_channel`, 2 Hz:
60 samples). A small CNN embeds each epoch's curve, a linear layer projects its features, and a two-layer
bidirectional GRU reads the concatenated per-epoch vectors of a whole night (or a crop of it) and emits one
logit vector per epoch. A night of any length is one sequence.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["HRStager"]


class HRStager(nn.Module):
    """Sequence-to-sequence sleep stager over per-epoch HRV features and heart-rate curves.

    Parameters
    ----------
    n_features : int
        HRV feature columns per epoch (28 for :func:`kdsleep.data.hrv_features.recording_features`).
    n_outputs : int
        Number of classes.
    n_times : int
        Heart-rate samples per epoch (60 at 2 Hz for 30-s epochs).
    hidden : int
        Width of both projections and of the GRU in each direction.
    n_layers : int
        GRU layers.
    drop_prob : float
        Dropout after the projections, between GRU layers and before the head.
    conv_filters : tuple of int
        Channels of the two convolutions of the heart-rate branch.

    Notes
    -----
    ``forward(features, heart_rate)`` takes ``features`` of shape ``(batch, n_epochs, n_features)`` and
    ``heart_rate`` of shape ``(batch, n_epochs, n_times)`` and returns logits ``(batch, n_epochs,
    n_outputs)``.
    """

    def __init__(
        self,
        n_features: int,
        n_outputs: int,
        n_times: int = 60,
        *,
        hidden: int = 32,
        n_layers: int = 2,
        drop_prob: float = 0.3,
        conv_filters: tuple[int, int] = (16, 32),
    ) -> None:
        super().__init__()
        for name, value in (("n_features", n_features), ("n_outputs", n_outputs), ("hidden", hidden)):
            if int(value) < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if n_outputs < 2:
            raise ValueError(f"n_outputs must be >= 2 classes, got {n_outputs}")
        if n_times < 3:
            raise ValueError(f"n_times must be >= 3 samples per epoch (the CNN pools by 3), got {n_times}")
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}")
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f"drop_prob must lie in [0, 1), got {drop_prob}")
        self.n_features = int(n_features)
        self.n_outputs = int(n_outputs)
        self.n_times = int(n_times)
        self.hidden = int(hidden)
        self.n_layers = int(n_layers)
        self.drop_prob = float(drop_prob)
        self.conv_filters = tuple(int(c) for c in conv_filters)
        c1, c2 = self.conv_filters
        self.feature_proj = nn.Sequential(
            nn.Linear(self.n_features, hidden), nn.ReLU(), nn.Dropout(drop_prob)
        )
        self.hr_cnn = nn.Sequential(
            nn.Conv1d(1, c1, 7, padding=3),
            nn.ReLU(),
            nn.MaxPool1d(3),
            nn.Conv1d(c1, c2, 5, padding=2),
            nn.ReLU(),
            nn.AdaptiveAvgPool1d(1),
        )
        self.hr_proj = nn.Sequential(nn.Linear(c2, hidden), nn.ReLU(), nn.Dropout(drop_prob))
        self.gru = nn.GRU(
            2 * hidden,
            hidden,
            num_layers=n_layers,
            batch_first=True,
            bidirectional=True,
            dropout=drop_prob if n_layers > 1 else 0.0,
        )
        self.head = nn.Sequential(nn.Dropout(drop_prob), nn.Linear(2 * hidden, self.n_outputs))

    def config(self) -> dict[str, object]:
        """Constructor arguments (to rebuild the model from saved weights)."""
        return {
            "n_features": self.n_features,
            "n_outputs": self.n_outputs,
            "n_times": self.n_times,
            "hidden": self.hidden,
            "n_layers": self.n_layers,
            "drop_prob": self.drop_prob,
            "conv_filters": list(self.conv_filters),
        }

    def forward(self, features: torch.Tensor, heart_rate: torch.Tensor) -> torch.Tensor:
        """Logits ``(batch, n_epochs, n_outputs)`` of ``features`` ``(batch, n_epochs, n_features)`` and
        ``heart_rate`` ``(batch, n_epochs, n_times)``."""
        if features.ndim != 3 or features.shape[-1] != self.n_features:
            raise ValueError(
                f"features: expected shape (batch, n_epochs, {self.n_features}), got {tuple(features.shape)}"
            )
        if heart_rate.ndim != 3 or heart_rate.shape[-1] != self.n_times:
            raise ValueError(
                f"heart_rate: expected shape (batch, n_epochs, {self.n_times}), got {tuple(heart_rate.shape)}"
            )
        if heart_rate.shape[:2] != features.shape[:2]:
            raise ValueError(
                f"features {tuple(features.shape)} and heart_rate {tuple(heart_rate.shape)} differ in batch or "
                "epochs"
            )
        batch, n_epochs, n_times = heart_rate.shape
        embedded = self.hr_cnn(heart_rate.reshape(batch * n_epochs, 1, n_times)).reshape(batch, n_epochs, -1)
        sequence = torch.cat([self.feature_proj(features), self.hr_proj(embedded)], dim=-1)
        hidden, _ = self.gru(sequence)
        return self.head(hidden)
