"""The model: the equations (sympy), the parameter table, the agents' catalogue, the generated
numerical functions and the between-mouse variability. Nothing here solves or fits."""
