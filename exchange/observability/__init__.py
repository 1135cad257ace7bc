"""How the exchange reports on itself while it runs: one JSON object per log line
(:mod:`exchange.observability.log_format`, structlog) and, for every HTTP request,
a request id, a log line and the request metrics
(:mod:`exchange.observability.requests`)."""
