"""Feature stage: one code path used at training and at serving time (no train/serve skew)."""
