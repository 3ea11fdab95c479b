-- A late-binding view (WITH NO SCHEMA BINDING): the emulator creates it bound, as PostgreSQL must.
{{ config(materialized='view', bind=False) }}
select id, city from {{ ref('people_table') }}
