"""Analyses of configs and data that need no trained model
(``tools/analysis/*.py`` are thin wrappers around these)."""
