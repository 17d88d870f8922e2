"""Channels on both paths: RNG quality and determinism, shape/dtype contracts, host<->torch statistics,
closed-form BER (BPSK, QPSK, 16-QAM over AWGN; BPSK over Rayleigh with CSI) and gradient flow.

Conventions: no = N0 per complex symbol, noise CN(0, no); h ~ CN(0, 1); LLR = ln(P(b=1)/P(b=0)).
"""

import numba
import numpy as np
import pytest
import torch
from scipy import stats

from sdjscc_phy.errors import ParameterError
from sdjscc_phy.kernels import channels as host
from sdjscc_phy.kernels import mapping as host_mapping
from sdjscc_phy.kernels import rng
from sdjscc_phy.phy import channels as dev
from sdjscc_phy.phy import mapping as dev_mapping

KEY = 0x5EED_CAFE_F00D_1234
NO = 0.25


def symbols(shape, seed=0) -> np.ndarray:
    """Random unit-energy QPSK symbols, complex64."""
    return host_mapping.map_bits(np.random.default_rng(seed).integers(0, 2, (shape[0], 2 * shape[1]), np.uint8),
                                 host_mapping.constellation(2))


def assert_close_to(value, expected, std, sigmas=5.0):
    assert abs(value - expected) < sigmas * std, f"{value} differs from {expected} by more than {sigmas} x {std}"


# --- counter-based RNG -------------------------------------------------------------------------------------

@pytest.mark.parametrize("counter, key, expected", [  # Random123 known-answer tests for Philox4x32-10
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
])
def test_philox_matches_known_answers(counter, key, expected):
    words = rng.philox4x32(*map(np.uint64, counter), *map(np.uint64, key))
    assert tuple(int(w) for w in words) == expected


def test_complex_normal_is_cn01():
    z = rng.complex_normal(400_000, KEY)
    n = z.size
    assert z.dtype == np.complex64
    for part in (z.real, z.imag):
        assert_close_to(part.mean(), 0.0, np.sqrt(0.5 / n))
        assert_close_to(part.var(), 0.5, np.sqrt(2 * 0.25 / n))  # var of a sample variance: 2 sigma^4 / n
        assert stats.kstest(part, stats.norm(scale=np.sqrt(0.5)).cdf).pvalue > 1e-4
    assert stats.kstest(np.abs(z) ** 2, stats.expon.cdf).pvalue > 1e-4  # |z|^2 ~ Exp(1), tails included
    assert stats.kstest(np.angle(z), stats.uniform(-np.pi, 2 * np.pi).cdf).pvalue > 1e-4
    assert_close_to(np.mean(z.real * z.imag), 0.0, 0.5 / np.sqrt(n))  # re and im uncorrelated
    assert_close_to(np.mean(z.real[1:] * z.real[:-1]), 0.0, 0.5 / np.sqrt(n))  # neighbours uncorrelated
    assert_close_to(np.mean(np.abs(z) ** 2 > 9.0), np.exp(-9.0), np.sqrt(np.exp(-9.0) / n))  # tail mass


def test_complex_normal_streams_are_independent():
    first, second = rng.complex_normal(200_000, KEY), rng.complex_normal(200_000, KEY, stream=1)
    other_key = rng.complex_normal(200_000, KEY + 1)
    for z in (second, other_key):
        assert_close_to(np.mean(first.real * z.real), 0.0, 0.5 / np.sqrt(first.size))
    assert np.array_equal(rng.complex_normal(10, KEY, first_index=5), rng.complex_normal(15, KEY)[5:])


# --- contracts and determinism ------------------------------------------------------------------------------

def test_awgn_contract_and_determinism():
    x = symbols((4, 37))
    y = host.awgn(x, NO, KEY)
    assert y.shape == x.shape and y.dtype == np.complex64
    assert np.array_equal(host.awgn(x, NO, KEY), y)
    assert not np.array_equal(host.awgn(x, NO, KEY + 1), y)
    in_place = x.copy()
    assert host.awgn(in_place, NO, KEY, out=in_place) is in_place and np.array_equal(in_place, y)
    assert np.array_equal(host.awgn(x, 0.0, KEY), x)


@pytest.mark.parametrize("coherence", host.COHERENCES)
@pytest.mark.parametrize("equalize", [True, False])
def test_rayleigh_contract(coherence, equalize):
    x = symbols((4, 37))
    y, h, no_eff = host.rayleigh(x, NO, KEY, coherence, equalize)
    assert y.shape == x.shape and y.dtype == np.complex64
    assert h.shape == ((4, 1) if coherence == "block" else x.shape) and h.dtype == np.complex64
    assert no_eff.shape == x.shape and no_eff.dtype == np.float32
    gain = np.abs(h) ** 2
    np.testing.assert_allclose(no_eff, np.broadcast_to(NO / gain if equalize else NO, x.shape), rtol=1e-6)
    noiseless = host.rayleigh(x, 0.0, KEY, coherence, equalize).y
    np.testing.assert_allclose(noiseless, x if equalize else h * x, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("channel", ["awgn", "block", "fast"])
def test_host_noise_is_invariant_to_threads_and_batch_split(channel):
    def run(x, row_offset=0):
        if channel == "awgn":
            return host.awgn(x, NO, KEY, row_offset=row_offset)
        return host.rayleigh(x, NO, KEY, channel, True, row_offset=row_offset).y

    x = symbols((7, 1001))  # odd sizes: rows start at every alignment of the vectorised loop
    reference = run(x)
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        assert np.array_equal(run(x), reference)
    finally:
        numba.set_num_threads(threads)
    assert np.array_equal(np.concatenate([run(x[:3]), run(x[3:4], 3), run(x[4:], 4)]), reference)


def test_awgn_and_rayleigh_share_the_additive_noise():
    x = np.zeros((3, 50), np.complex64)  # y = h * 0 + n is the noise alone
    assert np.array_equal(host.rayleigh(x, NO, KEY, "fast", False).y, host.awgn(x, NO, KEY))
    assert np.array_equal(host.rayleigh(x, NO, KEY, "block", False).y, host.awgn(x, NO, KEY))


def test_invalid_arguments_raise():
    x = symbols((2, 4))
    with pytest.raises(ParameterError, match="coherence"):
        host.rayleigh(x, NO, KEY, "slow", True)
    with pytest.raises(ParameterError, match="coherence"):
        dev.rayleigh(torch.from_numpy(x), NO, "slow", True)
    with pytest.raises(ParameterError, match="no"):
        host.awgn(x, -1.0, KEY)
    with pytest.raises(ParameterError, match="x"):
        host.awgn(x.real, NO, KEY)


def test_torch_contracts():
    x = torch.from_numpy(symbols((4, 37)))
    g = torch.Generator().manual_seed(0)
    assert dev.awgn(x, NO, g).dtype == torch.complex64
    assert torch.equal(dev.awgn(x, NO, torch.Generator().manual_seed(1)),
                       dev.awgn(x, NO, torch.Generator().manual_seed(1)))
    for coherence, h_shape in (("block", (4, 1)), ("fast", (4, 37))):
        y, h, no_eff = dev.rayleigh(x, torch.full((4, 1), NO), coherence, True, g)
        assert y.shape == x.shape and h.shape == h_shape and no_eff.shape == x.shape
        torch.testing.assert_close(no_eff, (NO / h.abs() ** 2).expand(x.shape))


# --- host <-> torch statistics --------------------------------------------------------------------------------

@pytest.mark.parametrize("channel", ["awgn", "block", "fast"])
def test_paths_have_equal_statistics(channel):
    num_rows, num_cols = (20_000, 10) if channel == "block" else (100, 2_000)
    x = symbols((num_rows, num_cols))
    g = torch.Generator().manual_seed(0)
    if channel == "awgn":
        outputs = [(host.awgn(x, NO, KEY), 1.0), (dev.awgn(torch.from_numpy(x), NO, g).numpy(), 1.0)]
    else:
        host_out = host.rayleigh(x, NO, KEY, channel, True)
        dev_out = dev.rayleigh(torch.from_numpy(x), NO, channel, True, g)
        outputs = [(host_out.y, host_out.h), (dev_out.y.numpy(), dev_out.h.numpy())]
        for _, h in outputs:
            assert stats.kstest(np.abs(h.ravel()) ** 2, stats.expon.cdf).pvalue > 1e-4  # |h|^2 ~ Exp(1)
    # Noise with the channel undone, (y - x) / sqrt(no / |h|^2), is CN(0, 1) on both paths.
    unit_noise = [((y - x) / np.sqrt(NO / np.abs(h) ** 2)).ravel() for y, h in outputs]
    for z in unit_noise:
        assert_close_to(np.mean(np.abs(z) ** 2), 1.0, 1.0 / np.sqrt(z.size))
        assert stats.kstest(z.real, stats.norm(scale=np.sqrt(0.5)).cdf).pvalue > 1e-4
    assert stats.ks_2samp(unit_noise[0].imag, unit_noise[1].imag).pvalue > 1e-4


# --- closed-form bit error rates ------------------------------------------------------------------------------

def awgn_ber(num_bits_per_symbol: int, snr: float) -> float:
    """Exact Gray-labelled BER with nearest-point decisions over AWGN, Es/N0 = snr (linear)."""
    q = stats.norm.sf
    if num_bits_per_symbol == 1:
        return q(np.sqrt(2 * snr))
    if num_bits_per_symbol == 2:
        return q(np.sqrt(snr))
    a = np.sqrt(snr / 5)  # 16-QAM: half the minimum distance over the per-dimension noise std
    return (3 * q(a) + 2 * q(3 * a) - q(5 * a)) / 4


def simulate_ber(path: str, num_bits_per_symbol: int, snr_db: float, channel: str, num_bits: int = 1 << 20):
    """(BER, its standard error) of map -> channel -> max-log demap -> sign, on the host or torch path.

    Max-log LLR signs are the nearest-point decisions the closed forms assume (exact APP bit decisions
    differ slightly for 16-QAM). The standard error uses the spread of errors per symbol, since bits of one
    symbol err together.
    """
    k, no = num_bits_per_symbol, 10 ** (-snr_db / 10)
    bits = np.random.default_rng(1).integers(0, 2, (64, num_bits // 64), np.uint8)
    if path == "host":
        table = host_mapping.constellation(k)
        x = host_mapping.map_bits(bits, table)
        out = host.rayleigh(x, no, KEY, channel, True) if channel != "awgn" else None
        y, no_eff = (host.awgn(x, no, KEY), no) if out is None else (out.y, out.no_eff)
        llr = host_mapping.demap_llr(y, no_eff, table, "maxlog")
    else:
        g = torch.Generator().manual_seed(2)
        x = dev_mapping.map_bits(torch.from_numpy(bits), k)
        out = dev.rayleigh(x, no, channel, True, g) if channel != "awgn" else None
        y, no_eff = (dev.awgn(x, no, g), no) if out is None else (out.y, out.no_eff)
        llr = dev_mapping.demap_llr(y, no_eff, k, "maxlog").numpy()
    errors_per_symbol = ((llr > 0) != bits).reshape(-1, k).sum(axis=1)
    return errors_per_symbol.mean() / k, errors_per_symbol.std() / np.sqrt(errors_per_symbol.size) / k


@pytest.mark.parametrize("path", ["host", "torch"])
@pytest.mark.parametrize("num_bits_per_symbol, snr_db", [(1, 4.0), (2, 7.0), (4, 13.0)])
def test_ber_over_awgn_matches_closed_form(path, num_bits_per_symbol, snr_db):
    ber, std = simulate_ber(path, num_bits_per_symbol, snr_db, "awgn")
    assert_close_to(ber, awgn_ber(num_bits_per_symbol, 10 ** (snr_db / 10)), std)


@pytest.mark.parametrize("path", ["host", "torch"])
def test_bpsk_ber_over_fast_rayleigh_with_csi_matches_closed_form(path):
    snr_db = 10.0
    g = 10 ** (snr_db / 10)
    ber, std = simulate_ber(path, 1, snr_db, "fast")
    assert_close_to(ber, 0.5 * (1 - np.sqrt(g / (1 + g))), std)


# --- gradients ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("channel", ["awgn", "block", "fast"])
def test_gradient_flows_from_llr_to_soft_bits(channel):
    g = torch.Generator().manual_seed(0)
    soft_bits = torch.rand(4, 64, generator=g, requires_grad=True)
    x = dev_mapping.map_bits(soft_bits, 4)
    if channel == "awgn":
        llr = dev_mapping.demap_llr(dev.awgn(x, NO, g), NO, 4)
    else:
        out = dev.rayleigh(x, NO, channel, True, g)
        llr = dev_mapping.demap_llr(out.y, out.no_eff, 4)
    torch.nn.functional.binary_cross_entropy_with_logits(llr, soft_bits.detach().round()).backward()
    assert torch.isfinite(soft_bits.grad).all() and soft_bits.grad.abs().sum() > 0
