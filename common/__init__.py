"""Shared helpers for the CADP scripts: environment adapters and logging."""
