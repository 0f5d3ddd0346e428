"""Loss-weight search on Ray Tune: config, search space, objective, trial function, report."""
