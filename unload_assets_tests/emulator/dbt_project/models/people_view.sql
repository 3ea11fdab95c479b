{{ config(materialized='view') }}
select id, upper(name) as shouting_name from {{ ref('people_table') }}
