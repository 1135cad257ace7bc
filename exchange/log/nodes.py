"""The tree's node store: the ``tree_node`` table as a :class:`ledger.merkle.NodeReader`.

Every perfect subtree completed by the sequencer is one row ``(level, index,
hash)`` (see :class:`ledger.merkle.CompactRange`), 2n rows for n leaves. A
proof needs O(log n) of them, fetched in one query of primary-key
equalities: a proof at 10 million leaves costs a few dozen index probes,
never a rebuild.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence

from sqlalchemy import TextClause, text
from sqlmodel import Session

from ledger.merkle import CompactRange, Node, NodeID, NodeNotFoundError, range_nodes

__all__ = ["StoredTree", "load_compact_range", "save_nodes"]


class StoredTree:
    """Read access to stored nodes through one session (a ``NodeReader``)."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def get_nodes(self, ids: Sequence[NodeID]) -> list[bytes]:
        """The hashes of ``ids``, in order; one query. Raises ``NodeNotFoundError``."""
        if not ids:
            return []
        wanted = sorted({(node.level, node.index) for node in ids})
        params: dict[str, int] = {}
        for i, (level, index) in enumerate(wanted):
            params[f"l{i}"] = level
            params[f"i{i}"] = index
        rows = self._session.connection().execute(_lookup(len(wanted)), params)
        found: dict[tuple[int, int], bytes] = {
            (level, index): digest for level, index, digest in rows
        }
        hashes: list[bytes] = []
        for node in ids:
            value = found.get((node.level, node.index))
            if value is None:
                raise NodeNotFoundError(node)
            hashes.append(value)
        return hashes


_INSERT_QMARK = 'INSERT INTO tree_node (level, "index", hash) VALUES (?, ?, ?)'
_INSERT_FORMAT = 'INSERT INTO tree_node (level, "index", hash) VALUES (%s, %s, %s)'


@functools.lru_cache(maxsize=128)
def _lookup(count: int) -> TextClause:
    """``SELECT`` of ``count`` nodes by primary key, as an OR of equalities: SQLite
    (MULTI-INDEX OR) and PostgreSQL (BitmapOr) answer it with one index probe per
    node, where SQLite would scan the table for a row-value ``IN`` list. Textual
    and cached per size: building the expression would cost more than the query."""
    terms = " OR ".join(f'(level = :l{i} AND "index" = :i{i})' for i in range(count))
    return text(f'SELECT level, "index", hash FROM tree_node WHERE {terms}')  # noqa: S608


def load_compact_range(session: Session, size: int) -> CompactRange:
    """The right edge of the stored tree of ``size`` leaves, to append to."""
    ids = range_nodes(0, size)
    return CompactRange.from_nodes(size, StoredTree(session).get_nodes(ids))


def save_nodes(session: Session, nodes: Iterable[Node]) -> int:
    """Insert completed nodes (one executemany); return how many."""
    rows = [(n.level, n.index, n.hash) for n in nodes]
    if rows:
        # Straight to the driver's executemany: SQLAlchemy's per-row parameter
        # processing would cost more than the hashing that produced the nodes.
        connection = session.connection()
        sql = _INSERT_QMARK if connection.dialect.paramstyle == "qmark" else _INSERT_FORMAT
        connection.exec_driver_sql(sql, rows)
    return len(rows)
