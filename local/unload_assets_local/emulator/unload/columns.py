"""Result columns of the unloaded query: PostgreSQL type OIDs seen as Redshift types.

Used for the VERBOSE manifest schema, the Parquet schema, and to pick how each value is rendered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from unload_assets_local.emulator.protocol.wire import Column

Kind = Literal["bool", "int", "float", "numeric", "char", "bpchar", "json", "date", "timestamp", "other"]

BOOL, INT8, INT2, INT4, TEXT, JSON = 16, 20, 21, 23, 25, 114
FLOAT4, FLOAT8, BPCHAR, VARCHAR, DATE, TIME = 700, 701, 1042, 1043, 1082, 1083
TIMESTAMP, TIMESTAMPTZ, TIMETZ, NUMERIC, JSONB, NAME = 1114, 1184, 1266, 1700, 3802, 19

_KINDS: dict[int, Kind] = {
    BOOL: "bool",
    INT2: "int",
    INT4: "int",
    INT8: "int",
    FLOAT4: "float",
    FLOAT8: "float",
    NUMERIC: "numeric",
    TEXT: "char",
    VARCHAR: "char",
    NAME: "char",
    BPCHAR: "bpchar",
    JSON: "json",
    JSONB: "json",
    DATE: "date",
    TIMESTAMP: "timestamp",
    TIMESTAMPTZ: "timestamp",
}
# Redshift's names for the manifest schema; a type Redshift lacks is reported as character varying.
_BASE_NAMES = {
    BOOL: "boolean",
    INT2: "smallint",
    INT4: "integer",
    INT8: "bigint",
    FLOAT4: "real",
    FLOAT8: "double precision",
    NUMERIC: "numeric",
    BPCHAR: "character",
    VARCHAR: "character varying",
    TEXT: "character varying",
    DATE: "date",
    TIME: "time without time zone",
    TIMETZ: "time with time zone",
    TIMESTAMP: "timestamp without time zone",
    TIMESTAMPTZ: "timestamp with time zone",
    JSON: "super",
    JSONB: "super",
}
# PostgreSQL text and unbounded varchar have no length; Redshift's longest VARCHAR stands in.
UNBOUNDED_VARCHAR = 65535


@dataclass(frozen=True)
class ColumnInfo:
    name: str
    type_oid: int
    typmod: int

    @classmethod
    def from_wire(cls, column: Column) -> ColumnInfo:
        return cls(column.name, column.type_oid, column.typmod)

    @property
    def kind(self) -> Kind:
        return _KINDS.get(self.type_oid, "other")

    @property
    def is_character(self) -> bool:
        """CHAR/VARCHAR-like: the columns ESCAPE applies to."""
        return self.kind in ("char", "bpchar") or self.type_oid not in _BASE_NAMES

    def numeric_dims(self) -> tuple[int, int] | None:
        if self.type_oid != NUMERIC or self.typmod < 4:
            return None
        mod = self.typmod - 4
        return (mod >> 16) & 0xFFFF, mod & 0xFFFF

    def schema_element(self) -> dict[str, Any]:
        """This column as an element of the VERBOSE manifest's schema."""
        base = _BASE_NAMES.get(self.type_oid, "character varying")
        type_: dict[str, Any] = {"base": base}
        if base in ("character", "character varying"):
            type_["max_length"] = self.typmod - 4 if self.typmod >= 4 else UNBOUNDED_VARCHAR
        dims = self.numeric_dims()
        if dims is not None:
            type_["precision"], type_["scale"] = dims
        return {"name": self.name, "type": type_}


def arrow_type(column: ColumnInfo):  # -> pyarrow.DataType
    """The Parquet (Arrow) type for a column; text for anything without a faithful equivalent."""
    import pyarrow as pa

    simple = {
        BOOL: pa.bool_(),
        INT2: pa.int16(),
        INT4: pa.int32(),
        INT8: pa.int64(),
        FLOAT4: pa.float32(),
        FLOAT8: pa.float64(),
        DATE: pa.date32(),
        TIME: pa.time64("us"),
        TIMESTAMP: pa.timestamp("us"),
        # Redshift writes TIMESTAMPTZ to Parquet without its zone: the UTC wall clock.
        TIMESTAMPTZ: pa.timestamp("us"),
    }
    if column.type_oid in simple:
        return simple[column.type_oid]
    dims = column.numeric_dims()
    if dims is not None and 0 < dims[0] <= 38:
        return pa.decimal128(dims[0], dims[1])
    return pa.string()
