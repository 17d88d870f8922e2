"""Gray QAM mapping on both paths: Sionna's constellations and LLR sign, shape/dtype contracts, exact
host<->torch mapper parity, demapper parity, and gradients of the differentiable mapper/demapper."""

import numpy as np
import pytest
import sionna.phy.mapping as sionna_mapping
import torch
from scipy import special

from sdjscc_phy.errors import ParameterError
from sdjscc_phy.kernels import mapping as host
from sdjscc_phy.phy import mapping as dev

BITS_PER_SYMBOL = host.SUPPORTED_BITS_PER_SYMBOL


def random_bits(num_rows, num_bits, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 2, (num_rows, num_bits), np.uint8)


def noisy(x: np.ndarray, no: float, seed=0) -> np.ndarray:
    """x + CN(0, no) noise, complex64 (numpy's generator: independent of the kernels under test)."""
    noise = np.random.default_rng(seed).standard_normal((*x.shape, 2)) @ np.array([1, 1j]) * np.sqrt(no / 2)
    return (x + noise).astype(np.complex64)


@pytest.mark.parametrize("k", BITS_PER_SYMBOL)
def test_constellation_is_sionnas_with_unit_energy(k):
    reference = sionna_mapping.pam(1, precision="double") if k == 1 else sionna_mapping.qam(k, precision="double")
    points = host.constellation(k)
    assert points.dtype == np.complex64 and points.shape == (2**k,)
    np.testing.assert_array_equal(points, reference.astype(np.complex64))
    np.testing.assert_allclose(np.mean(np.abs(points) ** 2), 1.0, rtol=1e-6)
    torch.testing.assert_close(dev.constellation(k), torch.from_numpy(points), rtol=0, atol=0)


@pytest.mark.parametrize("k", BITS_PER_SYMBOL)
def test_neighbours_differ_in_one_bit(k):
    points, labels = host.constellation(k), host.bit_labels(k)
    distance = np.abs(points[:, None] - points[None, :])
    min_distance = distance[distance > 0].min()
    neighbours = np.argwhere(np.isclose(distance, min_distance))
    assert np.all((labels[neighbours[:, 0]] != labels[neighbours[:, 1]]).sum(axis=1) == 1)


@pytest.mark.parametrize("k", BITS_PER_SYMBOL)
def test_mapper_contract_and_paths_agree_exactly(k):
    bits = random_bits(3, 10 * k)
    x = host.map_bits(bits, host.constellation(k))
    assert x.shape == (3, 10) and x.dtype == np.complex64
    point_index = bits.reshape(3, 10, k).dot(1 << np.arange(k)[::-1])  # MSB first
    np.testing.assert_array_equal(x, host.constellation(k)[point_index])
    for as_tensor in (torch.from_numpy(bits), torch.from_numpy(bits).float()):
        torch.testing.assert_close(dev.map_bits(as_tensor, k), torch.from_numpy(x), rtol=0, atol=0)


def test_mapper_rejects_bad_input():
    table = host.constellation(4)
    with pytest.raises(ParameterError, match="multiple of 4"):
        host.map_bits(random_bits(2, 6), table)
    with pytest.raises(ParameterError, match="0 or 1"):
        host.map_bits(np.full((1, 4), 2, np.uint8), table)
    with pytest.raises(ParameterError, match="num_bits_per_symbol"):
        host.constellation(3)
    with pytest.raises(ParameterError, match="multiple of 4"):
        dev.map_bits(torch.zeros(1, 6), 4)
    with pytest.raises(ParameterError, match="method"):
        host.demap_llr(np.zeros((1, 1), np.complex64), 1.0, table, "exact")
    with pytest.raises(ParameterError, match="no"):
        host.demap_llr(np.zeros((1, 1), np.complex64), 0.0, table)


@pytest.mark.parametrize("k", BITS_PER_SYMBOL)
@pytest.mark.parametrize("method", host.DEMAPPING_METHODS)
def test_demapper_matches_sionna_and_torch(k, method):
    bits = random_bits(4, 50 * k)
    y = noisy(host.map_bits(bits, host.constellation(k)), 0.1)
    no_per_symbol = np.random.default_rng(1).uniform(0.02, 0.5, y.shape).astype(np.float32)
    constellation_type = "pam" if k == 1 else "qam"
    sionna_demapper = sionna_mapping.Demapper(method, constellation_type, k, precision="double")
    for no in (0.1, no_per_symbol):
        llr = host.demap_llr(y, no, host.constellation(k), method)
        assert llr.shape == (4, 50 * k) and llr.dtype == np.float32
        reference = sionna_demapper(torch.from_numpy(y.astype(np.complex128)), torch.as_tensor(no, dtype=torch.float64))
        np.testing.assert_allclose(llr, reference.numpy(), rtol=1e-4, atol=1e-3)
        torch_llr = dev.demap_llr(torch.from_numpy(y), torch.as_tensor(no), k, method)
        np.testing.assert_allclose(torch_llr.numpy(), llr, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("k", BITS_PER_SYMBOL)
def test_llr_sign_is_ln_p1_over_p0(k):
    labels = host.bit_labels(k)
    points = host.constellation(k)[None, :]  # every point once, noiseless
    for llr in (host.demap_llr(points, 1e-3, host.constellation(k)),
                dev.demap_llr(torch.from_numpy(points), 1e-3, k).numpy()):
        np.testing.assert_array_equal((llr > 0).reshape(-1, k), labels)  # positive LLR <=> bit 1
        np.testing.assert_allclose(host.bit_probabilities(llr).reshape(-1, k), labels, atol=1e-6)


def test_demapper_is_stable_at_high_snr():
    y = noisy(host.map_bits(random_bits(2, 600), host.constellation(6)), 1e-6)
    for method in host.DEMAPPING_METHODS:
        assert np.all(np.isfinite(host.demap_llr(y, 1e-6, host.constellation(6), method)))
        assert torch.isfinite(dev.demap_llr(torch.from_numpy(y), 1e-6, 6, method)).all()


def test_bit_probabilities_are_sigmoid_on_both_paths():
    llr = np.array([-1e4, -30.0, -1.0, 0.0, 2.5, 1e4], np.float32)
    expected = special.expit(llr.astype(np.float64))
    np.testing.assert_allclose(host.bit_probabilities(llr), expected, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(dev.bit_probabilities(torch.from_numpy(llr)).numpy(), expected, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("k", [2, 4, 6])
def test_soft_mapper_gradient_is_the_bit_flip_difference(k):
    bits = torch.from_numpy(random_bits(1, k)).float().requires_grad_()
    symbol = dev.map_bits(bits, k)
    jacobian = [torch.autograd.grad(part(symbol).sum(), bits, retain_graph=True)[0]
                for part in (torch.real, torch.imag)]
    for t in range(k):
        flipped = [bits.detach().clone() for _ in range(2)]
        flipped[0][0, t], flipped[1][0, t] = 0.0, 1.0
        difference = dev.map_bits(flipped[1], k) - dev.map_bits(flipped[0], k)
        torch.testing.assert_close(torch.complex(jacobian[0][0, t], jacobian[1][0, t]), difference[0, 0])


def test_straight_through_bits_get_gradients_through_mapper_and_demapper():
    logits = torch.randn(2, 24, requires_grad=True)
    soft = torch.sigmoid(logits)
    hard = soft + (soft.round() - soft).detach()  # straight-through binarizer
    x = dev.map_bits(hard, 4)
    torch.testing.assert_close(x, dev.map_bits(soft.round().detach(), 4), rtol=0, atol=0)
    llr = dev.demap_llr(x + 0.1, 0.1, 4)
    llr.square().sum().backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
