"""Serving a prediction: the request core, the models and their fast single-row paths."""
