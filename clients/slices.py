"""Slices of a dataset: rows ``[offset, offset + count)`` with their range proof, and the check.

The provider cuts a slice with :func:`write_slice`; the buyer checks what it
received with :func:`verify_slice` against the row root and row count the
provider signed for the listing version (:class:`clients.datasets.DatasetDescription`
``row_root``/``row_count``). The check re-derives each row's bytes from the
received file (:mod:`ledger.row_leaves`) and verifies the range proof
(:func:`ledger.merkle.verify_range`), so it passes only for exactly rows
``[offset, offset + count)`` of the registered dataset, in order — not some
rows with a matching count.

The slice file, per format:

* **CSV / TSV**: the dataset's bytes up to the end of its header record (a
  BOM and the header line, byte-identical), then the dataset's bytes from the
  first byte of row ``offset`` to the end of row ``offset + count - 1``'s line
  terminator: the rows' raw records, byte-identical (blank lines between them,
  which are not rows, stay as they were). Two byte-range copies: the slice is
  never parsed row by row.
* **JSON Lines**: the bytes from row ``offset``'s first byte to the end of row
  ``offset + count - 1``'s line (no BOM).
* **Parquet**: a Parquet file of those rows with the dataset's Arrow schema:
  the buyer gets typed columns, and each row reads back to the same values,
  hence the same canonical row bytes.

With the dataset's row index (``describe_file(..., row_index=...)``, see
:mod:`ledger.row_tree`) a slice reads the index's O(log n) stored nodes, seeks
to the blocks holding its first and last rows and hashes only the rows of
those two blocks outside the slice. Without one, :func:`write_slice` first
builds a temporary index in a full pass.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final, Literal

from clients.datasets import (
    DatasetError,
    describe_file,
    detect_format,
    parquet_batches,
    read_parquet_rows,
    read_text_rows,
)
from ledger.errors import VerificationError
from ledger.merkle import (
    HashSizeError,
    InvalidProofError,
    LeafCountError,
    RangeError,
    RootMismatchError,
    verify_range,
)
from ledger.row_tree import (
    ROW_HASHER,
    RowIndex,
    RowIndexError,
    edge_ranges,
    row_leaf_hash,
    row_range_proof,
)

__all__ = [
    "SLICE_CHECKS",
    "TEXT_FORMATS",
    "SliceCheck",
    "SliceCheckError",
    "SliceProof",
    "SliceReader",
    "open_text_slice",
    "verify_slice",
    "write_slice",
]

SliceCheck = Literal["range", "format", "row_count", "proof", "row_root"]
SLICE_CHECKS: Final[tuple[SliceCheck, ...]] = ("range", "format", "row_count", "proof", "row_root")
"""The checks of :func:`verify_slice`, in the order it makes them:

* ``range``: ``[offset, offset + count)`` is a non-empty range inside the dataset;
* ``proof``: the proof has the number of 32-byte nodes such a range needs;
* ``format``: the file parses as its format (for CSV, a header then records of
  its width);
* ``row_count``: it holds exactly ``count`` rows;
* ``row_root``: its rows, hashed in order with the proof, give the dataset's row
  root — they are rows ``[offset, offset + count)`` of the registered dataset.
"""

_COPY_CHUNK: Final = 1 << 20


class SliceCheckError(VerificationError):
    """A received slice failed :func:`verify_slice`; ``check`` names the check
    (one of :data:`SLICE_CHECKS`); the underlying error, if any, is the cause."""

    def __init__(self, check: SliceCheck, message: str) -> None:
        self.check = check
        super().__init__(f"slice check {check!r} failed: {message}")


@dataclass(frozen=True, slots=True)
class SliceProof:
    """What a delivery carries beside the slice file: the range, the dataset's size
    and row root the proof is against, and the range proof (node hashes, in the
    order of :func:`ledger.merkle.range_plan`)."""

    offset: int
    count: int
    tree_size: int
    row_root: bytes
    proof: tuple[bytes, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "offset": self.offset,
            "count": self.count,
            "tree_size": self.tree_size,
            "row_root": self.row_root.hex(),
            "proof": [node.hex() for node in self.proof],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SliceProof:
        """Parse :meth:`to_dict`'s form; ``ValueError`` for anything else."""
        try:
            offset, count, size = data["offset"], data["count"], data["tree_size"]
            root, proof = data["row_root"], data["proof"]
        except (KeyError, TypeError):
            raise ValueError(
                "a slice proof has offset, count, tree_size, row_root, proof"
            ) from None
        if not all(type(v) is int and v >= 0 for v in (offset, count, size)):
            raise ValueError("offset, count and tree_size are non-negative integers")
        if not isinstance(root, str) or not isinstance(proof, list):
            raise ValueError("row_root is hex text and proof a list of hex text")
        if not all(isinstance(node, str) for node in proof):
            raise ValueError("proof nodes are hex text")
        return cls(offset, count, size, bytes.fromhex(root), tuple(bytes.fromhex(n) for n in proof))

    def verify(
        self, slice_path: str | Path, *, format: str | None = None, encoding: str = "utf-8"
    ) -> None:
        """:func:`verify_slice` of ``slice_path`` with this proof's own fields. Only
        meaningful when ``row_root`` and ``tree_size`` are the signed ones."""
        verify_slice(
            slice_path,
            self.offset,
            self.count,
            self.tree_size,
            self.row_root,
            self.proof,
            format=format,
            encoding=encoding,
        )


def _format_of(path: Path, format: str | None) -> str:
    chosen = detect_format(path) if format is None else format
    if chosen not in ("csv", "tsv", "jsonl", "parquet"):
        raise DatasetError(f"format {chosen!r} has no rows to slice")
    return chosen


# --------------------------------------------------------------------------- buyer


def _row_leaves(path: Path, format: str, encoding: str) -> Iterator[bytes]:
    if format == "parquet":
        import pyarrow.parquet as pq  # type: ignore[import-untyped, unused-ignore]

        try:
            parquet = pq.ParquetFile(path)
        except Exception as exc:
            raise DatasetError(f"not a Parquet file: {exc}") from None
        try:
            for _, row in read_parquet_rows(parquet, 0, parquet.metadata.num_rows):
                yield row_leaf_hash(row)
        finally:
            parquet.close()
        return
    with open(path, "rb") as handle:
        for _, _, row in read_text_rows(handle, format, encoding=encoding):
            yield row_leaf_hash(row)


def verify_slice(
    slice_path: str | Path,
    offset: int,
    count: int,
    tree_size: int,
    row_root: bytes,
    proof: Sequence[bytes],
    *,
    format: str | None = None,
    encoding: str = "utf-8",
) -> None:
    """Check that the file ``slice_path`` holds exactly rows ``[offset, offset +
    count)`` of the dataset of ``tree_size`` rows whose row root is ``row_root``.

    Take ``tree_size`` and ``row_root`` from the provider-signed listing version
    and ``offset``/``count`` from the order, never from the delivery. Reads the
    file once, as a stream. Returns ``None``, or raises :class:`SliceCheckError`
    whose ``check`` names the first check that failed (:data:`SLICE_CHECKS`).
    """
    path = Path(slice_path)
    end = offset + count
    if not 0 <= offset < end <= tree_size:
        raise SliceCheckError(
            "range",
            f"rows [{offset}, {end}) are not a non-empty range of a dataset of {tree_size} rows",
        )
    if len(row_root) != ROW_HASHER.digest_size:
        raise SliceCheckError("row_root", f"a row root is 32 bytes, not {len(row_root)}")
    try:
        chosen = _format_of(path, format)
    except DatasetError as exc:
        raise SliceCheckError("format", str(exc)) from exc
    try:
        verify_range(
            offset,
            end,
            tree_size,
            _row_leaves(path, chosen, encoding),
            proof,
            row_root,
            hasher=ROW_HASHER,
        )
    except (InvalidProofError, HashSizeError) as exc:
        raise SliceCheckError("proof", str(exc)) from exc
    except DatasetError as exc:
        raise SliceCheckError("format", f"{path.name}: {exc}") from exc
    except LeafCountError as exc:
        raise SliceCheckError(
            "row_count", f"the slice has {exc.actual} rows, rows [{offset}, {end}) are {count}"
        ) from exc
    except RootMismatchError as exc:
        raise SliceCheckError(
            "row_root",
            f"the rows are not rows [{offset}, {end}) of the dataset with row root "
            f"{row_root.hex()} (with this proof they hash to {exc.calculated.hex()})",
        ) from exc
    except RangeError as exc:  # pragma: no cover - checked above
        raise SliceCheckError("range", str(exc)) from exc


# --------------------------------------------------------------------------- provider


@contextlib.contextmanager
def _output(target: Path) -> Iterator[Path]:
    """A temporary path beside ``target`` that replaces it when the block succeeds."""
    fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(fd)
    try:
        yield Path(temporary)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def _copy_range(source: IO[bytes], out: IO[bytes], start: int, stop: int) -> None:
    source.seek(start)
    left = stop - start
    while left > 0:
        chunk = source.read(min(left, _COPY_CHUNK))
        if not chunk:
            raise DatasetError("the dataset is shorter than its row index says")
        out.write(chunk)
        left -= len(chunk)


def _text_rows_from(
    path: Path, format: str, encoding: str, position: int
) -> Generator[tuple[int, int, bytes]]:
    """Rows of a text dataset from byte ``position``, where a row starts."""
    plain = "utf-8" if encoding.replace("_", "-").lower() in ("utf-8", "utf8") else encoding
    with open(path, "rb") as handle:
        handle.seek(position)
        yield from read_text_rows(handle, format, encoding=plain, position=position, header=False)


def _text_ranges(
    dataset: Path,
    index: RowIndex,
    format: str,
    encoding: str,
    begin: int,
    end: int,
    edges: dict[int, bytes],
) -> tuple[tuple[int, int], tuple[int, int]]:
    """The two byte ranges of a text slice (the header; rows ``[begin, end)``), hashing
    the rows of the two edge blocks outside the slice into ``edges``."""
    (left_lo, _), (right_lo, right_hi) = edge_ranges(begin, end, index.tree_size, index.block_level)
    slice_start = slice_end = -1
    rows = _text_rows_from(
        dataset, format, encoding, index.block_offset(begin >> index.block_level)
    )
    for number, (start, _, row) in enumerate(rows, start=left_lo):
        if number == begin:
            slice_start = start
            break
        edges[number] = row_leaf_hash(row)
    rows.close()
    last_block = (end - 1) >> index.block_level
    rows = _text_rows_from(dataset, format, encoding, index.block_offset(last_block))
    for number, (_, stop, row) in enumerate(rows, start=last_block << index.block_level):
        if number == end - 1:
            slice_end = stop
        elif number >= right_lo:
            edges[number] = row_leaf_hash(row)
        if number + 1 >= max(right_hi, end):
            break
    rows.close()
    if slice_start < 0 or slice_end < 0:
        raise DatasetError("the dataset has fewer rows than its row index says")
    return (0, index.header_end), (slice_start, slice_end)


def _cut_text(
    dataset: Path,
    out: Path,
    index: RowIndex,
    format: str,
    encoding: str,
    begin: int,
    end: int,
    edges: dict[int, bytes],
) -> None:
    ranges = _text_ranges(dataset, index, format, encoding, begin, end, edges)
    with open(dataset, "rb") as source, open(out, "wb") as sink:
        for start, stop in ranges:
            _copy_range(source, sink, start, stop)


class SliceReader:
    """The bytes of a text slice as one read-only stream (``read(size)``), straight from
    the dataset's byte ranges: no copy of the slice is written anywhere."""

    def __init__(self, source: IO[bytes], ranges: Sequence[tuple[int, int]]) -> None:
        self._source = source
        self._ranges = list(ranges)
        self._position = self._ranges[0][0] if self._ranges else 0
        if self._ranges:
            source.seek(self._position)

    def read(self, size: int = -1) -> bytes:
        parts: list[bytes] = []
        wanted = size if size >= 0 else None
        while self._ranges and (wanted is None or wanted > 0):
            stop = self._ranges[0][1]
            left = stop - self._position
            if left <= 0:
                self._ranges.pop(0)
                if self._ranges:
                    self._position = self._ranges[0][0]
                    self._source.seek(self._position)
                continue
            take = left if wanted is None else min(left, wanted)
            chunk = self._source.read(take)
            if not chunk:
                raise DatasetError("the dataset is shorter than its row index says")
            parts.append(chunk)
            self._position += len(chunk)
            if wanted is not None:
                wanted -= len(chunk)
        return b"".join(parts)


def _cut_parquet(
    dataset: Path, out: Path, index: RowIndex, begin: int, end: int, edges: dict[int, bytes]
) -> None:
    import pyarrow.parquet as pq  # type: ignore[import-untyped, unused-ignore]

    (left_lo, _), (right_lo, right_hi) = edge_ranges(begin, end, index.tree_size, index.block_level)
    parquet = pq.ParquetFile(dataset)
    try:
        if parquet.metadata.num_rows != index.tree_size:
            raise RowIndexError(
                f"the row index is of {index.tree_size} rows, {dataset.name} has "
                f"{parquet.metadata.num_rows}"
            )
        for number, (_, row) in enumerate(read_parquet_rows(parquet, left_lo, begin), left_lo):
            edges[number] = row_leaf_hash(row)
        for number, (_, row) in enumerate(read_parquet_rows(parquet, right_lo, right_hi), right_lo):
            edges[number] = row_leaf_hash(row)
        with pq.ParquetWriter(out, parquet.schema_arrow) as writer:
            for batch in parquet_batches(parquet, begin, end):
                writer.write_batch(batch)
    finally:
        parquet.close()


def write_slice(
    dataset: str | Path,
    out: str | Path,
    offset: int,
    count: int,
    *,
    index: str | Path | None = None,
    format: str | None = None,
    encoding: str = "utf-8",
    self_check: bool = True,
) -> SliceProof:
    """Write rows ``[offset, offset + count)`` of ``dataset`` to ``out`` (see the
    module doc for the file) and return their :class:`SliceProof`.

    ``index`` is the dataset's row index; without one a temporary one is built
    first (a full pass). With ``self_check`` the written slice is verified
    against the index's row root before it replaces ``out`` (a full parse of
    the slice; the check a buyer will make, so a provider never hands out one
    that fails). Nothing is left at ``out`` on failure. The caller compares
    the proof's ``row_root`` and ``tree_size`` with the signed listing version.

    Raises :class:`ledger.merkle.RangeError` for a range outside the dataset,
    :class:`ledger.row_tree.RowIndexError` for an index of another file,
    :class:`clients.datasets.DatasetError` for a file without rows or not as
    described, :class:`SliceCheckError` when the self check fails.
    """
    dataset, out = Path(dataset), Path(out)
    chosen = _format_of(dataset, format)
    if index is None:
        with tempfile.TemporaryDirectory(prefix="shancheng-rows-") as scratch:
            built = Path(scratch) / "rows.idx"
            describe_file(dataset, format=chosen, encoding=encoding, sample_rows=0, row_index=built)
            if not built.exists():
                raise DatasetError(
                    f"{dataset.name} has no row tree (its encoding is not ASCII-compatible)"
                )
            return write_slice(
                dataset,
                out,
                offset,
                count,
                index=built,
                format=chosen,
                encoding=encoding,
                self_check=self_check,
            )
    begin, end = offset, offset + count
    with RowIndex(index) as rows:
        if not 0 <= begin < end <= rows.tree_size:
            raise RangeError(begin, end, rows.tree_size)
        size = dataset.stat().st_size
        if size != rows.data_size:
            raise RowIndexError(
                f"the row index is of a {rows.data_size}-byte file, {dataset.name} has {size} bytes"
            )
        edges: dict[int, bytes] = {}
        with _output(out) as temporary:
            if chosen == "parquet":
                _cut_parquet(dataset, temporary, rows, begin, end, edges)
            else:
                _cut_text(dataset, temporary, rows, chosen, encoding, begin, end, edges)
            proof = SliceProof(
                offset,
                count,
                rows.tree_size,
                rows.root,
                tuple(row_range_proof(rows, begin, end, edges)),
            )
            if self_check:
                proof.verify(temporary, format=chosen, encoding=encoding)
    return proof


TEXT_FORMATS: Final = frozenset({"csv", "tsv", "jsonl"})


@contextlib.contextmanager
def open_text_slice(
    dataset: str | Path,
    offset: int,
    count: int,
    *,
    index: str | Path,
    format: str | None = None,
    encoding: str = "utf-8",
) -> Iterator[tuple[SliceReader, SliceProof]]:
    """Rows ``[offset, offset + count)`` of a CSV/TSV/JSON Lines ``dataset`` as a stream
    (the bytes :func:`write_slice` would write, read from the dataset where they are)
    and their :class:`SliceProof` from the row ``index``: for a provider that encrypts
    the slice as it reads it. Never checks the slice itself (that is a full parse); the
    caller makes sure the file is the one ``index`` describes. Raises as
    :func:`write_slice`, and :class:`clients.datasets.DatasetError` for Parquet."""
    dataset = Path(dataset)
    chosen = _format_of(dataset, format)
    if chosen not in TEXT_FORMATS:
        raise DatasetError(f"{chosen} slices are written, not streamed: use write_slice")
    begin, end = offset, offset + count
    with RowIndex(index) as rows, open(dataset, "rb") as source:
        if not 0 <= begin < end <= rows.tree_size:
            raise RangeError(begin, end, rows.tree_size)
        if os.fstat(source.fileno()).st_size != rows.data_size:
            raise RowIndexError(
                f"the row index is of a {rows.data_size}-byte file, {dataset.name} is not"
            )
        edges: dict[int, bytes] = {}
        ranges = _text_ranges(dataset, rows, chosen, encoding, begin, end, edges)
        proof = SliceProof(
            offset,
            count,
            rows.tree_size,
            rows.root,
            tuple(row_range_proof(rows, begin, end, edges)),
        )
        yield SliceReader(source, ranges), proof
