"""What the exchange measures, in Prometheus' terms (prometheus-client).

* :mod:`exchange.metrics.instruments`: counters and histograms counted in memory by
  each process (requests, latencies, the appender's batches); under several worker
  processes prometheus-client's multiprocess mode keeps them in files that
  ``/metrics`` sums.
* :mod:`exchange.metrics.figures`: what lives in the database (log size, sequencer
  lag, anchors, pending work), read at scrape time, so every worker answers the same.
* :mod:`exchange.metrics.collector`: those figures as metric families.
* :mod:`exchange.metrics.exposition`: the registry ``/metrics`` renders and the
  operator page reads, and the multiprocess directory ``serve`` prepares.
"""
