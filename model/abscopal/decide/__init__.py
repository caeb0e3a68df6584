"""Decisions from the model: schedule comparisons over cohorts (``compare``), dose and gap sweeps,
schedule optimisation and the named scenarios with their credibility checks."""
