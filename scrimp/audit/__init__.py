"""`scrimp audit`: the monthly cost review on the ledger and the request log, each finding with the dollars a
lever would save and the config line that turns it on (docs/audit.md)."""
