-- A table with Redshift's table design: KEY distribution on id, a compound sort key on name.
{{ config(materialized='table', dist='id', sort=['name'], sort_type='compound') }}
select id, name, city from {{ ref('people') }}
