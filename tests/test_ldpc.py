"""LDPC codes (IEEE 802.11n, 5G NR) and our Numba BP decoder, checked against the standards'
parity-check equations and against Sionna's LDPC5GEncoder / LDPC5GDecoder.

LLRs are ln(P(b=1)/P(b=0)) throughout (Sionna's sign).
"""

import numpy as np
import pytest
import torch

from sdjscc_phy.errors import ParameterError
from sdjscc_phy.phy.ldpc_codes import (
    ALGORITHMS, SCHEDULES, Ieee80211nLdpcCode, LdpcDecoder, Nr5gLdpcCode, gf2_inverse)

NR_CODES = [  # (k, n, num_bits_per_symbol): BG1 with fillers, BG2, BG2 + output interleaver
    (1458, 1944, None), (100, 200, None), (192, 256, 4), (1000, 3000, 2)]


@pytest.fixture(scope="module")
def wifi():
    return Ieee80211nLdpcCode()


@pytest.fixture(scope="module")
def nr():
    return Nr5gLdpcCode(1458, 1944)


def _bpsk_llr(codewords, ebno_db, coderate, rng):
    """LLRs ln(P1/P0) of BPSK (bit 1 -> +1) over AWGN at Eb/N0 ebno_db."""
    sigma2 = 1.0 / (2.0 * coderate * 10.0 ** (ebno_db / 10.0))
    y = 2.0 * codewords - 1.0 + rng.normal(0.0, np.sqrt(sigma2), codewords.shape)
    return (2.0 * y / sigma2).astype(np.float32)


def _random_words(code, num, seed):
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 2, (num, code.k), dtype=np.uint8)
    return bits, code.encode(bits), rng


def _syndrome(pcm, words):
    return (pcm @ words.T.astype(np.int64)) % 2


# --- code construction and encoding ---------------------------------------------------------

def test_80211n_code_has_the_standard_dimensions_and_dual_diagonal_parity(wifi):
    assert (wifi.n, wifi.k, wifi.z, wifi.pcm.shape) == (1944, 1458, 81, (486, 1944))
    assert set(np.asarray(wifi.pcm.sum(axis=1)).ravel()) == {14, 15}  # R = 3/4 check degrees
    parity = wifi.pcm[:, wifi.k:].toarray()
    # Dual diagonal: each parity block column j >= 1 has identity blocks at block rows j-1, j.
    for j in range(1, 6):
        block_col = parity[:, 81 * j:81 * (j + 1)]
        assert np.array_equal(block_col[81 * (j - 1):81 * (j + 1)], np.vstack([np.eye(81)] * 2))
        assert block_col.sum() == 2 * 81


def test_80211n_encoder_is_systematic_and_satisfies_every_check(wifi):
    bits, words, _ = _random_words(wifi, 200, seed=1)
    assert words.dtype == np.uint8 and words.shape == (200, 1944)
    assert np.array_equal(words[:, :wifi.k], bits)
    assert not _syndrome(wifi.pcm, words).any()


@pytest.mark.parametrize("k, n, num_bits_per_symbol", NR_CODES)
def test_5g_mother_codewords_satisfy_every_check(k, n, num_bits_per_symbol):
    code = Nr5gLdpcCode(k, n, num_bits_per_symbol)
    bits = np.random.default_rng(2).integers(0, 2, (64, k), dtype=np.uint8)
    mother = code.encode_mother(bits)
    assert mother.shape == (64, code.n_ldpc)
    assert np.array_equal(mother[:, :k], bits) and not mother[:, k:code.k_ldpc].any()
    assert not _syndrome(code.pcm, mother).any()


@pytest.mark.parametrize("k, n, num_bits_per_symbol", NR_CODES)
def test_5g_encoder_output_equals_sionna_rate_matched_codeword(k, n, num_bits_per_symbol):
    from sionna.phy.fec.ldpc import LDPC5GEncoder

    code = Nr5gLdpcCode(k, n, num_bits_per_symbol)
    bits = np.random.default_rng(3).integers(0, 2, (64, k), dtype=np.uint8)
    reference = LDPC5GEncoder(k, n, num_bits_per_symbol=num_bits_per_symbol)(
        torch.tensor(bits, dtype=torch.float32))
    assert np.array_equal(code.encode(bits), reference.numpy().astype(np.uint8))


def test_encoder_keeps_leading_batch_dimensions(wifi):
    bits = np.random.default_rng(4).integers(0, 2, (2, 3, wifi.k), dtype=np.uint8)
    assert np.array_equal(wifi.encode(bits), wifi.encode(bits.reshape(6, -1)).reshape(2, 3, -1))


def test_gf2_inverse_inverts_and_rejects_singular_matrices():
    rng = np.random.default_rng(5)
    lower = np.tril(rng.integers(0, 2, (40, 40)), -1) + np.eye(40, dtype=np.int64)
    matrix = (lower @ lower.T % 2).astype(np.uint8)  # product of unit triangulars: invertible
    assert np.array_equal(matrix.astype(np.int64) @ gf2_inverse(matrix) % 2, np.eye(40))
    matrix[:, 3] = matrix[:, 7]
    with pytest.raises(ValueError):
        gf2_inverse(matrix)


@pytest.mark.parametrize("kwargs", [dict(k=5, n=20), dict(k=100, n=101), dict(k=100, n=600)])
def test_unsupported_5g_codes_are_parameter_errors(kwargs):
    with pytest.raises(ParameterError):
        Nr5gLdpcCode(**kwargs)


def test_unknown_80211n_code_is_a_parameter_error():
    with pytest.raises(ParameterError, match="rate"):
        Ieee80211nLdpcCode(rate="1/2")


# --- decoder ----------------------------------------------------------------------------------

def test_decoder_sign_convention_positive_llr_means_bit_one(wifi):
    llr = np.random.default_rng(6).normal(0.0, 3.0, (8, wifi.n)).astype(np.float32)
    result = LdpcDecoder(wifi, num_iter=0).decode(llr)  # hard decisions of the channel LLRs
    assert np.array_equal(result.bits, (llr[:, :wifi.k] > 0).astype(np.uint8))
    assert not result.ok.any() and not result.iterations.any()


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_noiseless_llrs_decode_exactly_in_at_most_one_or_two_iterations(wifi, nr, algorithm,
                                                                         schedule):
    # 5G punctures its first 2Z bits (LLR 0). In BG1 the second punctured column block meets
    # only checks that also hold the first, so flooding needs one more iteration than layered.
    for code, max_iterations in [(wifi, 0), (nr, 1 if schedule == "layered" else 2)]:
        bits, words, _ = _random_words(code, 40, seed=7)
        llr = 10.0 * (2.0 * words - 1.0)
        result = LdpcDecoder(code, algorithm=algorithm, schedule=schedule).decode(llr)
        assert np.array_equal(result.bits, bits) and result.ok.all()
        assert result.iterations.max() == max_iterations


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_single_flipped_bit_is_corrected(wifi, nr, algorithm, schedule):
    for code in (wifi, nr):
        bits, words, rng = _random_words(code, 40, seed=8)
        llr = 4.0 * (2.0 * words - 1.0)
        llr[np.arange(40), rng.integers(0, code.n, 40)] *= -1.0
        result = LdpcDecoder(code, algorithm=algorithm, schedule=schedule).decode(llr)
        assert np.array_equal(result.bits, bits) and result.ok.all()


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_early_stop_counts_iterations_per_codeword(nr, schedule):
    bits, words, rng = _random_words(nr, 300, seed=9)
    llr = _bpsk_llr(words, 2.8, nr.coderate, rng)  # waterfall: some words need all iterations
    full = LdpcDecoder(nr, num_iter=12, schedule=schedule, early_stop=False).decode(llr)
    early = LdpcDecoder(nr, num_iter=12, schedule=schedule, early_stop=True).decode(llr)
    assert (full.iterations == 12).all()
    assert early.ok.any() and not early.ok.all()
    assert early.iterations[early.ok].mean() < 11
    assert (early.iterations[~early.ok] == 12).all()  # unsatisfied words run to the limit
    # A word stopped on a satisfied syndrome decodes to a codeword, almost always the sent one.
    assert (early.bits[early.ok] == bits[early.ok]).all(axis=1).mean() > 0.99
    assert abs(early.ok.mean() - full.ok.mean()) < 0.05


def test_results_do_not_depend_on_batch_size_or_shape(nr):
    _, words, rng = _random_words(nr, 300, seed=10)
    llr = _bpsk_llr(words, 2.6, nr.coderate, rng)
    decoder = LdpcDecoder(nr, num_iter=12)
    whole = decoder.decode(llr)
    for part in (decoder.decode(llr[:5]), decoder.decode(llr[:37])):
        size = part.bits.shape[0]
        assert np.array_equal(part.bits, whole.bits[:size])
        assert np.array_equal(part.iterations, whole.iterations[:size])
    shaped = decoder.decode(llr[:60].reshape(3, 20, nr.n))
    assert shaped.bits.shape == (3, 20, nr.k) and shaped.ok.shape == (3, 20)
    assert np.array_equal(shaped.bits.reshape(60, -1), whole.bits[:60])


@pytest.mark.parametrize("code_name", ["wifi", "nr"])
def test_both_codes_decode_error_free_at_high_snr(request, code_name):
    code = request.getfixturevalue(code_name)
    bits, words, rng = _random_words(code, 200, seed=11)
    result = LdpcDecoder(code).decode(_bpsk_llr(words, 4.5, code.coderate, rng))
    assert np.array_equal(result.bits, bits) and result.ok.all()
    assert result.iterations.mean() < 5


@pytest.mark.parametrize("algorithm", ["boxplus-phi", "boxplus", "offset-minsum"])
def test_flooding_decoder_matches_sionna_word_for_word(algorithm):
    from sionna.phy.fec.ldpc import LDPC5GDecoder, LDPC5GEncoder

    code = Nr5gLdpcCode(256, 512)
    bits, words, rng = _random_words(code, 64, seed=12)
    llr = _bpsk_llr(words, 2.0, code.coderate, rng)  # waterfall: a few words fail
    ours = LdpcDecoder(code, num_iter=10, algorithm=algorithm, schedule="flooding",
                       early_stop=False).decode(llr)
    sionna = LDPC5GDecoder(LDPC5GEncoder(code.k, code.n), cn_update=algorithm, num_iter=10)
    theirs = sionna(torch.tensor(llr)).numpy().astype(np.uint8)
    assert 0 < (theirs != bits).any(axis=1).mean() < 0.5
    assert (ours.bits == theirs).all(axis=1).mean() >= 0.98


def test_invalid_decoder_settings_and_inputs_are_parameter_errors(wifi):
    with pytest.raises(ParameterError, match="algorithm"):
        LdpcDecoder(wifi, algorithm="sum-product")
    with pytest.raises(ParameterError, match="schedule"):
        LdpcDecoder(wifi, schedule="serial")
    with pytest.raises(ParameterError, match="num_iter"):
        LdpcDecoder(wifi, num_iter=-1)
    with pytest.raises(ParameterError, match="llr"):
        LdpcDecoder(wifi).decode(np.zeros((2, wifi.n - 1), np.float32))
    with pytest.raises(ParameterError, match="NaN"):
        LdpcDecoder(wifi).decode(np.full((2, wifi.n), np.nan, np.float32))


# --- statistical comparison with Sionna over 16-QAM / AWGN -----------------------------------

def _snr_at(snr_db, rate, target):
    """SNR (dB) where a decreasing error-rate curve crosses ``target``, interpolated in log10."""
    for i in range(len(snr_db) - 1):
        if rate[i] >= target > rate[i + 1]:
            high, low = np.log10(rate[i]), np.log10(max(rate[i + 1], 1e-9))
            step = snr_db[i + 1] - snr_db[i]
            return snr_db[i] + (high - np.log10(target)) / (high - low) * step
    raise AssertionError(f"error rate {rate} does not cross {target} on the grid {snr_db}")


@pytest.mark.slow
def test_16qam_awgn_ber_and_bler_within_0p2_db_of_sionna():
    """5G NR (k=256, n=512, BG2), 16-QAM with Sionna's mapper and APP demapper, AWGN at Es/N0
    (noise variance N0 per complex symbol); flooding boxplus-phi, 20 iterations, for both."""
    from sionna.phy.fec.ldpc import LDPC5GDecoder, LDPC5GEncoder
    from sionna.phy.mapping import Demapper, Mapper

    k, n, num_frames = 256, 512, 250
    snr_db = np.arange(6.5, 8.01, 0.5)
    code = Nr5gLdpcCode(k, n)
    ours = LdpcDecoder(code, num_iter=20, algorithm="boxplus-phi", schedule="flooding",
                       early_stop=False)
    sionna = LDPC5GDecoder(LDPC5GEncoder(k, n), cn_update="boxplus-phi", num_iter=20)
    mapper, demapper = Mapper("qam", 4), Demapper("app", "qam", 4)
    rng = np.random.default_rng(13)
    rates = {"ours": ([], []), "sionna": ([], [])}  # (BER, BLER) per SNR
    for snr in snr_db:
        no = 10.0 ** (-snr / 10.0)
        bits = rng.integers(0, 2, (num_frames, k), dtype=np.uint8)
        x = mapper(torch.tensor(code.encode(bits), dtype=torch.float32)).numpy()
        noise = rng.normal(0.0, np.sqrt(no / 2.0), (2,) + x.shape)
        y = torch.tensor(x + noise[0] + 1j * noise[1], dtype=torch.complex64)
        llr = demapper(y, torch.tensor(no, dtype=torch.float32))
        decided = {"ours": ours.decode(llr.numpy()).bits,
                   "sionna": sionna(llr).numpy().astype(np.uint8)}
        for name, bits_hat in decided.items():
            errors = bits_hat != bits
            rates[name][0].append(errors.mean())
            rates[name][1].append(errors.any(axis=1).mean())
    for index, target in [(0, 1e-2), (1, 1e-1)]:
        gap = _snr_at(snr_db, rates["ours"][index], target) - _snr_at(
            snr_db, rates["sionna"][index], target)
        assert abs(gap) < 0.2, (target, rates)
