"""The batch lane (stage `batch`): deferrable calls at the providers' Batch API price, durably queued, each line
recorded in the ledger exactly once; fire-and-forget jobs; the providers' own Batch APIs through the gateway;
OpenAI's flex tier. See docs/batch.md."""

from scrimp.batch.stage import BatchStage, defer_call

__all__ = ["BatchStage", "defer_call"]
