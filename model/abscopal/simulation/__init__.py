"""Solving the model: PK, event segments and the diffrax solve (``solver``), trajectories and
cohorts (``simulate``), and the end points read from them (``outcomes``)."""
