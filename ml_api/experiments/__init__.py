"""Experiments: definitions, their MySQL repository and in-process catalog, the record of exposures and outcomes."""
