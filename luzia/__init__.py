"""Luzia: dispatch AI-agent tasks to a small fleet of GPU hosts."""

__version__ = "0.2.0"
