-- #14 bench_api: a DAG version keeps its number (Airflow 3's `dag_version.version_number`),
-- given once when it is stored (under the `dags` row lock: the DAG's largest number plus
-- one), so a list reads its rows' versions by primary key instead of numbering all of a DAG's
-- versions for each row. Existing versions get the numbers they were shown with: by
-- creation, then hash.
ALTER TABLE dag_versions ADD COLUMN number bigint;
UPDATE dag_versions v SET number = n.number
FROM (SELECT dag_id, hash,
             row_number() OVER (PARTITION BY dag_id ORDER BY created_at, hash) AS number
      FROM dag_versions) n
WHERE n.dag_id = v.dag_id AND n.hash = v.hash;
ALTER TABLE dag_versions ALTER COLUMN number SET NOT NULL;
ALTER TABLE dag_versions ADD CONSTRAINT dag_versions_number_key UNIQUE (dag_id, number);
ALTER TABLE dag_versions ADD CONSTRAINT dag_versions_number_check CHECK (number >= 1);
