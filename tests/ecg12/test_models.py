"""Encoders, projection head, gate fusion and strict weight loading of the 12-lead classifier."""

from __future__ import annotations

import pytest
import torch

from kdsleep.ecg12.models import (
    DINOHead,
    GateFusionClassifier,
    HeadConfig,
    SEResNet2d,
    SEResNetConfig,
    XResNet1d,
    XResNetConfig,
    count_parameters,
    load_state_dict_strict,
)


def test_parameter_counts_pinned() -> None:
    # Pinned so an architecture change is a deliberate one (figures also in the docstrings).
    assert count_parameters(XResNet1d(XResNetConfig.small())) == 179_616
    assert count_parameters(SEResNet2d(SEResNetConfig.small())) == 314_608


@pytest.mark.slow
def test_paper_size_parameter_counts() -> None:
    x = XResNet1d(XResNetConfig.paper())
    s = SEResNet2d(SEResNetConfig.paper())
    assert count_parameters(x) == 18_486_144
    assert count_parameters(s) == 21_443_372
    assert x.embedding_dim == 4096 and s.embedding_dim == 512


def test_embedding_shapes_and_variable_length() -> None:
    torch.manual_seed(0)
    enc = XResNet1d(XResNetConfig.small()).eval()
    assert enc(torch.randn(3, 12, 250)).shape == (3, 256)
    assert enc(torch.randn(3, 12, 100)).shape == (3, 256)  # local crops are shorter
    spec = SEResNet2d(SEResNetConfig.small()).eval()
    assert spec(torch.randn(3, 12, 13, 21)).shape == (3, 128)
    assert spec(torch.randn(3, 12, 13, 9)).shape == (3, 128)


def test_wrong_lead_count_is_rejected() -> None:
    with pytest.raises(ValueError, match="12 channels"):
        XResNet1d(XResNetConfig.small())(torch.randn(2, 8, 250))
    with pytest.raises(ValueError, match="4 dimensions"):
        SEResNet2d(SEResNetConfig.small())(torch.randn(2, 12, 250))


def test_dino_head_output_and_fixed_norm() -> None:
    head = DINOHead(256, HeadConfig.small())
    assert head(torch.randn(4, 256)).shape == (4, 256)
    # The weight-norm magnitude stays fixed at 1 (not trained), as in DINO.
    g = head.last_layer.parametrizations.weight.original0
    assert not g.requires_grad and torch.all(g == 1)


def test_gate_fusion_weights_sum_to_one_and_model_round_trips() -> None:
    torch.manual_seed(0)
    model = GateFusionClassifier(
        XResNetConfig.small(), SEResNetConfig.small(), n_classes=24, hidden_dim=32
    ).eval()
    x = torch.randn(5, 12, 250)
    logits = model(x)
    assert logits.shape == (5, 24)
    e_t = model.time_encoder(x)
    e_s = model.spectrogram_encoder(model.spectrogram(x))
    g = model.gate_weights(e_t, e_s)
    assert g.shape == (5, 2) and torch.allclose(g.sum(1), torch.ones(5))
    clone = GateFusionClassifier.from_config_dict(model.config_dict()).eval()
    load_state_dict_strict(clone, model.state_dict(), "test")
    assert torch.equal(clone(x), logits)


def test_strict_loading_names_missing_and_mismatched_keys() -> None:
    enc = XResNet1d(XResNetConfig.small())
    state = enc.state_dict()
    renamed = {("module." + k if i == 0 else k): v for i, (k, v) in enumerate(state.items())}
    with pytest.raises(ValueError, match="missing: .*unexpected: module."):
        load_state_dict_strict(enc, renamed, "ckpt.pt")
    other = XResNet1d(
        XResNetConfig(layers=(1, 1, 1, 1), widths=(8, 32, 64, 128), expansion=1, stem_widths=(16, 16, 16))
    )
    with pytest.raises(ValueError, match="ckpt.pt.*shape mismatch"):
        load_state_dict_strict(enc, other.state_dict(), "ckpt.pt")
