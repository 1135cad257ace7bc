"""The event feed: events derived from the log and from final anchors (docs/events.md)."""
