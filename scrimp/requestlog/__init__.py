"""The request log: redacted request and response bodies of chosen features, beside the ledger (docs/request-log.md)."""
