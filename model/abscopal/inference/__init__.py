"""Fitting the model to the curated records: the records as arrays (``problem``), the likelihood,
the priors from the parameter table, the posterior's coordinates and log density (``posterior``),
the algorithms (MAP, ``nuts``, ``laplace``), the predictive, the report and the saved fit
(``fitresult``); ``fitting.run_fit`` runs the stages."""
