-- Incremental: the first run loads every person with run 1; a later run (--vars '{run: 2}') brings
-- persons 2 and 3 again with the new run number and a new person 4, merged on id.
{{ config(materialized='incremental', unique_key='id', incremental_strategy='merge') }}
select id, name, {{ var('run', 1) }} as run_number from {{ ref('people') }}
{% if is_incremental() %}
where id >= 2
union all
select 4 as id, 'margaret' as name, {{ var('run', 1) }} as run_number
{% endif %}
