"""Budgets: spend limits reserved before each call and settled to its real cost (docs/budgets.md)."""
