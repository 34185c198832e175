"""Training: configuration, excerpt sampling, the optimisation loop, resumable run state."""
