"""The breadth of Airflow's API through its official Python client (apache-airflow-client 3.x):
one call or more for each tag upiflow serves beyond the first scripts (check.py, pools.py,
connections.py, event_logs.py), as an existing Airflow script would make them. The client's
pydantic models validate every answer against Airflow's own schemas; an operation upiflow
does not serve must fail with its 501 and the detail naming what upiflow lacks.

Run by tests/airflow_client.rs with UPIFLOW_URL, UPIFLOW_USER and UPIFLOW_PASSWORD set, over
a DAG folder with `hello.toml` (tags `cli`, `upi`; tasks `greet` -> `after`) and a broken
`broken.toml`, and one finished run of `hello` whose id is UPIFLOW_RUN_ID.
Exits non-zero (with the reason) on the first thing that does not work as in Airflow.
"""

import datetime
import json
import os

import airflow_client.client as af
from airflow_client.client.api import (
    asset_api,
    backfill_api,
    config_api,
    dag_api,
    dag_run_api,
    dag_stats_api,
    dag_warning_api,
    import_error_api,
    plugin_api,
    pool_api,
    provider_api,
    task_api,
    task_instance_api,
    x_com_api,
)
from airflow_client.client.models import (
    ActionsInner3,
    BackfillPostBody,
    BulkBodyPoolBody,
    BulkCreateActionPoolBody,
    BulkDeleteActionPoolBody,
    DAGRunClearBody,
    DAGRunsBatchBody,
    EntitiesInner3,
    PoolBody,
    TaskInstanceResponse,
)

from check import token

URL = os.environ["UPIFLOW_URL"]
RUN_ID = os.environ["UPIFLOW_RUN_ID"]


def status_of(call) -> tuple[int, str]:
    try:
        call()
    except af.ApiException as e:
        return e.status, e.body or ""
    return 200, ""


def main() -> None:
    cfg = af.Configuration(host=URL, access_token=token())
    with af.ApiClient(cfg) as client:
        # DAG: tags, across DAGs and by pattern.
        tags = dag_api.DAGApi(client).get_dag_tags()
        assert tags.tags == ["cli", "upi"], tags
        assert dag_api.DAGApi(client).get_dag_tags(tag_name_pattern="up").tags == ["upi"]

        # DagStats: every run of `hello` (the triggered one and the scheduler's latest
        # interval) has finished as a success.
        runs = dag_run_api.DagRunApi(client)
        total = runs.get_dag_runs("hello").total_entries
        stats = dag_stats_api.DagStatsApi(client).get_dag_stats(dag_ids=["hello"])
        assert [d.dag_id for d in stats.dags] == ["hello"], stats
        by_state = {s.state.value: s.count for s in stats.dags[0].stats}
        assert total >= 1 and by_state == {
            "queued": 0, "running": 0, "success": total, "failed": 0
        }, (total, by_state)

        # Import errors: the broken file, listed and read by id.
        errors = import_error_api.ImportErrorApi(client).get_import_errors()
        assert errors.total_entries == 1, errors
        err = errors.import_errors[0]
        assert err.filename.endswith("broken.toml"), err
        one = import_error_api.ImportErrorApi(client).get_import_error(err.import_error_id)
        assert one.stack_trace == err.stack_trace
        assert (
            import_error_api.ImportErrorApi(client)
            .get_import_errors(filename_pattern="hello")
            .total_entries
            == 0
        )

        # What upiflow truthfully has none of.
        assert dag_warning_api.DagWarningApi(client).list_dag_warnings().total_entries == 0
        assert plugin_api.PluginApi(client).get_plugins().total_entries == 0
        assert provider_api.ProviderApi(client).get_providers().total_entries == 0
        assert asset_api.AssetApi(client).get_assets().total_entries == 0

        # Task: the DAG's tasks and their upstream/downstream.
        tasks = task_api.TaskApi(client).get_tasks("hello")
        assert [t.task_id for t in tasks.tasks] == ["after", "greet"], tasks
        greet = task_api.TaskApi(client).get_task("hello", "greet")
        assert greet.downstream_task_ids == ["after"], greet

        # DagRun: the batch list, a dry-run clear, and a run deleted.
        batch = runs.get_list_dag_runs_batch("~", DAGRunsBatchBody(dag_ids=["hello"]))
        assert RUN_ID in [r.dag_run_id for r in batch.dag_runs], batch
        assert batch.total_entries == total, batch
        none = runs.get_list_dag_runs_batch("~", DAGRunsBatchBody(dag_ids=["broken"]))
        assert none.total_entries == 0, none
        failed = runs.get_list_dag_runs_batch("~", DAGRunsBatchBody(states=["failed"]))
        assert failed.total_entries == 0, failed
        # (The client cannot decode this answer from Airflow either: each item of its
        # `task_instances` is oneOf TaskInstanceResponse or NewTaskResponse, and a full task
        # instance fits both. So it is read raw and each item checked as a TaskInstanceResponse.)
        raw = runs.clear_dag_run_without_preload_content(
            "hello", RUN_ID, DAGRunClearBody(dry_run=True)
        )
        assert raw.status == 200, raw.status
        dry = json.loads(raw.data)
        items = [TaskInstanceResponse.from_dict(t) for t in dry["task_instances"]]
        assert sorted(t.task_id for t in items) == ["after", "greet"], dry
        assert dry["total_entries"] == 2, dry
        assert runs.get_dag_run("hello", RUN_ID).state.value == "success", "a dry run changes nothing"

        # Task instance: dependencies of a finished one, a try's details, map index -1.
        tis = task_instance_api.TaskInstanceApi(client)
        deps = tis.get_task_instance_dependencies("hello", RUN_ID, "after")
        assert isinstance(deps.dependencies, list), deps
        try1 = tis.get_task_instance_try_details("hello", RUN_ID, "greet", 1)
        assert try1.try_number == 1 and try1.state.value == "success", try1
        mapped = tis.get_mapped_task_instance("hello", RUN_ID, "greet", -1)
        assert mapped.task_id == "greet" and mapped.map_index == -1, mapped
        status, _ = status_of(lambda: tis.get_mapped_task_instance("hello", RUN_ID, "greet", 3))
        assert status == 404, status

        # Backfill: the intervals a backfill would run, and the list.
        bf = backfill_api.BackfillApi(client)
        day = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
        dry = bf.create_backfill_dry_run(
            BackfillPostBody(
                dag_id="hello", from_date=day, to_date=day + datetime.timedelta(days=2)
            )
        )
        assert dry.total_entries == 3, dry
        assert bf.list_backfills(dag_id="hello").total_entries == 0

        # XCom: not a concept of upiflow's, so a 501 whose detail says so.
        status, body = status_of(
            lambda: x_com_api.XComApi(client).get_xcom_entries("hello", RUN_ID, "greet")
        )
        assert status == 501 and "XCom" in body, (status, body)

        # Config: not exposed unless the operator says so (UPIFLOW_EXPOSE_CONFIG), Airflow's 403.
        status, body = status_of(lambda: config_api.ConfigApi(client).get_config())
        assert status == 403 and "chose not to expose" in body, (status, body)

        # Pool: Airflow's bulk body, action by action with its existence rules.
        pools = pool_api.PoolApi(client)
        made = pools.bulk_pools(
            BulkBodyPoolBody(
                actions=[
                    ActionsInner3(
                        BulkCreateActionPoolBody(
                            action="create",
                            entities=[PoolBody(name="npci", slots=4), PoolBody(name="psp", slots=2)],
                        )
                    )
                ]
            )
        )
        assert sorted(made.create.success) == ["npci", "psp"], made
        again = pools.bulk_pools(
            BulkBodyPoolBody(
                actions=[
                    ActionsInner3(
                        BulkCreateActionPoolBody(
                            action="create", entities=[PoolBody(name="npci", slots=9)]
                        )
                    ),
                    ActionsInner3(BulkDeleteActionPoolBody(action="delete", entities=[EntitiesInner3("psp")])),
                ]
            )
        )
        assert again.create.success == [] and len(again.create.errors) == 1, again
        assert again.delete.success == ["psp"], again
        assert pools.get_pool("npci").slots == 4, "a failed create changed nothing"
        status, _ = status_of(lambda: pools.get_pool("psp"))
        assert status == 404, status

        runs.delete_dag_run("hello", RUN_ID)
        status, _ = status_of(lambda: runs.get_dag_run("hello", RUN_ID))
        assert status == 404, status
    print("ok")


if __name__ == "__main__":
    main()
