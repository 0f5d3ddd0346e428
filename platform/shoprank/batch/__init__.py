"""Ray Data building blocks shared by batch jobs (index building, campaign scoring)."""
