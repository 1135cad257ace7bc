"""The operator page's figures: what ``/metrics`` exposes, read from the same
registry (:class:`exchange.metrics.exposition.Metrics`), not scraped, and put in
words. Each figure's ``name`` is the metric family it comes from."""

from __future__ import annotations

from collections.abc import Iterable

from exchange.api.explorer.operator_page import Figure
from exchange.metrics.exposition import Sample

__all__ = ["figures_from_samples"]


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:,.0f} 秒 s"
    if seconds < 7_200:
        return f"{seconds / 60:,.0f} 分钟 min"
    return f"{seconds / 3_600:,.1f} 小时 h"


def _count(value: float) -> str:
    return f"{value:,.0f}"


def figures_from_samples(samples: Iterable[Sample]) -> list[Figure]:
    """The figures, in the page's order, from one collection of every metric."""
    one: dict[str, float] = {}
    requests = server_errors = 0.0
    seconds_sum = seconds_count = 0.0
    anchors: dict[str, float] = {}
    for sample in samples:
        if sample.name == "shancheng_http_requests_total":
            requests += sample.value
            if sample.labels.get("status", "").startswith("5"):
                server_errors += sample.value
        elif sample.name == "shancheng_http_request_duration_seconds_sum":
            seconds_sum += sample.value
        elif sample.name == "shancheng_http_request_duration_seconds_count":
            seconds_count += sample.value
        elif sample.name == "shancheng_anchors":
            anchors[sample.labels["state"]] = sample.value
        elif not sample.labels:
            one[sample.name] = sample.value
    figures = [
        Figure(
            "shancheng_http_requests_total",
            "请求 Requests",
            _count(requests),
            "HTTP requests answered since the exchange started",
        ),
        Figure(
            "shancheng_http_requests_total",
            "服务器错误 Server errors (5xx)",
            _count(server_errors),
            "answers with a 5xx status",
        ),
        Figure(
            "shancheng_http_request_duration_seconds",
            "平均响应 Mean response",
            "—" if not seconds_count else f"{seconds_sum / seconds_count * 1000:,.1f} ms",
            "mean time to answer a request",
        ),
    ]
    if one.get("shancheng_database_up") != 1:
        figures.append(
            Figure("shancheng_database_up", "数据库 Database", "不可用 down", "no answer")
        )
        return figures
    batches = one.get("shancheng_append_batch_records_count", 0.0)
    batch_records = one.get("shancheng_append_batch_records_sum", 0.0)
    on_chain = {state: count for state, count in anchors.items() if count}
    figures += [
        Figure(
            "shancheng_log_entries",
            "日志条目 Log entries",
            _count(one["shancheng_log_entries"]),
        ),
        Figure(
            "shancheng_sequencer_lag_entries",
            "待整合 Sequencer lag",
            _count(one["shancheng_sequencer_lag_entries"]),
            "entries not yet in a signed checkpoint",
        ),
        Figure(
            "shancheng_anchors",
            "锚定 Anchors",
            " · ".join(f"{state} {_count(n)}" for state, n in sorted(on_chain.items())) or "0",
            "anchor transactions by state",
        ),
        Figure(
            "shancheng_oldest_unanchored_age_seconds",
            "最早未锚定 Oldest unanchored",
            _age(one["shancheng_oldest_unanchored_age_seconds"]),
            "age of the oldest entry no on-chain anchor covers",
        ),
        Figure(
            "shancheng_pending_deliveries",
            "待交付 Pending deliveries",
            _count(one["shancheng_pending_deliveries"]),
            "paid orders not delivered yet",
        ),
        Figure(
            "shancheng_pending_computations",
            "待答复查询 Pending queries",
            _count(one["shancheng_pending_computations"]),
            "computations no agent has answered yet",
        ),
        Figure(
            "shancheng_pending_payouts",
            "待付款提现 Pending payouts",
            _count(one["shancheng_pending_payouts"]),
            "withdrawals waiting for an operator",
        ),
        Figure(
            "shancheng_append_batch_records",
            "批量提交 Append batches",
            _count(batches)
            + ("" if not batches else f" (≈{batch_records / batches:,.1f} 条/批 per batch)"),
            "append transactions and the records each stored on average",
        ),
    ]
    return figures
