"""The resources every asset and check is given: dagster-dlt's runner and the warehouse."""

import dagster as dg
from dagster_dlt import DagsterDltResource

from analytics_assets.warehouse import Warehouse


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(resources={"dlt": DagsterDltResource(), "warehouse": Warehouse()})
