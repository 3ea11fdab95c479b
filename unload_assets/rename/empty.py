"""What an empty day delivers: a valid object of the target's format holding no rows.

UNLOAD of zero rows may write no file at all (JSON never does). Readers must still find the day's
object at its key: an empty text/CSV object (compressed: a valid empty stream of that compression),
or, for Parquet, a valid file with the query's columns and no rows, built from the UNLOAD manifest's
schema (`MANIFEST VERBOSE`) with pyarrow (the `parquet` extra).
"""

from __future__ import annotations

import io
from typing import Any

from unload_assets.rename.header import compressed_member

# MANIFEST VERBOSE base type -> the Arrow type Redshift's Parquet UNLOAD writes for it.
_ARROW = {
    "boolean": "bool_",
    "smallint": "int16",
    "integer": "int32",
    "bigint": "int64",
    "real": "float32",
    "double precision": "float64",
    "date": "date32",
}


def empty_body(fmt: str, compression: str | None, schema: dict | None) -> bytes:
    """The bytes of a valid empty object of `fmt`; ValueError when it cannot be built here."""
    if fmt != "parquet":
        return compressed_member(b"", compression)
    return empty_parquet(schema)


def empty_parquet(schema: dict | None) -> bytes:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ValueError(
            "an empty Parquet file needs pyarrow: pip install 'unload_assets[parquet]'"
        ) from None
    elements = (schema or {}).get("elements")
    if not isinstance(elements, list) or not elements:
        raise ValueError("the UNLOAD manifest has no schema to give an empty Parquet file its columns")
    fields = [pa.field(str(e.get("name")), _arrow_type(pa, e.get("type") or {})) for e in elements]
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist([], schema=pa.schema(fields)), sink, compression="snappy")
    return sink.getvalue()


def _arrow_type(pa: Any, type_: dict) -> Any:
    base = str(type_.get("base", ""))
    if base in _ARROW:
        return getattr(pa, _ARROW[base])()
    if base.startswith("timestamp"):
        return pa.timestamp("us")
    if base.startswith("time"):
        return pa.time64("us")
    precision, scale = type_.get("precision"), type_.get("scale")
    if base == "numeric" and isinstance(precision, int) and 0 < precision <= 38:
        return pa.decimal128(precision, int(scale or 0))
    return pa.string()
