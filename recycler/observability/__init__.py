"""Structured JSON logs and EMF metrics."""
