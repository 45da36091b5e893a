"""The learnt camera response (models/response.py): its sRGB start, exact inverse pair,
monotonicity whatever the parameters, clipping, n-d inputs, NaN and gradients."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from expokit.models.base import ModelError  # noqa: E402
from expokit.models.response import CameraResponse, interpolate, srgb_decode  # noqa: E402


def _scrambled(knots: int = 16, seed: int = 0) -> CameraResponse:
    response = CameraResponse(knots)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        response.step_logits.copy_(3 * torch.randn(knots, generator=generator))
    return response


def test_starts_as_the_srgb_decoding() -> None:
    response = CameraResponse(16)
    x = torch.linspace(0, 1, 1001, dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(response.decode(response.encoded), srgb_decode(response.encoded))
        # between the knots: the chord of a convex curve, within 0.002 of it
        assert float((response.decode(x) - srgb_decode(x)).abs().max()) < 0.002
    assert response.light_at_white == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_encode_inverts_decode_and_both_rise_for_any_parameters(seed: int) -> None:
    response = _scrambled(seed=seed)
    x = torch.linspace(0, 1, 513)
    with torch.no_grad():
        light = response.decode(x)
        assert bool((light.diff() > 0).all())
        assert torch.allclose(response.encode(light), x, atol=1e-5)


def test_light_above_white_clips_and_shapes_are_kept() -> None:
    response = _scrambled(seed=3)
    white = response.light_at_white
    with torch.no_grad():
        out = response.encode(torch.tensor([-1.0, 0.0, white, 2 * white, 1e6]))
        assert out.tolist() == pytest.approx([0.0, 0.0, 1.0, 1.0, 1.0])
        image = torch.rand(2, 3, 5, 7)
        assert response.expose(image, torch.full((2, 1, 1, 1), 2.0)).shape == (2, 3, 5, 7)
        # gain 1 is the identity, on an n-d input
        assert torch.allclose(response.expose(image, torch.ones(1)), image, atol=1e-5)


def test_nan_stays_nan() -> None:
    response = CameraResponse(8)
    with torch.no_grad():
        out = response.decode(torch.tensor([float("nan"), 0.5]))
    assert bool(out[0].isnan()) and not bool(out[1].isnan())


def test_the_curve_gets_gradients() -> None:
    response = CameraResponse(8)
    x = torch.rand(64)
    (response.expose(x, torch.tensor(1.7)) - x).pow(2).mean().backward()
    assert response.step_logits.grad is not None
    assert float(response.step_logits.grad.abs().sum()) > 0


def test_interpolate_matches_numpy() -> None:
    import numpy as np

    xs = torch.tensor([0.0, 0.1, 0.5, 2.0])
    ys = torch.tensor([0.0, 1.0, 1.5, 3.0])
    values = torch.tensor([-1.0, 0.05, 0.3, 1.0, 5.0])
    expected = np.interp(values.numpy(), xs.numpy(), ys.numpy())
    assert interpolate(values, xs, ys).numpy() == pytest.approx(expected)


@pytest.mark.parametrize("knots", [1, 0, 2.5, True, "16"])
def test_bad_knot_counts_are_refused(knots: object) -> None:
    with pytest.raises(ModelError, match="knots must be an integer >= 2"):
        CameraResponse(knots)  # type: ignore[arg-type]
