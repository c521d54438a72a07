"""Dagster definitions, one module per concern; `analytics_assets.definitions` wires them."""
