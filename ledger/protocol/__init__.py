"""Response shapes of the exchange's API that the server emits and the SDK parses,
defined once: frozen dataclasses with a strict ``from_dict``.

Parsing is strict about what a client relies on (a missing field or a wrong
type raises :class:`ledger.records.RecordFormatError` naming the field's path)
and ignores fields it does not know, so a server that adds a field does not
break older clients. The exchange uses the same classes as its response
models, so the OpenAPI document describes exactly what the SDK reads.
"""
