"""Break-even calculators: self-hosting an open model on GPUs, and fine-tuning a smaller model, against the API
prices a team pays now (docs/audit.md#calculators)."""
