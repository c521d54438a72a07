"""analytics_assets: a warehouse copy of the 100ms analytics API, by Dagster and dlt.

- `source/`: the `analytics_api` dlt source (endpoints, pagination, shapes, retries, auth);
- `defs/`: Dagster assets, where tables land, and the project's operational definitions;
- `simulator/`: a local simulator of the API for tests and offline runs;
- `definitions.py`: wires `defs/` into the `defs` Dagster loads.
"""
