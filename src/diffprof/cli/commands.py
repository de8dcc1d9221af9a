"""Imports every command module so each registers on the app (one module per command group)."""

from diffprof.cli import bench, catalog, device, estimate, generate, history, share, tune  # noqa: F401
