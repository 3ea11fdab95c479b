"""Asset keys and output names of the unload targets, in one place for the assets, checks and sensors."""

import dagster as dg

UNLOAD_KEY_PREFIX = "s3"


def asset_key_for(target_name: str) -> dg.AssetKey:
    return dg.AssetKey([UNLOAD_KEY_PREFIX, target_name])


def output_name(target_name: str) -> str:
    """The output of the rename op (and of the graph) that is the asset `s3/<target>`."""
    return asset_key_for(target_name).to_python_identifier()


def upstream_key(schema: str, table: str) -> dg.AssetKey:
    return dg.AssetKey(["redshift", schema, table])


def is_unload(key: dg.AssetKey | None) -> bool:
    return key is not None and len(key.path) == 2 and key.path[0] == UNLOAD_KEY_PREFIX
