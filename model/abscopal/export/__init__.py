"""Interchange: parameters and posteriors as JSON/CSV/netCDF (``formats``), the model as SBML and
the fitting problem as PEtab."""
