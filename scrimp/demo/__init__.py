"""`scrimp demo`: a realistic workload replayed straight to the providers and through scrimp."""
