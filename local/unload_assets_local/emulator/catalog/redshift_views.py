"""Redshift's catalog views and functions that tools read, answered from PostgreSQL's own catalog.

dbt-redshift, sqlalchemy-redshift, redshift_connector's metadata calls and awswrangler read these
instead of (or besides) `information_schema`. Each is a view in `pg_catalog`, as on Redshift, with
Redshift's column names and types, over what PostgreSQL knows:

- `svv_tables`, `svv_columns` (like `information_schema`, with `remarks`), `svv_all_tables`,
  `svv_all_columns`, `svv_all_schemas` (this database only: there is no data sharing here);
- `svv_external_schemas`, `svv_external_tables`, `svv_external_columns`, `svv_external_databases`:
  empty (no Spectrum);
- `svv_table_info`: user tables with their size and approximate rows; every table reads as
  `DISTSTYLE EVEN`, unsorted keys none, no column encoding (PostgreSQL keeps no table design);
- `pg_table_def`: the columns of the tables on the search_path, as Redshift lists them;
- `pg_get_late_binding_view_cols()`: no rows (a view here is always bound to its tables);
- `format_encoding(integer)`: `none`.

The columns Redshift adds to `pg_class` and `pg_attribute` (`reldiststyle`, `attencodingtype`,
`attisdistkey`, `attsortkeyord`) cannot be added to PostgreSQL's catalog tables: queries that name them
are translated instead (`sql/translate.py`).
"""

from __future__ import annotations

import hashlib

_USER_SCHEMA = "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp_)'"

REDSHIFT_VIEWS = f"""
DROP VIEW IF EXISTS pg_catalog.svv_all_tables, pg_catalog.svv_all_columns, pg_catalog.svv_tables,
    pg_catalog.svv_columns, pg_catalog.svv_all_schemas, pg_catalog.svv_external_schemas,
    pg_catalog.svv_external_tables, pg_catalog.svv_external_columns, pg_catalog.svv_external_databases,
    pg_catalog.svv_table_info, pg_catalog.pg_table_def;

CREATE VIEW pg_catalog.svv_tables AS
SELECT t.table_catalog::text AS table_catalog, t.table_schema::text AS table_schema,
    t.table_name::text AS table_name, t.table_type::text AS table_type, d.description::text AS remarks
FROM information_schema.tables t
LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = t.table_schema
LEFT JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = t.table_name
LEFT JOIN pg_catalog.pg_description d
    ON d.objoid = c.oid AND d.classoid = 'pg_catalog.pg_class'::regclass AND d.objsubid = 0;

CREATE VIEW pg_catalog.svv_all_tables AS
SELECT table_catalog::varchar(128) AS database_name, table_schema::varchar(128) AS schema_name,
    table_name::varchar(128) AS table_name,
    (CASE table_type WHEN 'BASE TABLE' THEN 'TABLE' WHEN 'LOCAL TEMPORARY' THEN 'TABLE'
        ELSE table_type END)::varchar(128) AS table_type,
    NULL::varchar(128) AS table_acl, remarks::varchar(128) AS remarks
FROM pg_catalog.svv_tables;

CREATE VIEW pg_catalog.svv_columns AS
SELECT col.table_catalog::text AS table_catalog, col.table_schema::text AS table_schema,
    col.table_name::text AS table_name, col.column_name::text AS column_name,
    col.ordinal_position::integer AS ordinal_position, col.column_default::text AS column_default,
    col.is_nullable::text AS is_nullable, col.data_type::text AS data_type,
    col.character_maximum_length::integer AS character_maximum_length,
    col.numeric_precision::integer AS numeric_precision,
    col.numeric_precision_radix::integer AS numeric_precision_radix,
    col.numeric_scale::integer AS numeric_scale, col.datetime_precision::integer AS datetime_precision,
    col.interval_type::text AS interval_type, col.interval_precision::text AS interval_precision,
    col.character_set_catalog::text AS character_set_catalog,
    col.character_set_schema::text AS character_set_schema,
    col.character_set_name::text AS character_set_name, col.collation_catalog::text AS collation_catalog,
    col.collation_schema::text AS collation_schema, col.collation_name::text AS collation_name,
    col.domain_name::text AS domain_name, d.description::text AS remarks
FROM information_schema.columns col
LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = col.table_schema
LEFT JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = col.table_name
LEFT JOIN pg_catalog.pg_description d
    ON d.objoid = c.oid AND d.classoid = 'pg_catalog.pg_class'::regclass
    AND d.objsubid = col.ordinal_position;

CREATE VIEW pg_catalog.svv_all_columns AS
SELECT table_catalog::varchar(128) AS database_name, table_schema::varchar(128) AS schema_name,
    table_name::varchar(128) AS table_name, column_name::varchar(128) AS column_name,
    ordinal_position, column_default::varchar(4000) AS column_default,
    is_nullable::varchar(3) AS is_nullable, data_type::varchar(128) AS data_type,
    character_maximum_length, numeric_precision, numeric_scale, remarks::varchar(256) AS remarks
FROM pg_catalog.svv_columns;

CREATE VIEW pg_catalog.svv_all_schemas AS
SELECT current_database()::varchar(128) AS database_name, n.nspname::varchar(128) AS schema_name,
    n.nspowner::integer AS schema_owner, 'local'::varchar(128) AS schema_type,
    array_to_string(n.nspacl, ',')::varchar(128) AS schema_acl, NULL::varchar(128) AS source_database,
    NULL::text AS schema_option
FROM pg_catalog.pg_namespace n
WHERE n.nspname !~ '^pg_(toast|temp_)';

CREATE VIEW pg_catalog.svv_external_schemas AS
SELECT NULL::oid AS esoid, NULL::smallint AS eskind, NULL::name AS schemaname, NULL::integer AS esowner,
    NULL::text AS databasename, NULL::text AS esoptions
WHERE false;

CREATE VIEW pg_catalog.svv_external_tables AS
SELECT NULL::text AS redshift_database_name, NULL::name AS schemaname, NULL::name AS tablename,
    NULL::text AS tabletype, NULL::text AS location, NULL::text AS input_format,
    NULL::text AS output_format, NULL::text AS serialization_lib, NULL::text AS serde_parameters,
    NULL::integer AS compressed, NULL::text AS parameters
WHERE false;

CREATE VIEW pg_catalog.svv_external_columns AS
SELECT NULL::text AS redshift_database_name, NULL::name AS schemaname, NULL::name AS tablename,
    NULL::name AS columnname, NULL::text AS external_type, NULL::integer AS columnnum,
    NULL::integer AS part_key, NULL::text AS is_nullable
WHERE false;

CREATE VIEW pg_catalog.svv_external_databases AS
SELECT NULL::integer AS eskind, NULL::text AS esoptions, NULL::text AS databasename,
    NULL::text AS location, NULL::text AS parameters
WHERE false;

CREATE VIEW pg_catalog.svv_table_info AS
SELECT current_database()::text AS database, n.nspname::text AS schema, c.oid::oid AS table_id,
    c.relname::text AS "table", 'N'::char(1) AS encoded, 'EVEN'::text AS diststyle,
    NULL::char(128) AS sortkey1,
    (SELECT max(a.atttypmod - 4) FROM pg_catalog.pg_attribute a
     WHERE a.attrelid = c.oid AND a.atttypid = 'varchar'::regtype AND a.attnum > 0
       AND NOT a.attisdropped)::integer AS max_varchar,
    NULL::char(32) AS sortkey1_enc, 0::integer AS sortkey_num,
    ceil(pg_catalog.pg_total_relation_size(c.oid) / 1048576.0)::bigint AS size,
    0::numeric(10, 4) AS pct_used, 0::numeric(10, 4) AS empty, NULL::numeric(5, 2) AS unsorted,
    0::numeric(5, 2) AS stats_off, greatest(c.reltuples, 0)::numeric(38, 0) AS tbl_rows,
    NULL::numeric(19, 2) AS skew_sortkey1, NULL::numeric(19, 2) AS skew_rows,
    greatest(c.reltuples, 0)::numeric(38, 0) AS estimated_visible_rows, NULL::varchar(100) AS risk_event,
    NULL::numeric(12, 2) AS vacuum_sort_benefit, NULL::timestamp AS create_time
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND {_USER_SCHEMA};

CREATE VIEW pg_catalog.pg_table_def AS
SELECT n.nspname AS schemaname, c.relname AS tablename, a.attname AS "column",
    pg_catalog.format_type(a.atttypid, a.atttypmod)::text AS type, 'none'::char(32) AS encoding,
    false AS distkey, 0::integer AS sortkey, a.attnotnull AS notnull
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid
WHERE c.relkind IN ('r', 'p', 'v', 'm') AND a.attnum > 0 AND NOT a.attisdropped
    AND pg_catalog.pg_table_is_visible(c.oid) AND {_USER_SCHEMA};

GRANT SELECT ON pg_catalog.svv_tables, pg_catalog.svv_all_tables, pg_catalog.svv_columns,
    pg_catalog.svv_all_columns, pg_catalog.svv_all_schemas, pg_catalog.svv_external_schemas,
    pg_catalog.svv_external_tables, pg_catalog.svv_external_columns, pg_catalog.svv_external_databases,
    pg_catalog.svv_table_info, pg_catalog.pg_table_def TO PUBLIC;

CREATE OR REPLACE FUNCTION pg_catalog.pg_get_late_binding_view_cols() RETURNS SETOF record
    LANGUAGE plpgsql STABLE AS $$ BEGIN RETURN; END $$;
CREATE OR REPLACE FUNCTION pg_catalog.format_encoding(integer) RETURNS text
    LANGUAGE sql IMMUTABLE AS $$ SELECT 'none'::text $$;
"""
# Kept as the comment of pg_table_def: a database whose views carry it has them as defined here.
REDSHIFT_VIEWS_VERSION = "unload_assets_local " + hashlib.sha256(REDSHIFT_VIEWS.encode()).hexdigest()[:16]
