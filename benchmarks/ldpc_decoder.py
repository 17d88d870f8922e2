"""Throughput of our Numba LDPC decoder against Sionna's LDPC5GDecoder (PyTorch, CPU).

Code: 5G NR LDPC k=1458, n=1944 (R = 3/4, BG1, Z = 72; the (k, n) of our 802.11n code).
Frames: random information bits, encoded, BPSK over AWGN at Eb/N0 = --ebno-db; the same LLRs
(ln(P(b=1)/P(b=0))) go to every decoder. Both decoders run the same number of iterations with the
same check-node rule and schedule; Sionna has no per-codeword early stop (it always runs
num_iter), ours is timed with and without it. Throughput = decoded information bits per second,
best of --repeats timed runs, after an untimed warm-up (numba compile, torch first call).
Sionna gets its best setting: torch threads (1 or all) and batch size are picked by timing
flooding boxplus-phi on a few frames first (on a shared, busy machine one torch thread is often
several times faster than two). The last line printed is one JSON object with all figures.

Run: python benchmarks/ldpc_decoder.py [--frames 512]
"""

from __future__ import annotations

import argparse
import json
import time

import numba
import numpy as np
import torch

from sdjscc_phy.phy.ldpc_codes import Ieee80211nLdpcCode, LdpcDecoder, Nr5gLdpcCode

K, N = 1458, 1944


def _bpsk_awgn_llr(words: np.ndarray, ebno_db: float, coderate: float,
                   rng: np.random.Generator) -> np.ndarray:
    """LLRs ln(P1/P0) of BPSK (bit 1 -> +1) over AWGN at Eb/N0 ebno_db."""
    sigma2 = 1.0 / (2.0 * coderate * 10.0 ** (ebno_db / 10.0))
    y = 2.0 * words - 1.0 + rng.normal(0.0, np.sqrt(sigma2), words.shape)
    return (2.0 * y / sigma2).astype(np.float32)


def _best_time(run, repeats: int) -> tuple[float, object]:
    """Shortest wall time (s) of ``repeats`` calls, and the last result."""
    best, result = np.inf, None
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - start)
    return best, result


def _sionna_decode(decoder, llr: np.ndarray, batch: int) -> np.ndarray:
    return np.concatenate([decoder(torch.from_numpy(llr[i:i + batch])).numpy().astype(np.uint8)
                           for i in range(0, llr.shape[0], batch)])


def _fastest_sionna_setting(decoder, llr: np.ndarray, batches: list[int]) -> tuple[int, int]:
    """(torch threads, batch size) with which ``decoder`` decodes ``llr`` fastest."""
    timings = {}
    for threads in sorted({1, torch.get_num_threads()}):
        torch.set_num_threads(threads)
        for batch in batches:
            decoder(torch.from_numpy(llr[:batch]))  # warm-up
            timings[(threads, batch)] = _best_time(
                lambda: _sionna_decode(decoder, llr, batch), 1)[0]
    return min(timings, key=timings.get)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=512, help="codewords per timed run")
    parser.add_argument("--layered-frames", type=int, default=128,
                        help="codewords for Sionna's (slow) layered schedule")
    parser.add_argument("--sionna-batches", type=int, nargs="+", default=[64, 256],
                        help="Sionna batch sizes to try")
    parser.add_argument("--num-iter", type=int, default=20)
    parser.add_argument("--ebno-db", type=float, default=2.8)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of our decoder")
    parser.add_argument("--sionna-repeats", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from sionna.phy.fec.ldpc import LDPC5GDecoder, LDPC5GEncoder

    code = Nr5gLdpcCode(K, N)
    rng = np.random.default_rng(args.seed)
    bits = rng.integers(0, 2, (args.frames, K), dtype=np.uint8)
    llr = _bpsk_awgn_llr(code.encode(bits), args.ebno_db, code.coderate, rng)
    sionna_encoder = LDPC5GEncoder(K, N)

    sionna_threads, sionna_batch = _fastest_sionna_setting(
        LDPC5GDecoder(sionna_encoder, num_iter=args.num_iter), llr[:128], args.sionna_batches)
    torch.set_num_threads(sionna_threads)
    rows, figures = [], {}

    def record(name, seconds, decoded, frames, iterations, reference=None):
        mbps = frames * K / seconds / 1e6
        row = dict(name=name, mbps=mbps, bler=float((decoded != bits[:frames]).any(axis=1).mean()),
                   iterations=iterations, same=None, ratio=None)
        if reference is not None:
            row["same"] = float((decoded == reference["decoded"]).all(axis=1).mean())
            row["ratio"] = mbps / reference["mbps"]
        row["decoded"] = decoded
        rows.append(row)
        return row

    def ours(schedule, algorithm, early_stop, frames):
        decoder = LdpcDecoder(code, num_iter=args.num_iter, algorithm=algorithm,
                              schedule=schedule, early_stop=early_stop)
        decoder.decode(llr[:64])  # warm-up: numba compile / cache load
        seconds, result = _best_time(lambda: decoder.decode(llr[:frames]), args.repeats)
        return seconds, result.bits, float(result.iterations.mean())

    def sionna(schedule, algorithm, frames):
        decoder = LDPC5GDecoder(sionna_encoder, cn_update=algorithm, cn_schedule=schedule,
                                num_iter=args.num_iter)
        decoder(torch.from_numpy(llr[:8]))  # warm-up
        seconds, decoded = _best_time(
            lambda: _sionna_decode(decoder, llr[:frames], sionna_batch), args.sionna_repeats)
        return seconds, decoded, float(args.num_iter)

    pairings = [("flooding", "boxplus-phi", args.frames, ""),
                ("flooding", "minsum", args.frames, "_minsum"),
                ("layered", "boxplus-phi", args.layered_frames, "_layered")]
    for schedule, algorithm, frames, suffix in pairings:
        label = f"{schedule} {algorithm}"
        ref = record(f"sionna  {label}", *sionna(schedule, algorithm, frames)[:2], frames,
                     float(args.num_iter))
        full = record(f"ours    {label}", *ours(schedule, algorithm, False, frames)[:2], frames,
                      float(args.num_iter), ref)
        early_s, early_bits, early_it = ours(schedule, algorithm, True, frames)
        early = record(f"ours    {label} +early stop", early_s, early_bits, frames, early_it, ref)
        figures[f"sionna{suffix}_mbps"] = ref["mbps"]
        figures[f"decoder{suffix}_mbps"] = full["mbps"]
        figures[f"decoder{suffix}_early_stop_mbps"] = early["mbps"]
        figures[f"decoder{suffix}_vs_sionna_ratio"] = full["ratio"]
        figures[f"decoder{suffix}_early_stop_vs_sionna_ratio"] = early["ratio"]
        figures[f"decoder{suffix}_same_words_as_sionna"] = full["same"]
    flooding_ref = rows[0]
    threads = numba.get_num_threads()
    numba.set_num_threads(1)  # per-core comparison: Sionna usually runs best on one torch thread
    one = record("ours    flooding boxplus-phi, 1 thread", *ours("flooding", "boxplus-phi", False,
                                                                args.frames)[:2], args.frames,
                 float(args.num_iter), flooding_ref)
    numba.set_num_threads(threads)
    figures["decoder_1thread_mbps"] = one["mbps"]
    figures["decoder_1thread_vs_sionna_ratio"] = one["ratio"]
    for early_stop in (False, True):
        seconds, decoded, iterations = ours("layered", "normalized-minsum", early_stop, args.frames)
        row = record("ours    layered normalized-minsum" + (" +early stop" if early_stop else ""),
                     seconds, decoded, args.frames, iterations, flooding_ref)
        key = "decoder_layered_nms" + ("_early_stop" if early_stop else "")
        figures[f"{key}_mbps"] = row["mbps"]
        figures[f"{key}_vs_sionna_ratio"] = row["ratio"]

    for name, enc_code in [("encoder_80211n", Ieee80211nLdpcCode()), ("encoder_5g", code)]:
        enc_bits = np.random.default_rng(1).integers(0, 2, (4096, enc_code.k), dtype=np.uint8)
        enc_code.encode(enc_bits[:8])
        seconds, _ = _best_time(lambda: enc_code.encode(enc_bits), args.repeats)
        figures[f"{name}_mbps"] = enc_bits.size / seconds / 1e6

    print(f"5G NR LDPC k={K} n={N} (BG{1 if code.bg == 'bg1' else 2}, Z={code.z}), BPSK/AWGN "
          f"Eb/N0={args.ebno_db} dB, {args.num_iter} iterations, {args.frames} frames "
          f"({args.layered_frames} for layered), {numba.get_num_threads()} numba threads; Sionna: "
          f"{sionna_threads} torch threads, batch {sionna_batch} (fastest tried)")
    print("Sionna has no per-codeword early stop: it always runs all iterations. Ratios compare "
          "with Sionna at the same schedule and check-node rule (normalized-minsum: with Sionna "
          "flooding boxplus-phi).")
    header = (f"{'decoder':45s} {'Mbit/s':>8s} {'x Sionna':>9s} {'BLER':>7s} {'mean it':>8s} "
              f"{'same words':>10s}")
    print(header)
    print("-" * len(header))
    for row in rows:
        ratio = f"{row['ratio']:9.1f}" if row["ratio"] is not None else f"{'':9s}"
        same = f"{row['same']:10.3f}" if row["same"] is not None else f"{'':10s}"
        print(f"{row['name']:45s} {row['mbps']:8.3f} {ratio} {row['bler']:7.3f} "
              f"{row['iterations']:8.2f} {same}")
    print(f"encoder throughput (Mbit/s of information bits): 802.11n "
          f"{figures['encoder_80211n_mbps']:.1f}, 5G {figures['encoder_5g_mbps']:.1f}")
    summary = dict(code=f"5G NR k={K} n={N} {code.bg} Z={code.z}", frames=args.frames,
                   layered_frames=args.layered_frames, num_iter=args.num_iter,
                   ebno_db=args.ebno_db, threads=numba.get_num_threads(),
                   sionna_torch_threads=sionna_threads, sionna_batch=sionna_batch,
                   **{key: round(value, 4) for key, value in figures.items()})
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
