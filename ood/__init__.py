"""Shared code of the RecLag repository: data sets, feature cache, metrics, training, reports."""
