"""Streaming SigMF recording of complex channel symbols (``cf32_le``).

``SigMFWriter`` appends batches of complex64 symbols to a dataset file and writes the metadata, built
and schema-validated with the ``sigmf`` package, when it is closed. Both files are written under
temporary names in the target directory and moved into place with ``os.replace`` only at ``close()``:
the dataset first, the metadata last, so a ``.sigmf-meta`` exists only beside a complete dataset. A
crash, or an exception inside a ``with`` block, leaves no ``.sigmf-data`` / ``.sigmf-meta`` behind.

Example::

    with SigMFWriter("run/awgn_10db", sample_rate=1.0, description="16-QAM over AWGN") as writer:
        for x in batches:
            writer.write(x, label="batch")    # or label=[...] with one label per item (row of x)
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from jsonschema import ValidationError
from sigmf import SigMFFile, keys
from sigmf.error import SigMFError
from sigmf.sigmffile import get_sigmf_filenames

import sdjscc_phy
from sdjscc_phy.errors import DataError, ParameterError
from sdjscc_phy.lazy import lazy_import

torch = lazy_import("torch")

DATATYPE = "cf32_le"
_SAMPLE_DTYPE = np.dtype("<c8")


class SigMFWriter:
    """Write complex symbols to ``<path>.sigmf-data`` and ``<path>.sigmf-meta``.

    Args:
        path: Recording base name; a ``.sigmf-data`` / ``.sigmf-meta`` suffix is accepted and ignored.
        sample_rate: ``core:sample_rate`` in Hz (symbols per second); 1.0 means one sample per symbol
            with no physical time scale.
        description: ``core:description``.
        author: ``core:author``.
        global_fields: Further global fields, e.g. ``{"core:hw": "simulated"}``; a non-core namespace
            must be declared in ``core:extensions``.
        overwrite: Replace an existing recording of the same name; otherwise that is a ParameterError.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        sample_rate: float = 1.0,
        description: str | None = None,
        author: str | None = None,
        global_fields: Mapping[str, Any] | None = None,
        overwrite: bool = False,
    ) -> None:
        names = get_sigmf_filenames(path)
        self.data_path: Path = names["data_fn"]
        self.meta_path: Path = names["meta_fn"]
        is_number = isinstance(sample_rate, (int, float)) and not isinstance(sample_rate, bool)
        if not (is_number and 0 < sample_rate < float("inf")):
            raise ParameterError(f"`sample_rate` must be a finite number of Hz > 0; got {sample_rate!r}")
        if not self.data_path.parent.is_dir():
            raise ParameterError(f"`path` {str(path)!r}: directory {str(self.data_path.parent)!r} does not exist")
        if not overwrite:
            existing = [str(p) for p in (self.data_path, self.meta_path) if p.exists()]
            if existing:
                raise ParameterError(f"`path` {str(path)!r}: {', '.join(existing)} already exists; pass overwrite=True")

        self._global: dict[str, Any] = {
            keys.DATATYPE_KEY: DATATYPE,
            keys.SAMPLE_RATE_KEY: float(sample_rate),
            keys.RECORDER_KEY: f"jsccflow {sdjscc_phy.__version__}",
        }
        if description is not None:
            self._global[keys.DESCRIPTION_KEY] = description
        if author is not None:
            self._global[keys.AUTHOR_KEY] = author
        self._global.update(global_fields or {})
        self._annotations: list[tuple[int, int, dict[str, Any]]] = []
        self._sample_count = 0
        self._sha512 = hashlib.sha512()
        self._metadata()  # fail now, not after a long run, if the global fields are invalid

        fd, tmp = tempfile.mkstemp(dir=self.data_path.parent, prefix=f".{self.data_path.name}.", suffix=".tmp")
        self._data_tmp = Path(tmp)
        self._data_file = os.fdopen(fd, "wb")
        self.closed = False

    @property
    def sample_count(self) -> int:
        """Number of complex samples written so far."""
        return self._sample_count

    def write(self, symbols, label: str | Sequence[str] | None = None) -> None:
        """Append ``symbols`` (complex tensor or array of any shape, flattened in C order) as cf32_le.

        complex128 input is rounded to complex64. ``label`` adds annotations: a string annotates the
        whole batch; a sequence of N strings annotates each item, the rows ``symbols[i]`` of an
        ``(N, ...)`` batch.
        """
        self._check_open()
        if isinstance(symbols, torch.Tensor):
            symbols = symbols.detach().cpu().resolve_conj().numpy()
        symbols = np.asarray(symbols)
        if not np.iscomplexobj(symbols):
            raise DataError(f"`symbols` must be complex (complex64); got {symbols.dtype}")
        samples = np.ascontiguousarray(symbols, dtype=_SAMPLE_DTYPE).reshape(-1)

        start = self._sample_count
        if label is not None:
            if isinstance(label, str):
                spans = [(start, samples.size, label)]
            else:
                labels = list(label)
                if symbols.ndim == 0 or len(labels) != symbols.shape[0]:
                    raise DataError(
                        f"`label` must be one string or one per item ({symbols.shape[0] if symbols.ndim else 0}); "
                        f"got {len(labels)}"
                    )
                per_item = samples.size // len(labels) if labels else 0
                spans = [(start + i * per_item, per_item, text) for i, text in enumerate(labels)]
            for _, _, text in spans:
                if not isinstance(text, str):
                    raise DataError(f"annotation labels must be strings; got {text!r}")
        else:
            spans = []

        data = samples.tobytes()
        self._data_file.write(data)
        self._sha512.update(data)
        self._sample_count += samples.size
        self._annotations += [(s, n, {keys.LABEL_KEY: text}) for s, n, text in spans if n > 0]

    def annotate(self, sample_start: int, sample_count: int, label: str | None = None, **fields: Any) -> None:
        """Add an annotation over ``[sample_start, sample_start + sample_count)``; ``fields`` are further
        annotation keys, e.g. ``**{"core:comment": "..."}``."""
        self._check_open()
        if not all(isinstance(v, int) and v >= 0 for v in (sample_start, sample_count)):
            raise ParameterError(
                f"`sample_start` and `sample_count` must be integers >= 0; got {sample_start!r}, {sample_count!r}"
            )
        annotation = dict(fields)
        if label is not None:
            annotation[keys.LABEL_KEY] = label
        self._annotations.append((sample_start, sample_count, annotation))

    def close(self) -> tuple[Path, Path]:
        """Finish the dataset, write the validated metadata and move both into place.

        Returns ``(meta_path, data_path)``. Calling it again returns the same paths.
        """
        if self.closed:
            return self.meta_path, self.data_path
        meta_tmp = None
        try:
            self._data_file.flush()
            os.fsync(self._data_file.fileno())
            self._data_file.close()
            metadata = self._metadata(sha512=self._sha512.hexdigest())
            fd, tmp = tempfile.mkstemp(dir=self.meta_path.parent, prefix=f".{self.meta_path.name}.", suffix=".tmp")
            meta_tmp = Path(tmp)
            with os.fdopen(fd, "w") as handle:
                metadata.dump(handle, pretty=True)
                handle.write("\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(self._data_tmp, self.data_path)
            os.replace(meta_tmp, self.meta_path)
        except BaseException:
            self.abort()
            if meta_tmp is not None:
                meta_tmp.unlink(missing_ok=True)
            raise
        self.closed = True
        return self.meta_path, self.data_path

    def abort(self) -> None:
        """Discard the recording: close and delete the temporary dataset; nothing is written."""
        if not self._data_file.closed:
            self._data_file.close()
        self._data_tmp.unlink(missing_ok=True)
        self.closed = True

    def __enter__(self) -> SigMFWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        elif not self.closed:
            self.abort()

    def _check_open(self) -> None:
        if self.closed:
            raise DataError(f"SigMF recording {str(self.data_path)!r} is already closed")

    def _metadata(self, sha512: str | None = None) -> SigMFFile:
        """Build and schema-validate the metadata: global fields, one capture at sample 0, annotations."""
        meta = SigMFFile(global_info=dict(self._global))
        if sha512 is not None:
            meta.set_global_field(keys.SHA512_KEY, sha512)
        meta.add_capture(0)
        for start, count, fields in self._annotations:
            meta.add_annotation(start, count, metadata=dict(fields))
        try:
            meta.validate()
        except (SigMFError, ValidationError) as error:
            message = f"SigMF metadata for {str(self.meta_path)!r} is invalid: {_first_line(error)}"
            raise ParameterError(message) from None
        return meta


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
