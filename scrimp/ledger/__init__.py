"""The ledger: one row per call, with exact prices, what it would have cost without scrimp, and why."""
