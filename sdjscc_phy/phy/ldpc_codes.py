"""LDPC channel codes for the separate source-channel coding (SSCC) baseline.

Two families, both quasi-cyclic (QC) with the structure H = [[A, B, 0], [C1, C2, I]] (B square and
invertible, I an identity "extension"), which gives one systematic encoder for both:

- :class:`Ieee80211nLdpcCode`: IEEE 802.11n (n = 1944, R = 3/4, Z = 81), from the standard's base
  matrix. No extension part (B is the whole parity part).
- :class:`Nr5gLdpcCode`: 3GPP 38.212 5G NR LDPC at any supported (k, n), built with Sionna's
  ``LDPC5GEncoder`` (base graph, lifting, filler bits, rate matching by puncturing the first 2Z
  systematic bits and the tail of the circular buffer, optional output bit interleaver).

:class:`LdpcDecoder` decodes either family with our Numba kernels (``sdjscc_phy.kernels.ldpc``):
sum-product (tanh or phi form), min-sum, normalised and offset min-sum; layered or flooding
schedule; optional per-codeword early stop.

Bits are uint8 0/1. Soft bits at every boundary are LLRs ln(P(b=1)/P(b=0)) (Sionna's sign).
"""

from __future__ import annotations

import warnings

from typing import NamedTuple

import numba
import numpy as np
import scipy.sparse as sp

from sdjscc_phy.errors import ParameterError
from sdjscc_phy.kernels import ldpc as kernels
from sdjscc_phy.phy.choices import LDPC_ALGORITHMS as ALGORITHMS
from sdjscc_phy.phy.choices import LDPC_SCHEDULES as SCHEDULES

# IEEE Std 802.11n-2009 (= IEEE Std 802.11-2012, Annex F), Table R.3 "Matrix prototypes for
# codeword block length n = 1944 bits, subblock size Z = 81 bits", code rate R = 3/4.
# Entry s >= 0: the Z x Z identity cyclically shifted right by s columns; -1: the zero block.
_IEEE80211N_BASE_MATRICES = {
    (1944, "3/4"): (81, """
        48 29 28 39  9 61 -1 -1 -1 63 45 80 -1 -1 -1 37 32 22  1  0 -1 -1 -1 -1
         4 49 42 48 11 30 -1 -1 -1 49 17 41 37 15 -1 54 -1 -1 -1  0  0 -1 -1 -1
        35 76 78 51 37 35 21 -1 17 64 -1 -1 -1 59  7 -1 -1 32 -1 -1  0  0 -1 -1
         9 65 44  9 54 56 73 34 42 -1 -1 -1 35 -1 -1 -1 46 39  0 -1 -1  0  0 -1
         3 62  7 80 68 26 -1 80 55 -1 36 -1 26 -1  9 -1 72 -1 -1 -1 -1 -1  0  0
        26 75 33 21 69 59  3 38 -1 -1 -1 35 -1 62 36 26 -1 -1  1 -1 -1 -1 -1  0
    """),
}


def lift_base_matrix(base: np.ndarray, z: int) -> sp.csr_matrix:
    """Expand a QC base matrix into the binary parity-check matrix (uint8 CSR).

    Block (i, j) with shift s >= 0 is the Z x Z identity shifted right by s: row i*Z + t has its
    one in column j*Z + (t + s) mod Z (802.11n's P_s and 38.212's lifting alike).
    """
    rows, cols = np.nonzero(base >= 0)
    shifts = base[rows, cols].astype(np.int64)
    t = np.arange(z)
    r_idx = (rows[:, None] * z + t).ravel()
    c_idx = (cols[:, None] * z + (t + shifts[:, None]) % z).ravel()
    data = np.ones(r_idx.size, np.uint8)
    return sp.csr_matrix((data, (r_idx, c_idx)), shape=(base.shape[0] * z, base.shape[1] * z))


def gf2_inverse(matrix: np.ndarray) -> np.ndarray:
    """Inverse over GF(2) of a square 0/1 matrix, by Gauss-Jordan on bit-packed rows.

    Raises ValueError if the matrix is singular.
    """
    size = matrix.shape[0]
    augmented = np.concatenate([matrix.astype(np.uint8) & 1, np.eye(size, dtype=np.uint8)], axis=1)
    packed = np.packbits(augmented, axis=1)
    for col in range(size):
        byte, mask = col >> 3, np.uint8(0x80 >> (col & 7))
        candidates = np.flatnonzero(packed[col:, byte] & mask)
        if candidates.size == 0:
            raise ValueError("matrix is singular over GF(2)")
        pivot = col + candidates[0]
        if pivot != col:
            packed[[col, pivot]] = packed[[pivot, col]]
        others = np.flatnonzero(packed[:, byte] & mask)
        others = others[others != col]
        packed[others] ^= packed[col]
    return np.unpackbits(packed, axis=1, count=2 * size)[:, size:]


def _csr_arrays(matrix: sp.spmatrix) -> tuple[np.ndarray, np.ndarray]:
    """(row_ptr, cols) int32 of a 0/1 matrix, columns sorted within each row."""
    csr = sp.csr_matrix(matrix)
    csr.sort_indices()
    return csr.indptr.astype(np.int32), csr.indices.astype(np.int32)


class DecoderGraph(NamedTuple):
    """Tanner graph the decoder iterates on (the mother code, fillers and pruned nodes removed).

    row_ptr/cols: int32 CSR of the checks; num_vars: variables; its first ``num_info`` variables are
    the information bits; rx_pos: int32 [n], the variable each transmitted bit lands on (variables
    never transmitted are punctured and start from LLR 0).
    """

    row_ptr: np.ndarray
    cols: np.ndarray
    num_vars: int
    num_info: int
    rx_pos: np.ndarray

    @property
    def max_degree(self) -> int:
        """Largest check-node degree."""
        return int(np.diff(self.row_ptr).max())


class LdpcCode:
    """A systematic QC-LDPC code H = [[A, B, 0], [C1, C2, I]]: checks, encoder, decoder graph.

    Mother-code columns: ``k`` information bits, ``k_ldpc - k`` filler bits (known zeros, never
    sent), ``num_core`` core parity bits (the B part), then extension parity bits, one per
    remaining check (the I part). ``tx_cols`` (length n) lists the mother columns sent, in order;
    the last ``num_pruned`` columns and checks are punctured degree-1 extensions, which the
    decoder drops (exact: such a variable always sends LLR 0, so its check informs no other).
    Subclasses supply these from the standard.
    """

    def __init__(self, pcm: sp.spmatrix, z: int, k: int, k_ldpc: int, num_core: int,
                 tx_cols: np.ndarray, num_pruned: int):
        self.pcm = sp.csr_matrix(pcm, dtype=np.uint8)
        self.z = int(z)
        self.k = int(k)
        self.k_ldpc = int(k_ldpc)
        self.n = int(tx_cols.size)
        self.n_ldpc = self.pcm.shape[1]
        num_checks = self.pcm.shape[0]
        num_ext = num_checks - num_core
        if self.n_ldpc != k_ldpc + num_core + num_ext:
            raise ValueError("parity-check matrix is not [info | core parity | extension parity]")
        ext_block = self.pcm[:, k_ldpc + num_core:]
        identity = sp.eye(num_ext, dtype=np.uint8)
        if ext_block[:num_core].nnz or (ext_block[num_core:] != identity).nnz:
            raise ValueError("extension parity part of H must be [0; I]")
        self._num_core = num_core
        self._mother_index = self._compact_index()
        self._build_encoder(tx_cols)
        self.graph = self._build_graph(tx_cols, num_pruned)

    @property
    def coderate(self) -> float:
        """k / n after rate matching."""
        return self.k / self.n

    def encode(self, bits: np.ndarray) -> np.ndarray:
        """Encode information bits uint8 [..., k] into transmitted codewords uint8 [..., n]."""
        return self._run_encoder(bits, self._tx_pos, self._num_ext_tx)

    def encode_mother(self, bits: np.ndarray) -> np.ndarray:
        """Full mother codewords uint8 [..., n_ldpc] (fillers as 0) with pcm @ c = 0 mod 2."""
        compact = self._run_encoder(bits, np.arange(self._mother_index.size, dtype=np.int32),
                                    self.pcm.shape[0] - self._num_core)
        mother = np.zeros(compact.shape[:-1] + (self.n_ldpc,), np.uint8)
        mother[..., self._mother_index] = compact
        return mother

    def _compact_index(self) -> np.ndarray:
        """Mother column of each compact position (the mother word without its fillers)."""
        return np.concatenate([np.arange(self.k), np.arange(self.k_ldpc, self.n_ldpc)])

    def _compact_of(self, mother_cols: np.ndarray) -> np.ndarray:
        """Compact position of non-filler mother columns."""
        return np.where(mother_cols < self.k, mother_cols, mother_cols - (self.k_ldpc - self.k))

    def _build_encoder(self, tx_cols: np.ndarray) -> None:
        """CSR pieces for kernels.encode_batch, in compact positions."""
        k, k_ldpc, num_core = self.k, self.k_ldpc, self._num_core
        self._tx_pos = self._compact_of(tx_cols).astype(np.int32)
        # Only the extension parity bits that are sent (or precede one that is) are computed.
        self._num_ext_tx = int(max(0, self._tx_pos.max() + 1 - k - num_core))
        self._info_csr = _csr_arrays(self.pcm[:, :k])  # filler columns multiply zeros
        core_parity = self.pcm[:num_core, k_ldpc:k_ldpc + num_core].toarray()
        self._binv_csr = _csr_arrays(gf2_inverse(core_parity))
        self._ext_csr = _csr_arrays(self.pcm[num_core:, k_ldpc:k_ldpc + num_core])

    def _run_encoder(self, bits: np.ndarray, tx_pos: np.ndarray, num_ext: int) -> np.ndarray:
        bits = np.asarray(bits)
        if bits.shape[-1:] != (self.k,):
            raise ParameterError(
                f"`bits` must have last dimension k={self.k}; got shape {bits.shape}")
        if bits.dtype != np.uint8:
            bits = bits.astype(np.uint8)
        flat = np.ascontiguousarray(bits.reshape(-1, self.k))
        # CSR row slices: only checks up to the last extension parity bit needed.
        info_ptr, info_cols = self._info_csr
        ext_ptr, ext_cols = self._ext_csr
        out = np.empty((flat.shape[0], tx_pos.size), np.uint8)
        kernels.encode_batch(flat, info_ptr[:self._num_core + num_ext + 1], info_cols,
                             *self._binv_csr, ext_ptr[:num_ext + 1], ext_cols, tx_pos,
                             _span(flat.shape[0], 1), out)
        return out.reshape(bits.shape[:-1] + (tx_pos.size,))

    def _build_graph(self, tx_cols: np.ndarray, num_pruned: int) -> DecoderGraph:
        keep_rows = self.pcm.shape[0] - num_pruned
        keep_cols = self._mother_index[self._mother_index < self.n_ldpc - num_pruned]
        if tx_cols.max() >= self.n_ldpc - num_pruned:
            raise ValueError("a pruned column is transmitted")
        row_ptr, cols = _csr_arrays(self.pcm[:keep_rows][:, keep_cols])
        # Graph variables are the compact positions below the pruned tail.
        return DecoderGraph(row_ptr, cols, int(keep_cols.size), self.k, self._tx_pos)


class Ieee80211nLdpcCode(LdpcCode):
    """IEEE 802.11n LDPC code from the standard's base matrix (Table R.3): n = 1944, R = 3/4.

    k = 1458 information bits are the first k codeword bits (systematic); Z = 81.
    """

    def __init__(self, n: int = 1944, rate: str = "3/4"):
        if (n, rate) not in _IEEE80211N_BASE_MATRICES:
            raise ParameterError(f"(`n`, `rate`) must be one of {tuple(_IEEE80211N_BASE_MATRICES)};"
                                 f" got ({n}, '{rate}')")
        z, text = _IEEE80211N_BASE_MATRICES[(n, rate)]
        base = np.array(text.split(), dtype=np.int64).reshape(-1, n // z)
        num_checks = base.shape[0] * z
        self.rate = rate
        super().__init__(lift_base_matrix(base, z), z, n - num_checks, n - num_checks, num_checks,
                         np.arange(n), num_pruned=0)


class Nr5gLdpcCode(LdpcCode):
    """3GPP 38.212 5G NR LDPC code with rate matching, as Sionna's ``LDPC5GEncoder`` builds it.

    Args:
        k: information bits per codeword (12..8448).
        n: transmitted bits per codeword after rate matching (k / n in [1/5, 0.95]).
        num_bits_per_symbol: if given, the 38.212 5.4.2.2 output bit interleaver for this
            modulation order is applied after rate matching (and undone by the decoder).
        bg: "bg1", "bg2" or None (38.212 selection rule).

    Mother code: n_ldpc = 68 Z (BG1) or 52 Z (BG2) columns; the first k are information bits,
    followed by k_ldpc - k filler zeros. Sent: the circular buffer without its first 2Z
    (systematic, punctured) bits and without the fillers, first n bits (redundancy version 0).
    """

    def __init__(self, k: int, n: int, num_bits_per_symbol: int | None = None,
                 bg: str | None = None):
        from sionna.phy.fec.ldpc import LDPC5GEncoder  # heavy import, only for construction

        try:
            with warnings.catch_warnings():
                # Sionna only warns about some unsupported rates; here they are errors of the flowgraph.
                warnings.simplefilter("error", UserWarning)
                encoder = LDPC5GEncoder(k, n, num_bits_per_symbol=num_bits_per_symbol, bg=bg,
                                        device="cpu")
        except (ValueError, TypeError, UserWarning) as err:
            raise ParameterError(
                f"unsupported 5G NR LDPC code (k={k}, n={n}, bg={bg}): {err}") from err
        if n > encoder.n_cb_comp:
            raise ParameterError(
                f"`n` must be at most {encoder.n_cb_comp} for k={k} (repetition is not supported); "
                f"got {n}")
        z = encoder.z
        self.bg = "bg1" if encoder.n_ldpc == 68 * z else "bg2"
        self.num_bits_per_symbol = num_bits_per_symbol
        buffer_pos = 2 * z + np.arange(n)  # circular buffer minus fillers, from bit 2Z
        tx_cols = np.where(buffer_pos < k, buffer_pos, buffer_pos + encoder.k_filler)
        if num_bits_per_symbol is not None:
            tx_cols = tx_cols[encoder.out_int.cpu().numpy()]
        pcm = encoder.pcm
        degree = np.asarray(pcm.sum(axis=0)).ravel()
        trailing_degree_one = int(np.argmin(degree[::-1] == 1))  # run length at the end
        num_pruned = min(trailing_degree_one, encoder.n_ldpc - 1 - int(tx_cols.max()))
        super().__init__(pcm, z, k, encoder.k_ldpc, 4 * z, tx_cols, num_pruned)


class LdpcDecodeResult(NamedTuple):
    """bits: uint8 [..., k] decided information bits; ok: bool [...] every parity check satisfied;
    iterations: int32 [...] decoding iterations run."""

    bits: np.ndarray
    ok: np.ndarray
    iterations: np.ndarray


class LdpcDecoder:
    """Belief-propagation decoder for an :class:`LdpcCode`, running our Numba kernels.

    Args:
        code: the code (its decoder graph and rate-matching positions are used).
        num_iter: maximum decoding iterations.
        algorithm: check-node rule: "boxplus" (sum-product, tanh form), "boxplus-phi"
            (sum-product, phi form), "minsum", "normalized-minsum" (messages times
            ``minsum_scale``), "offset-minsum" (messages minus ``minsum_offset``, floored at 0).
            Names and clamps match Sionna's ``cn_update``.
        schedule: "layered" (checks updated one after another, posterior updated after each;
            about twice the convergence speed) or "flooding" (all checks, then all variables:
            Sionna's default).
        early_stop: stop each codeword as soon as its hard decisions satisfy every check.
        llr_max: clip in nats of channel LLRs and of all messages (Sionna: 20).
        minsum_scale: normalisation factor of "normalized-minsum".
        minsum_offset: offset in nats of "offset-minsum" (Sionna: 0.5).
    """

    def __init__(self, code: LdpcCode, num_iter: int = 20, algorithm: str = "boxplus-phi",
                 schedule: str = "layered", early_stop: bool = True, llr_max: float = 20.0,
                 minsum_scale: float = 0.75, minsum_offset: float = 0.5):
        if algorithm not in ALGORITHMS:
            raise ParameterError(f"`algorithm` must be one of {ALGORITHMS}; got '{algorithm}'")
        if schedule not in SCHEDULES:
            raise ParameterError(f"`schedule` must be one of {SCHEDULES}; got '{schedule}'")
        if not isinstance(num_iter, (int, np.integer)) or num_iter < 0:
            raise ParameterError(f"`num_iter` must be a non-negative int; got {num_iter!r}")
        if not llr_max > 0:
            raise ParameterError(f"`llr_max` must be positive; got {llr_max!r}")
        if not 0 < minsum_scale <= 1:
            raise ParameterError(f"`minsum_scale` must be in (0, 1]; got {minsum_scale!r}")
        if not minsum_offset >= 0:
            raise ParameterError(f"`minsum_offset` must be >= 0; got {minsum_offset!r}")
        self.code = code
        self.num_iter = int(num_iter)
        self.algorithm = algorithm
        self.schedule = schedule
        self.early_stop = bool(early_stop)
        self.llr_max = float(llr_max)
        self._kernel_algorithm = {
            "boxplus": kernels.ALGORITHM_BOXPLUS, "boxplus-phi": kernels.ALGORITHM_BOXPLUS_PHI,
        }.get(algorithm, kernels.ALGORITHM_MINSUM)
        self._scale = minsum_scale if algorithm == "normalized-minsum" else 1.0
        self._offset = minsum_offset if algorithm == "offset-minsum" else 0.0

    def decode(self, llr: np.ndarray) -> LdpcDecodeResult:
        """Decode channel LLRs float32 [..., n], ln(P(b=1)/P(b=0)) per transmitted bit."""
        llr = np.asarray(llr)
        n, k = self.code.n, self.code.k
        if llr.shape[-1:] != (n,):
            raise ParameterError(f"`llr` must have last dimension n={n}; got shape {llr.shape}")
        flat = np.ascontiguousarray(llr.reshape(-1, n), dtype=np.float32)
        if np.isnan(flat).any():
            raise ParameterError("`llr` contains NaN")
        num_cw = flat.shape[0]
        bits = np.empty((num_cw, k), np.uint8)
        ok = np.empty(num_cw, np.bool_)
        iterations = np.empty(num_cw, np.int32)
        g = self.code.graph
        lanes = _lanes(num_cw)
        # Dynamic scheduling: spans finish at different times under early stopping.
        with numba.parallel_chunksize(1):
            kernels.decode_batch(
                flat, g.rx_pos, g.num_vars, g.row_ptr, g.cols, g.max_degree, self.num_iter,
                self._kernel_algorithm, self.schedule == "layered", self.early_stop,
                np.float32(self.llr_max), np.float32(self._scale), np.float32(self._offset),
                np.uint64(lanes), _span(num_cw, lanes), bits, ok, iterations)
        lead = llr.shape[:-1]
        return LdpcDecodeResult(bits.reshape(lead + (k,)), ok.reshape(lead),
                                iterations.reshape(lead))


def _lanes(num_cw: int) -> int:
    """Codewords per SIMD group: 64 runs LLVM's 4x-unrolled 16-wide loop bodies; fewer when the
    batch is too small to give every thread two groups."""
    for lanes in (64, 32):
        if num_cw >= 2 * lanes * numba.get_num_threads():
            return lanes
    return 16


def _span(num_items: int, granule: int) -> int:
    """Items per parallel task: about two tasks per thread (long spans let early-stopped lanes
    take new codewords instead of idling), a multiple of ``granule``."""
    tasks = 2 * numba.get_num_threads()
    per_task = -(-num_items // tasks)
    return max(granule, -(-per_task // granule) * granule)
