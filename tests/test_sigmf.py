"""SigMF writer: bit-exact round trip through the sigmf package, valid metadata, atomic files."""

import numpy as np
import pytest
import torch
from sigmf import SigMFFile, __specification__
from sigmf.sigmffile import fromfile

from sdjscc_phy.errors import DataError, ParameterError
from sdjscc_phy.io import SigMFWriter


def random_symbols(rng, shape):
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


def test_round_trip_is_bit_exact_with_valid_metadata(tmp_path):
    rng = np.random.default_rng(7)
    batches = [random_symbols(rng, (4, 16)), random_symbols(rng, (3, 16)), random_symbols(rng, (2, 5))]
    base = tmp_path / "awgn"
    with SigMFWriter(base, sample_rate=2.0, description="16-QAM over AWGN", author="jsccflow tests") as writer:
        writer.write(torch.from_numpy(batches[0]), label=["cat", "dog", "cat", "ship"])  # one per item
        writer.write(batches[1], label="batch 1")  # one for the batch
        writer.write(batches[2])
        assert writer.sample_count == 64 + 48 + 10
        assert not base.with_suffix(".sigmf-data").exists()  # nothing final before close
    expected = np.concatenate([b.ravel() for b in batches])

    recording = fromfile(base)  # verifies core:sha512 against the data
    recording.validate()
    samples = recording.read_samples()
    assert samples.dtype == np.complex64
    assert samples.tobytes() == expected.astype("<c8").tobytes()
    assert (tmp_path / "awgn.sigmf-data").read_bytes() == expected.astype("<c8").tobytes()

    info = recording.get_global_info()
    assert info["core:datatype"] == "cf32_le"
    assert info["core:sample_rate"] == 2.0
    assert info["core:version"] == __specification__
    assert info["core:description"] == "16-QAM over AWGN" and info["core:author"] == "jsccflow tests"
    assert info["core:recorder"].startswith("jsccflow ")
    assert [c["core:sample_start"] for c in recording.get_captures()] == [0]
    spans = [(a["core:sample_start"], a["core:sample_count"], a["core:label"]) for a in recording.get_annotations()]
    assert spans == [(0, 16, "cat"), (16, 16, "dog"), (32, 16, "cat"), (48, 16, "ship"), (64, 48, "batch 1")]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["awgn.sigmf-data", "awgn.sigmf-meta"]


def test_an_exception_leaves_nothing_behind(tmp_path):
    with pytest.raises(RuntimeError, match="simulated crash"):
        with SigMFWriter(tmp_path / "crash") as writer:
            writer.write(np.ones(8, np.complex64))
            raise RuntimeError("simulated crash")
    assert list(tmp_path.iterdir()) == []


def test_existing_recording_needs_overwrite(tmp_path):
    for value in (1, 2):
        with SigMFWriter(tmp_path / "rec.sigmf-meta", overwrite=value == 2) as writer:
            writer.write(np.full(4, value, np.complex64))
    with pytest.raises(ParameterError, match="already exists; pass overwrite=True"):
        SigMFWriter(tmp_path / "rec")
    assert np.array_equal(fromfile(tmp_path / "rec").read_samples(), np.full(4, 2, np.complex64))


def test_complex128_is_rounded_and_real_input_rejected(tmp_path):
    x = np.exp(1j * np.linspace(0, 1, 5))
    with SigMFWriter(tmp_path / "c128") as writer:
        writer.write(x)
        with pytest.raises(DataError, match="complex"):
            writer.write(np.ones(3, np.float32))
        with pytest.raises(DataError, match="one per item"):
            writer.write(random_symbols(np.random.default_rng(0), (2, 3)), label=["only one"])
    assert np.array_equal(fromfile(tmp_path / "c128").read_samples(), x.astype(np.complex64))


def test_invalid_metadata_fails_at_open_and_closed_writer_refuses_writes(tmp_path):
    with pytest.raises(ParameterError, match="invalid"):
        SigMFWriter(tmp_path / "bad", global_fields={"core:num_channels": "one"})
    with pytest.raises(ParameterError, match="sample_rate"):
        SigMFWriter(tmp_path / "bad", sample_rate=0)
    assert list(tmp_path.iterdir()) == []
    writer = SigMFWriter(tmp_path / "done")
    writer.close()
    with pytest.raises(DataError, match="closed"):
        writer.write(np.ones(1, np.complex64))
    # an empty recording is still a valid pair (sigmf-python cannot memory-map an empty dataset, so no fromfile)
    assert (tmp_path / "done.sigmf-data").read_bytes() == b""
    SigMFFile(metadata=(tmp_path / "done.sigmf-meta").read_text()).validate()
