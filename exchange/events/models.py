"""The event feed's one table: anchor finality, placed in the log's order.

Events are derived from the log (one per log entry of an event type, its id the
entry's index) and from :class:`AnchorEvent` rows. An anchor becomes final long
after the entries it covers were logged, so its event cannot sit at a log index
of its own; instead it is *recorded* once, with the ``slot`` it takes in the
feed: right after the log entry that was last when it was recorded (see
:mod:`exchange.events.anchors`, which records under the log's append lock so
that no entry can be committed at or before that slot afterwards). A reader that
has passed a slot therefore never finds an event appear behind it.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Integer
from sqlmodel import Field, SQLModel

_KEY = BigInteger().with_variant(Integer(), "sqlite")


class AnchorEvent(SQLModel, table=True):
    """``anchor.final``: the log's entries [``from_size``, ``tree_size``) are now covered
    by a final anchor (and so is everything before ``from_size``, by earlier ones)."""

    __tablename__ = "event_anchor"

    tree_size: int = Field(
        sa_type=_KEY, primary_key=True, sa_column_kwargs={"autoincrement": False}
    )
    slot: int = Field(sa_type=BigInteger, index=True)
    """The index of the log's last entry when this was recorded: the event follows it."""
    from_size: int = Field(sa_type=BigInteger)
    """The tree size of the previous recorded anchor event (0 for the first)."""
    root: str = Field(max_length=64)
    chain_id: int = Field(sa_type=BigInteger)
    registry_address: str = Field(max_length=64)
    tx_hash: str | None = Field(default=None, max_length=80)
    block_number: int | None = Field(default=None, sa_type=BigInteger)
    recorded_at: int = Field(sa_type=BigInteger)
    """Milliseconds since the epoch."""


event_anchor_table = SQLModel.metadata.tables["event_anchor"]
