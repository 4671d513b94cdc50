"""The pure-PyTorch fallback (one-time warning) and the build report."""

from __future__ import annotations

import warnings

import pytest
import torch

import kdsleep.ops as ops
from kdsleep.cli import main as cli_main
from kdsleep.ops import _extension, reference


@pytest.fixture
def no_kernels(monkeypatch):
    """Pretend the extension has no kernels, as on an install where it failed to build."""
    monkeypatch.setattr(_extension, "BACKENDS", frozenset())
    _extension.warn_fallback.cache_clear()
    yield
    _extension.warn_fallback.cache_clear()


def test_fallback_warns_once_and_matches_reference(no_kernels):
    student = [torch.randn(2, 3, 20, requires_grad=True)]
    teacher = [torch.randn(2, 4, 20)]
    with pytest.warns(ops.ExtensionMissingWarning, match="attention_transfer_loss: .*pure-PyTorch reference"):
        loss = ops.attention_transfer_loss(student, teacher)
    torch.testing.assert_close(loss, reference.attention_transfer_loss(student, teacher))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ops.attention_transfer_loss(student, teacher)  # no second warning
    (grad,) = torch.autograd.grad(ops.attention_transfer_loss(student, teacher), student)
    assert torch.isfinite(grad).all()

    s, t, y = torch.randn(4, 5, 6, requires_grad=True), torch.randn(4, 5, 6), torch.randint(-1, 5, (4, 6))
    with pytest.warns(ops.ExtensionMissingWarning, match="distillation_loss"):
        got = ops.distillation_loss(s, t, y, temperature=2.0)
    torch.testing.assert_close(got, reference.distillation_loss(s, t, y, temperature=2.0))
    with pytest.warns(ops.ExtensionMissingWarning, match="tempered_kl"):
        ops.tempered_kl(s, t)


def test_extension_reports_its_backends():
    assert "cpu" in ops.BACKENDS
    assert ops.extension_available("cpu")
    assert ops.extension_available("cuda") == ("cuda" in ops.BACKENDS)
    assert torch.ops.kdsleep.build_info().split(";")[0].split(",")[0] == "cpu"


def test_kdsleep_info_prints_versions_and_backends(capsys):
    assert cli_main(["info"]) == 0
    out = capsys.readouterr().out
    assert "torch" in out and torch.__version__ in out
    assert "compiled kernels" in out and "cpu" in out


def test_extension_built_from_older_sources_falls_back_per_op(monkeypatch):
    """A library lacking an op (stale build) must not break the import; that op falls back with a warning."""
    monkeypatch.setattr(_extension, "OPS", _extension.OPS - {"self_distillation"})
    _extension.warn_fallback.cache_clear()
    s, t, c = torch.randn(3, 2, 5, requires_grad=True), torch.randn(2, 2, 5), torch.zeros(5)
    with pytest.warns(ops.ExtensionMissingWarning, match="older than this kdsleep"):
        got = ops.self_distillation_loss(s, t, c)
    torch.testing.assert_close(got, reference.self_distillation_loss(s, t, c))
    _extension.warn_fallback.cache_clear()
    assert _extension.has_op("attention_transfer") and not _extension.has_op("no_such_op")
