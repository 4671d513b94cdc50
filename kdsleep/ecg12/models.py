"""Encoders and heads of the multimodal 12-lead ECG classifier (Phan et al., arXiv 2210.06297).

* :class:`XResNet1d` encodes a 12 x 250 window (2.5 s at 100 Hz): the XResNet of He et al.'s "bag of tricks"
  (three-conv stem, average-pool shortcut) in 1-D, as in Strodthoff et al.'s ECG benchmark; concat pooling
  (average and maximum over time) gives the embedding. Paper size: XResNet-50, 4096-d embedding.
* :class:`SEResNet2d` encodes the 12 x 13 x 21 per-lead spectrogram with the leads as input channels: a
  ResNet of basic blocks with squeeze-and-excitation (Hu et al.). Paper size: SE-ResNet-34, 512-d embedding.
* :class:`DINOHead` projects an embedding for self-distillation (DINO: three-layer MLP, L2-normalised
  bottleneck, weight-normalised last layer; 65 536 outputs in the paper).
* :class:`GateFusionClassifier` fuses the two embeddings with a learnt gate and predicts the merged classes.

Every encoder takes its configuration as a frozen dataclass (:class:`XResNetConfig`,
:class:`SEResNetConfig`, :class:`HeadConfig`), with a ``paper()`` and a ``small()`` constructor; the small ones
train on a CPU in seconds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdsleep.ecg12.spectrogram import Spectrogram

__all__ = [
    "DINOHead",
    "GateFusionClassifier",
    "HeadConfig",
    "SEResNet2d",
    "SEResNetConfig",
    "XResNet1d",
    "XResNetConfig",
    "EncoderWithHead",
    "count_parameters",
    "load_state_dict_strict",
]

N_LEADS = 12


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def _check_input(name: str, x: Tensor, n_dims: int, n_chans: int) -> None:
    if x.dim() != n_dims or x.shape[1] != n_chans:
        raise ValueError(
            f"{name} expects input of {n_dims} dimensions with {n_chans} channels in dimension 1, "
            f"got shape {tuple(x.shape)}"
        )


# ---------------------------------------------------------------------------------------------------------
# 1-D XResNet for the time series
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class XResNetConfig:
    """Configuration of :class:`XResNet1d`.

    Attributes
    ----------
    layers : tuple of int
        Residual blocks per stage (XResNet-50: 3, 4, 6, 3).
    widths : tuple of int
        Inner channels of each stage (64, 128, 256, 512).
    expansion : int
        Output channels of a block over its inner channels (4: bottleneck blocks; 1: basic blocks).
    stem_widths : tuple of int
        Channels of the three stem convolutions (32, 32, 64).
    kernel_size : int
        Kernel of the convolutions along time (5 in Strodthoff et al.'s 1-D XResNet).
    n_chans : int
        Input leads (12).
    """

    layers: tuple[int, ...] = (3, 4, 6, 3)
    widths: tuple[int, ...] = (64, 128, 256, 512)
    expansion: int = 4
    stem_widths: tuple[int, ...] = (32, 32, 64)
    kernel_size: int = 5
    n_chans: int = N_LEADS

    @classmethod
    def paper(cls) -> XResNetConfig:
        """XResNet-50 (Phan et al.): 4096-d embedding, 18 486 144 parameters."""
        return cls()

    @classmethod
    def small(cls) -> XResNetConfig:
        """One basic block per stage, widths 16-128: 256-d embedding, 179 616 parameters."""
        return cls(layers=(1, 1, 1, 1), widths=(16, 32, 64, 128), expansion=1, stem_widths=(16, 16, 16))

    @property
    def embedding_dim(self) -> int:
        """Concat pooling doubles the channels of the last stage."""
        return 2 * self.widths[-1] * self.expansion


def _conv_bn_1d(
    c_in: int, c_out: int, kernel_size: int, stride: int = 1, act: bool = True, zero_bn: bool = False
):
    bn = nn.BatchNorm1d(c_out)
    # Zero-initialised last batch norm of each block: every block starts as the identity (bag of tricks).
    nn.init.constant_(bn.weight, 0.0 if zero_bn else 1.0)
    layers: list[nn.Module] = [
        nn.Conv1d(c_in, c_out, kernel_size, stride=stride, padding=kernel_size // 2, bias=False),
        bn,
    ]
    if act:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class _XResBlock1d(nn.Module):
    def __init__(self, c_in: int, width: int, expansion: int, stride: int, kernel_size: int) -> None:
        super().__init__()
        c_out = width * expansion
        if expansion == 1:
            self.convs = nn.Sequential(
                _conv_bn_1d(c_in, width, kernel_size, stride),
                _conv_bn_1d(width, c_out, kernel_size, act=False, zero_bn=True),
            )
        else:
            self.convs = nn.Sequential(
                _conv_bn_1d(c_in, width, 1),
                _conv_bn_1d(width, width, kernel_size, stride),
                _conv_bn_1d(width, c_out, 1, act=False, zero_bn=True),
            )
        shortcut: list[nn.Module] = []
        if stride != 1:
            # XResNet shortcut: average-pool, then a 1x1 conv, so no input sample is skipped.
            shortcut.append(nn.AvgPool1d(stride, stride, ceil_mode=True))
        if c_in != c_out:
            shortcut.append(_conv_bn_1d(c_in, c_out, 1, act=False))
        self.shortcut = nn.Sequential(*shortcut)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.convs(x) + self.shortcut(x))


class XResNet1d(nn.Module):
    """1-D XResNet encoder with concat pooling.

    Parameters
    ----------
    config : XResNetConfig
        :meth:`XResNetConfig.paper` (XResNet-50, Phan et al.) by default.

    Input (B, n_chans, n_times) in millivolts; output (B, ``config.embedding_dim``). Any ``n_times`` of at
    least 32 samples works (local crops are shorter than the 250-sample windows).
    """

    def __init__(self, config: XResNetConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or XResNetConfig.paper()
        if len(config.layers) != len(config.widths):
            raise ValueError(f"layers {config.layers} and widths {config.widths} must have the same length")
        k = config.kernel_size
        stem: list[nn.Module] = []
        c_in = config.n_chans
        for i, c_out in enumerate(config.stem_widths):
            stem.append(_conv_bn_1d(c_in, c_out, k, stride=2 if i == 0 else 1))
            c_in = c_out
        stem.append(nn.MaxPool1d(3, stride=2, padding=1))
        self.stem = nn.Sequential(*stem)
        stages = []
        for i, (n_blocks, width) in enumerate(zip(config.layers, config.widths, strict=True)):
            blocks = []
            for j in range(n_blocks):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(_XResBlock1d(c_in, width, config.expansion, stride, k))
                c_in = width * config.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        for module in self.modules():
            if isinstance(module, nn.Conv1d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")

    @property
    def embedding_dim(self) -> int:
        return self.config.embedding_dim

    def forward(self, x: Tensor) -> Tensor:
        _check_input("XResNet1d", x, 3, self.config.n_chans)
        h = self.stages(self.stem(x))
        return torch.cat([h.mean(dim=-1), h.amax(dim=-1)], dim=1)


# ---------------------------------------------------------------------------------------------------------
# 2-D SE-ResNet for the spectrogram
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SEResNetConfig:
    """Configuration of :class:`SEResNet2d`.

    Attributes
    ----------
    layers : tuple of int
        Basic blocks per stage (SE-ResNet-34: 3, 4, 6, 3).
    widths : tuple of int
        Channels of each stage (64, 128, 256, 512).
    reduction : int
        Squeeze-and-excitation reduction ratio (16, Hu et al.).
    n_chans : int
        Input channels: the leads (12).
    """

    layers: tuple[int, ...] = (3, 4, 6, 3)
    widths: tuple[int, ...] = (64, 128, 256, 512)
    reduction: int = 16
    n_chans: int = N_LEADS

    @classmethod
    def paper(cls) -> SEResNetConfig:
        """SE-ResNet-34 (Phan et al.): 512-d embedding, 21 443 372 parameters."""
        return cls()

    @classmethod
    def small(cls) -> SEResNetConfig:
        """One block per stage, widths 16-128: 128-d embedding, 314 608 parameters."""
        return cls(layers=(1, 1, 1, 1), widths=(16, 32, 64, 128), reduction=8)

    @property
    def embedding_dim(self) -> int:
        return self.widths[-1]


class _SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.fc = nn.Sequential(
            nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels), nn.Sigmoid()
        )

    def forward(self, x: Tensor) -> Tensor:
        return x * self.fc(x.mean(dim=(2, 3)))[:, :, None, None]


class _SEBasicBlock2d(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, reduction: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
        )
        self.se = _SqueezeExcite(c_out, reduction)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.se(self.convs(x)) + self.shortcut(x))


class SEResNet2d(nn.Module):
    """2-D SE-ResNet encoder of per-lead spectrograms.

    The 13 x 21 input is small, so the stem is one 3 x 3 convolution without stride or max pooling (an
    ImageNet stem would leave a 4 x 6 map before the first stage).

    Parameters
    ----------
    config : SEResNetConfig
        :meth:`SEResNetConfig.paper` (SE-ResNet-34, Phan et al.) by default.

    Input (B, n_chans, n_freqs, n_frames); output (B, ``config.embedding_dim``) by global average pooling.
    """

    def __init__(self, config: SEResNetConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or SEResNetConfig.paper()
        if len(config.layers) != len(config.widths):
            raise ValueError(f"layers {config.layers} and widths {config.widths} must have the same length")
        self.stem = nn.Sequential(
            nn.Conv2d(config.n_chans, config.widths[0], 3, padding=1, bias=False),
            nn.BatchNorm2d(config.widths[0]),
            nn.ReLU(inplace=True),
        )
        c_in = config.widths[0]
        stages = []
        for i, (n_blocks, width) in enumerate(zip(config.layers, config.widths, strict=True)):
            blocks = []
            for j in range(n_blocks):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(_SEBasicBlock2d(c_in, width, stride, config.reduction))
                c_in = width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)

    @property
    def embedding_dim(self) -> int:
        return self.config.embedding_dim

    def forward(self, x: Tensor) -> Tensor:
        _check_input("SEResNet2d", x, 4, self.config.n_chans)
        return self.stages(self.stem(x)).mean(dim=(2, 3))


# ---------------------------------------------------------------------------------------------------------
# Self-distillation projection head
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HeadConfig:
    """Configuration of :class:`DINOHead`.

    Attributes
    ----------
    out_dim : int
        Outputs (prototypes) of the head (65 536 in Phan et al. and DINO).
    hidden_dim : int
        Width of the two hidden layers (2048, DINO).
    bottleneck_dim : int
        Width of the L2-normalised bottleneck (256, DINO).
    """

    out_dim: int = 65536
    hidden_dim: int = 2048
    bottleneck_dim: int = 256

    @classmethod
    def paper(cls) -> HeadConfig:
        return cls()

    @classmethod
    def small(cls) -> HeadConfig:
        return cls(out_dim=256, hidden_dim=128, bottleneck_dim=64)


class DINOHead(nn.Module):
    """DINO projection head: MLP, L2 normalisation, weight-normalised linear layer to ``out_dim`` logits."""

    def __init__(self, in_dim: int, config: HeadConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or HeadConfig.paper()
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, config.hidden_dim),
            nn.GELU(),
            nn.Linear(config.hidden_dim, config.hidden_dim),
            nn.GELU(),
            nn.Linear(config.hidden_dim, config.bottleneck_dim),
        )
        for module in self.mlp:
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
        self.last_layer = nn.utils.parametrizations.weight_norm(
            nn.Linear(config.bottleneck_dim, config.out_dim, bias=False)
        )
        # DINO fixes the norm of the last layer's weights at 1.
        self.last_layer.parametrizations.weight.original0.data.fill_(1.0)
        self.last_layer.parametrizations.weight.original0.requires_grad = False

    def forward(self, x: Tensor) -> Tensor:
        return self.last_layer(F.normalize(self.mlp(x), dim=-1))


class EncoderWithHead(nn.Module):
    """An encoder followed by its :class:`DINOHead` (the student and the teacher of pre-training)."""

    def __init__(self, encoder: nn.Module, head: DINOHead) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.encoder(x))


# ---------------------------------------------------------------------------------------------------------
# Gate fusion classifier
# ---------------------------------------------------------------------------------------------------------


class GateFusionClassifier(nn.Module):
    """Multimodal classifier with gate fusion (Phan et al.).

    From a window (B, 12, 250): the time-series embedding e_t = XResNet(x) and the spectrogram embedding
    e_s = SE-ResNet(STFT(x)); gate scores g = softmax(W [e_t, e_s] + b) (two scores); fused input
    [g_1 e_t, g_2 e_s]; two-layer head to ``n_classes`` logits (multi-label: apply a sigmoid).

    Parameters
    ----------
    time_config, spectrogram_config : XResNetConfig, SEResNetConfig
    n_classes : int
        Merged scored classes (24 in the 2020 challenge).
    hidden_dim : int
        Width of the head's hidden layer.
    dropout : float
        Dropout before each layer of the head.
    """

    def __init__(
        self,
        time_config: XResNetConfig | None = None,
        spectrogram_config: SEResNetConfig | None = None,
        n_classes: int = 24,
        hidden_dim: int = 512,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        self.time_encoder = XResNet1d(time_config)
        self.spectrogram_encoder = SEResNet2d(spectrogram_config)
        self.spectrogram = Spectrogram()
        d_t, d_s = self.time_encoder.embedding_dim, self.spectrogram_encoder.embedding_dim
        self.gate = nn.Linear(d_t + d_s, 2)
        self.head = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(d_t + d_s, hidden_dim),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim, n_classes),
        )
        self.n_classes = n_classes
        self.hidden_dim = hidden_dim
        self.dropout = dropout

    def gate_weights(self, e_time: Tensor, e_spec: Tensor) -> Tensor:
        """(B, 2) softmax weights of the time-series and spectrogram embeddings."""
        return torch.softmax(self.gate(torch.cat([e_time, e_spec], dim=1)), dim=1)

    def forward(self, x: Tensor) -> Tensor:
        _check_input("GateFusionClassifier", x, 3, N_LEADS)
        e_time = self.time_encoder(x)
        e_spec = self.spectrogram_encoder(self.spectrogram(x))
        g = self.gate_weights(e_time, e_spec)
        fused = torch.cat([g[:, :1] * e_time, g[:, 1:] * e_spec], dim=1)
        return self.head(fused)

    def config_dict(self) -> dict[str, Any]:
        """Everything needed to rebuild the model (stored in checkpoints)."""
        return {
            "time_config": asdict(self.time_encoder.config),
            "spectrogram_config": asdict(self.spectrogram_encoder.config),
            "n_classes": self.n_classes,
            "hidden_dim": self.hidden_dim,
            "dropout": self.dropout,
        }

    @classmethod
    def from_config_dict(cls, config: dict[str, Any]) -> GateFusionClassifier:
        def tuples(d: dict[str, Any]) -> dict[str, Any]:
            return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}

        return cls(
            time_config=XResNetConfig(**tuples(config["time_config"])),
            spectrogram_config=SEResNetConfig(**tuples(config["spectrogram_config"])),
            n_classes=int(config["n_classes"]),
            hidden_dim=int(config["hidden_dim"]),
            dropout=float(config["dropout"]),
        )


def load_state_dict_strict(module: nn.Module, state_dict: dict[str, Tensor], source: str) -> None:
    """Load ``state_dict`` into ``module``, failing on any missing, unexpected or mis-shaped key.

    PyTorch's ``strict=True`` already rejects missing and unexpected keys; this names them all, with the
    source, and also checks shapes first so the message is one readable list.

    Raises
    ------
    ValueError
        Naming ``source`` and every offending key.
    """
    own = module.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    mismatched = sorted(
        f"{k} {tuple(state_dict[k].shape)} vs {tuple(own[k].shape)}"
        for k in set(own) & set(state_dict)
        if tuple(own[k].shape) != tuple(state_dict[k].shape)
    )
    if missing or unexpected or mismatched:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
            if keys:
                shown = ", ".join(keys[:6]) + (f" ... ({len(keys)} in all)" if len(keys) > 6 else "")
                parts.append(f"{label}: {shown}")
        raise ValueError(
            f"{source}: weights do not fit the {type(module).__name__} "
            f"(is it the same encoder configuration?); " + "; ".join(parts)
        )
    module.load_state_dict(state_dict, strict=True)
