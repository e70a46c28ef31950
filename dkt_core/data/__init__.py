"""Data stage: reading interaction logs, the data contract (validation), splits, simulation."""
