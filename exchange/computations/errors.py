"""The refusals of the computation endpoints (``{code, message}``; ``query_refused``
adds the validator's ``reason``)."""

from __future__ import annotations

from exchange.errors import ConflictError, ExchangeError, NotFoundError

__all__ = [
    "BudgetExhaustedError",
    "ComputationClosedError",
    "ComputationExistsError",
    "ComputationMismatchError",
    "ComputationNotFoundError",
    "NotCompletedError",
    "NotComputationOrderError",
    "QueryRefusedError",
    "ResultMissingError",
    "ResultTooLargeError",
]


class ComputationNotFoundError(NotFoundError):
    code = "computation_not_found"


class ComputationExistsError(ConflictError):
    code = "computation_exists"


class NotComputationOrderError(ConflictError):
    code = "not_a_computation_order"


class BudgetExhaustedError(ConflictError):
    code = "budget_exhausted"


class ComputationClosedError(ConflictError):
    code = "computation_closed"


class NotCompletedError(ConflictError):
    code = "not_completed"


class ResultMissingError(ConflictError):
    code = "result_missing"


class ComputationMismatchError(ExchangeError):
    """A provider's answer that does not fit the computation: ``field`` names what."""

    status = 422
    code = "computation_mismatch"


class ResultTooLargeError(ExchangeError):
    status = 413
    code = "result_too_large"


class QueryRefusedError(ExchangeError):
    """The validator refuses the query early; ``reason`` is its stable reason code."""

    status = 422
    code = "query_refused"

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason

    def details(self) -> dict[str, str]:
        return {"reason": self.reason}
