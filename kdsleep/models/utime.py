"""U-Time for sleep staging, shared by the EEG teacher and the ECG student.

The network follows Perslev et al. (NeurIPS 2019) with the changes of Joshi et al. (arXiv 2112.07252): five
encoder levels (filters 16, 32, 64, 128, 256), a 512-filter bottleneck, kernel 5 everywhere, dilation 2 in the
encoder, each convolution followed by ReLU then batch normalisation, a 1x1 tanh dense map, the mean of that map
over every 30-s epoch and a 1x1 convolution to the class logits (no softmax in the model).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from kdsleep.models.taps import FeatureTaps

__all__ = [
    "DEFAULT_FILTERS",
    "JOSHI_SINGLE_EPOCH_POOLS",
    "MULTI_EPOCH_POOLS",
    "UTime",
    "group_tap_weights",
]

logger = logging.getLogger(__name__)

#: Encoder filters of the five-level U-Time of Joshi et al.; the bottleneck has twice the last one (512).
DEFAULT_FILTERS: tuple[int, ...] = (16, 32, 64, 128, 256)
#: Pools for 35-epoch windows at 200 Hz (product 3000 divides the 6000 samples of a 30-s epoch).
MULTI_EPOCH_POOLS: tuple[int, ...] = (10, 5, 5, 4, 3)
#: Pools of the authors' public code, used with a single 30-s epoch at 200 Hz (product 48).
JOSHI_SINGLE_EPOCH_POOLS: tuple[int, ...] = (3, 2, 2, 2, 2)


class _ConvActNorm(nn.Sequential):
    """Convolution with "same" padding, then ReLU, then batch normalisation (the order of U-Time)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int) -> None:
        # Odd kernels give symmetric "same" padding as a plain integer, which every exporter understands.
        padding = dilation * (kernel_size - 1) // 2
        super().__init__(
            nn.Conv1d(in_channels, out_channels, kernel_size, padding=padding, dilation=dilation),
            nn.ReLU(),
            nn.BatchNorm1d(out_channels),
        )


class _EncoderLevel(nn.Module):
    """Two dilated convolutions, then max pooling; returns (skip connection, pooled output)."""

    def __init__(self, in_channels: int, filters: int, kernel_size: int, dilation: int, pool: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            _ConvActNorm(in_channels, filters, kernel_size, dilation),
            _ConvActNorm(filters, filters, kernel_size, dilation),
        )
        self.pool = nn.MaxPool1d(pool)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        skip = self.convs(x)
        return skip, self.pool(skip)


class _DecoderLevel(nn.Module):
    """Nearest upsampling and a convolution, concatenation with the skip, then two convolutions."""

    def __init__(self, in_channels: int, filters: int, kernel_size: int, scale: int) -> None:
        super().__init__()
        self.upsample = nn.Upsample(scale_factor=float(scale), mode="nearest")
        self.up_conv = _ConvActNorm(in_channels, filters, kernel_size, dilation=1)
        self.convs = nn.Sequential(
            _ConvActNorm(2 * filters, filters, kernel_size, dilation=1),
            _ConvActNorm(filters, filters, kernel_size, dilation=1),
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = self.up_conv(self.upsample(x))
        # Skip first, as in the authors' code; the order only permutes the weights of the next convolution.
        return self.convs(torch.cat([skip, up], dim=1))


def group_tap_weights(tap_names: Sequence[str], groups: Sequence[Sequence[str]]) -> list[float]:
    """Per-map weights equal to "mean within each group, then mean over the groups".

    A map that belongs to several groups receives the sum of its shares.

    Parameters
    ----------
    tap_names : sequence of str
        The names of the feature maps, in the order the weights are returned.
    groups : sequence of sequence of str
        The layer groups; each is a non-empty list of names from ``tap_names``.

    Returns
    -------
    list of float
        One weight per entry of ``tap_names``; they sum to 1.
    """
    if not groups:
        raise ValueError("groups must not be empty")
    index = {name: i for i, name in enumerate(tap_names)}
    weights = [0.0] * len(tap_names)
    for group in groups:
        if not group:
            raise ValueError(
                f"every layer group needs at least one map, got groups={list(map(list, groups))}"
            )
        for name in group:
            if name not in index:
                raise ValueError(
                    f"layer group member {name!r} is not a tap name (expected one of {list(tap_names)})"
                )
            weights[index[name]] += 1.0 / (len(group) * len(groups))
    return weights


class UTime(nn.Module):
    """U-Time with five levels for sleep staging from EEG (teacher) or single-lead ECG (student).

    Parameters
    ----------
    n_chans : int
        Number of input channels (1 for a single EEG derivation or ECG lead I in the paper).
    n_outputs : int
        Number of sleep stages K (3: W-N-R, 4: W-L-D-R, 5: AASM).
    sfreq : float
        Sampling frequency in Hz (200 Hz in the paper). ``sfreq * epoch_seconds`` must be an integer.
    n_epochs : int
        Number of consecutive epochs in one input window (35 as in U-Time; 1 in the authors' public code).
    epoch_seconds : float
        Length of one scored epoch in seconds (30).
    pools : sequence of int or None
        Max-pool size after each encoder level. Their product must divide the samples per epoch so that every
        epoch maps onto whole positions at every level. ``None`` gives ``[10, 5, 5, 4, 3]`` (product 3000,
        valid at 100 Hz or 200 Hz); the authors' single-epoch network uses ``[3, 2, 2, 2, 2]``
        (see :meth:`joshi_single_epoch`).
    filters : sequence of int or None
        Filters of the encoder levels, the decoder mirrors them; the bottleneck has twice the last one.
        ``None`` gives ``[16, 32, 64, 128, 256]`` (bottleneck 512), as in Joshi et al.
    kernel_size : int
        Kernel size of every convolution except the 1x1 ones (5). Must be odd ("same" padding).
    dilation : int
        Dilation of the encoder convolutions (2); the bottleneck and the decoder use 1.

    Notes
    -----
    Input ``(batch, n_chans, n_epochs * sfreq * epoch_seconds)``, output logits ``(batch, n_outputs,
    n_epochs)``. Nothing is cropped or padded: a wrong shape raises :class:`ValueError`.

    The parameter count does not depend on ``pools``, ``sfreq`` or ``n_epochs``. With one input channel and
    the default filters it is 4,813,215 for 3 classes, 4,813,240 for 4 classes and 4,813,267 for 5 classes
    (4,813,152 + 17 K + K (K + 1); the four-level U-Time has about 1.19 M).

    Feature maps for attention transfer are listed in :attr:`tap_names` (12 for five levels): the output of
    every encoder level after pooling (``encoder.0.pool`` ... ``encoder.4.pool``, as in the authors' code),
    the ``bottleneck``, every decoder level from the deepest (``decoder.0``) to the last (``decoder.4``) and
    the tanh ``dense`` map. Get them with :meth:`features` or :class:`~kdsleep.models.taps.FeatureTaps`.
    """

    # Properties TorchScript should not try to compile (scripting compiles properties by default).
    __jit_unused_properties__ = ["tap_names", "tap_shapes", "tap_groups"]

    def __init__(
        self,
        n_chans: int,
        n_outputs: int,
        sfreq: float = 200.0,
        n_epochs: int = 35,
        epoch_seconds: float = 30.0,
        pools: Sequence[int] | None = None,
        filters: Sequence[int] | None = None,
        kernel_size: int = 5,
        dilation: int = 2,
    ) -> None:
        super().__init__()
        pools = tuple(MULTI_EPOCH_POOLS if pools is None else pools)
        filters = tuple(DEFAULT_FILTERS if filters is None else filters)
        self._validate_arguments(
            n_chans, n_outputs, sfreq, n_epochs, epoch_seconds, pools, filters, kernel_size, dilation
        )
        samples_per_epoch = round(sfreq * epoch_seconds)
        pool_product = math.prod(pools)
        if samples_per_epoch % pool_product:
            raise ValueError(
                f"pools={list(pools)} have product {pool_product}, which does not divide the "
                f"{samples_per_epoch} samples per epoch ({sfreq:g} Hz x {epoch_seconds:g} s); choose pools whose "
                f"product divides {samples_per_epoch} (e.g. [10, 5, 5, 4, 3] at 200 Hz or [3, 2, 2, 2, 2] for "
                f"the authors' single-epoch network)"
            )

        self.n_chans = int(n_chans)
        self.n_outputs = int(n_outputs)
        self.sfreq = float(sfreq)
        self.n_epochs = int(n_epochs)
        self.epoch_seconds = float(epoch_seconds)
        self.pools = [int(p) for p in pools]
        self.filters = [int(f) for f in filters]
        self.kernel_size = int(kernel_size)
        self.dilation = int(dilation)
        self.samples_per_epoch = samples_per_epoch
        self.n_times = samples_per_epoch * self.n_epochs

        encoder_levels = []
        in_channels = self.n_chans
        for n_filters, pool in zip(self.filters, self.pools, strict=True):
            encoder_levels.append(
                _EncoderLevel(in_channels, n_filters, self.kernel_size, self.dilation, pool)
            )
            in_channels = n_filters
        self.encoder = nn.ModuleList(encoder_levels)

        bottleneck_filters = 2 * self.filters[-1]
        self.bottleneck = nn.Sequential(
            _ConvActNorm(self.filters[-1], bottleneck_filters, self.kernel_size, dilation=1),
            _ConvActNorm(bottleneck_filters, bottleneck_filters, self.kernel_size, dilation=1),
        )

        decoder_levels = []
        in_channels = bottleneck_filters
        for n_filters, pool in zip(reversed(self.filters), reversed(self.pools), strict=True):
            decoder_levels.append(_DecoderLevel(in_channels, n_filters, self.kernel_size, pool))
            in_channels = n_filters
        self.decoder = nn.ModuleList(decoder_levels)

        self.dense = nn.Sequential(nn.Conv1d(self.filters[0], self.n_outputs, kernel_size=1), nn.Tanh())
        self.classifier = nn.Conv1d(self.n_outputs, self.n_outputs, kernel_size=1)
        self.reset_parameters()

    @staticmethod
    def _validate_arguments(
        n_chans: int,
        n_outputs: int,
        sfreq: float,
        n_epochs: int,
        epoch_seconds: float,
        pools: tuple[int, ...],
        filters: tuple[int, ...],
        kernel_size: int,
        dilation: int,
    ) -> None:
        for name, value, minimum in (
            ("n_chans", n_chans, 1),
            ("n_outputs", n_outputs, 2),
            ("n_epochs", n_epochs, 1),
            ("kernel_size", kernel_size, 1),
            ("dilation", dilation, 1),
        ):
            if isinstance(value, bool) or int(value) != value or value < minimum:
                raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd for symmetric 'same' padding, got {kernel_size}")
        if not (sfreq > 0 and epoch_seconds > 0):
            raise ValueError(
                f"sfreq and epoch_seconds must be positive, got sfreq={sfreq}, epoch_seconds={epoch_seconds}"
            )
        samples = sfreq * epoch_seconds
        if abs(samples - round(samples)) > 1e-6:
            raise ValueError(
                f"sfreq x epoch_seconds must be a whole number of samples, got {sfreq:g} Hz x {epoch_seconds:g} s "
                f"= {samples:g}"
            )
        if not filters or any(int(f) != f or f < 1 for f in filters):
            raise ValueError(f"filters must be a non-empty list of positive integers, got {list(filters)}")
        if len(pools) != len(filters):
            raise ValueError(
                f"pools and filters must have one entry per encoder level, got {len(pools)} pools {list(pools)} "
                f"and {len(filters)} filters {list(filters)}"
            )
        if any(int(p) != p or p < 1 for p in pools):
            raise ValueError(f"pools must be positive integers, got {list(pools)}")

    @classmethod
    def joshi_single_epoch(cls, n_chans: int = 1, n_outputs: int = 4, sfreq: float = 200.0) -> UTime:
        """The configuration of the authors' public code: one 30-s epoch per input, pools [3, 2, 2, 2, 2].

        Parameters
        ----------
        n_chans : int
            Number of input channels (1).
        n_outputs : int
            Number of sleep stages (4 for W-L-D-R, 3 for W-N-R).
        sfreq : float
            Sampling frequency in Hz (200).
        """
        return cls(n_chans, n_outputs, sfreq=sfreq, n_epochs=1, pools=JOSHI_SINGLE_EPOCH_POOLS)

    def reset_parameters(self) -> None:
        """Glorot-uniform convolution weights and zero biases (as U-Time and the authors' code)."""
        for module in self.modules():
            if isinstance(module, nn.Conv1d):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm1d):
                module.reset_parameters()

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments, for checkpoints (``UTime(**model.get_config())`` rebuilds the model)."""
        return {
            "n_chans": self.n_chans,
            "n_outputs": self.n_outputs,
            "sfreq": self.sfreq,
            "n_epochs": self.n_epochs,
            "epoch_seconds": self.epoch_seconds,
            "pools": list(self.pools),
            "filters": list(self.filters),
            "kernel_size": self.kernel_size,
            "dilation": self.dilation,
        }

    @torch.jit.unused
    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 3 or x.shape[1] != self.n_chans or x.shape[2] != self.n_times:
            raise ValueError(
                f"UTime expects input of shape (batch, n_chans={self.n_chans}, n_times={self.n_times}) "
                f"= {self.n_epochs} epochs x {self.samples_per_epoch} samples ({self.sfreq:g} Hz x "
                f"{self.epoch_seconds:g} s), got {tuple(x.shape)}"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Per-epoch logits.

        Parameters
        ----------
        x : torch.Tensor
            Signals of shape ``(batch, n_chans, n_times)`` with ``n_times = n_epochs * sfreq * epoch_seconds``.

        Returns
        -------
        torch.Tensor
            Logits of shape ``(batch, n_outputs, n_epochs)`` (no softmax).
        """
        # Shapes are tensors while tracing and the message cannot be compiled by TorchScript; exported graphs
        # are specialised to the window length anyway.
        if not torch.jit.is_scripting() and not torch.jit.is_tracing():
            self._check_input(x)
        skips: list[torch.Tensor] = []
        for level in self.encoder:
            skip, x = level(x)
            skips.append(skip)
        x = self.bottleneck(x)
        for i, level in enumerate(self.decoder):
            x = level(x, skips[-1 - i])
        x = self.dense(x)
        # Every epoch covers a whole number of positions at full resolution, so a reshape splits them exactly.
        x = x.unflatten(2, (self.n_epochs, self.samples_per_epoch)).mean(dim=3)
        return self.classifier(x)

    # ----------------------------------------------------------------------------------------------------
    # Feature taps for attention transfer
    # ----------------------------------------------------------------------------------------------------
    @property
    def tap_names(self) -> list[str]:
        """Module paths of the feature maps used for attention transfer (12 for five levels)."""
        n_levels = len(self.filters)
        return (
            [f"encoder.{i}.pool" for i in range(n_levels)]
            + ["bottleneck"]
            + [f"decoder.{i}" for i in range(n_levels)]
            + ["dense"]
        )

    @property
    def tap_shapes(self) -> dict[str, tuple[int, int]]:
        """``(channels, length)`` of every tapped map for one input window."""
        shapes: dict[str, tuple[int, int]] = {}
        length = self.n_times
        lengths = []
        for i, (n_filters, pool) in enumerate(zip(self.filters, self.pools, strict=True)):
            lengths.append(length)
            length //= pool
            shapes[f"encoder.{i}.pool"] = (n_filters, length)
        shapes["bottleneck"] = (2 * self.filters[-1], length)
        for i, (n_filters, skip_length) in enumerate(
            zip(reversed(self.filters), reversed(lengths), strict=True)
        ):
            shapes[f"decoder.{i}"] = (n_filters, skip_length)
        shapes["dense"] = (self.n_outputs, self.n_times)
        return shapes

    @property
    def tap_groups(self) -> dict[str, list[str]]:
        """The five layer groups of the authors' attention loss.

        Encoder levels (after pooling), bottleneck, decoder levels, final decoder output (the last decoder
        level, counted a second time on its own) and the dense map.
        """
        n_levels = len(self.filters)
        return {
            "encoder": [f"encoder.{i}.pool" for i in range(n_levels)],
            "bottleneck": ["bottleneck"],
            "decoder": [f"decoder.{i}" for i in range(n_levels)],
            "decoder_output": [f"decoder.{n_levels - 1}"],
            "dense": ["dense"],
        }

    def joshi_tap_weights(self) -> list[float]:
        """Weights over :attr:`tap_names` that reproduce the authors' averaging of the attention loss.

        The per-map losses are averaged within each of the five groups of :attr:`tap_groups`, then over the
        groups. For five levels: 1/25 for each encoder map and the first four decoder maps, 6/25 for the last
        decoder map (it is its own group as well) and 1/5 for the bottleneck and the dense map.
        """
        return group_tap_weights(self.tap_names, list(self.tap_groups.values()))

    def features(self, x: torch.Tensor, *, detach: bool = False) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits and the feature maps of :attr:`tap_names` in one forward pass.

        Parameters
        ----------
        x : torch.Tensor
            Signals of shape ``(batch, n_chans, n_times)``.
        detach : bool
            Detach the feature maps (for a frozen teacher). Default ``False``.

        Returns
        -------
        logits : torch.Tensor
            ``(batch, n_outputs, n_epochs)``.
        feature_maps : list of torch.Tensor
            One ``(batch, channels, length)`` tensor per tap name, shapes as in :attr:`tap_shapes`.
        """
        with FeatureTaps(self, self.tap_names, detach=detach) as taps:
            logits = self(x)
        return logits, taps.features

    def extra_repr(self) -> str:
        return (
            f"n_chans={self.n_chans}, n_outputs={self.n_outputs}, sfreq={self.sfreq:g}, n_epochs={self.n_epochs}, "
            f"pools={self.pools}, filters={self.filters}"
        )
