"""Webhooks: the event feed POSTed to participants' URLs, signed by the exchange."""
