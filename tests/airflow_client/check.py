"""Drives upiflow with Apache Airflow's official Python client (apache-airflow-client 3.x,
from PyPI), as an existing Airflow script would: token, version, health, DAGs, pause,
trigger, wait for the run, task instances, tries, logs, clear, backfill. The client's
pydantic models validate every answer against Airflow's own schemas.

Run by tests/airflow_client.rs with UPIFLOW_URL, UPIFLOW_USER and UPIFLOW_PASSWORD set.
Exits non-zero (with the reason) on the first thing that does not work as in Airflow.
"""

import datetime
import json
import os
import sys
import time
import urllib.request

import airflow_client.client as af
from airflow_client.client.api import (
    backfill_api,
    dag_api,
    dag_run_api,
    monitor_api,
    task_instance_api,
    version_api,
)
from airflow_client.client.models import (
    BackfillPostBody,
    ClearTaskInstancesBody,
    ClearTaskInstancesBodyTaskIdsInner,
    DAGPatchBody,
    TriggerDAGRunPostBody,
)

URL = os.environ["UPIFLOW_URL"]


def token() -> str:
    # Airflow's simple auth manager: POST /auth/token with username and password.
    body = json.dumps(
        {"username": os.environ["UPIFLOW_USER"], "password": os.environ["UPIFLOW_PASSWORD"]}
    ).encode()
    req = urllib.request.Request(
        f"{URL}/auth/token", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req) as resp:
        assert resp.status == 201, resp.status
        return json.load(resp)["access_token"]


def wait_run(runs, dag_id, run_id, want, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        run = runs.get_dag_run(dag_id, run_id)
        if run.state.value in ("success", "failed"):
            assert run.state.value == want, f"{run_id} ended {run.state.value}, wanted {want}"
            return run
        time.sleep(0.2)
    raise AssertionError(f"{run_id} did not finish in {seconds}s")


def main() -> None:
    config = af.Configuration(host=URL, access_token=token())
    with af.ApiClient(config) as client:
        print("version", version_api.VersionApi(client).get_version().version)
        health = monitor_api.MonitorApi(client).get_health()
        assert health.metadatabase.status == "healthy", health
        # The test runs a scheduler: its loop record makes it healthy.
        assert health.scheduler.status == "healthy", health
        assert health.scheduler.latest_scheduler_heartbeat is not None, health

        dags = dag_api.DAGApi(client)
        listed = dags.get_dags(limit=100)
        ids = sorted(d.dag_id for d in listed.dags)
        assert "hello" in ids, ids
        assert listed.total_entries == len(ids)
        paused = dags.patch_dag("hello", DAGPatchBody(is_paused=True))
        assert paused.is_paused is True
        unpaused = dags.patch_dag("hello", DAGPatchBody(is_paused=False))
        assert unpaused.is_paused is False

        runs = dag_run_api.DagRunApi(client)
        logical = datetime.datetime(2026, 3, 1, tzinfo=datetime.timezone.utc)
        run = runs.trigger_dag_run(
            "hello", TriggerDAGRunPostBody(logical_date=logical, conf={"who": "airflow"})
        )
        print("triggered", run.dag_run_id, run.state.value)
        assert run.conf == {"who": "airflow"}, run.conf
        done = wait_run(runs, "hello", run.dag_run_id, "success")
        assert done.end_date is not None
        listed_runs = runs.get_dag_runs("hello", limit=10)
        assert any(r.dag_run_id == run.dag_run_id for r in listed_runs.dag_runs)
        # Filters the client sends as Airflow has them (repeated keys) really filter.
        manual = runs.get_dag_runs("hello", run_type=["manual"], state=["success", "failed"])
        assert [r.dag_run_id for r in manual.dag_runs] == [run.dag_run_id], manual
        none = runs.get_dag_runs("hello", state=["failed"])
        assert none.total_entries == 0, none
        tagged = dags.get_dags(paused=False, dag_id_pattern="HEL")
        assert [d.dag_id for d in tagged.dags] == ["hello"], tagged

        tis = task_instance_api.TaskInstanceApi(client)
        collection = tis.get_task_instances("hello", run.dag_run_id)
        states = {t.task_id: t.state.value for t in collection.task_instances}
        assert states == {"greet": "success", "after": "success"}, states
        across = tis.get_task_instances("~", "~", task_id="greet", state=["success"])
        assert {t.task_id for t in across.task_instances} == {"greet"}, across
        assert run.dag_run_id in {t.dag_run_id for t in across.task_instances}, across
        greet = tis.get_task_instance("hello", run.dag_run_id, "greet")
        assert greet.try_number == 1, greet.try_number
        tries = tis.get_task_instance_tries("hello", run.dag_run_id, "greet")
        assert tries.total_entries == 1, tries
        log = tis.get_log("hello", run.dag_run_id, "greet", 1)
        text = log.to_json()
        assert "hello from hello" in text, text

        cleared = tis.post_clear_task_instances(
            "hello",
            ClearTaskInstancesBody(
                dry_run=False,
                dag_run_id=run.dag_run_id,
                task_ids=[ClearTaskInstancesBodyTaskIdsInner("greet")],
                include_downstream=True,
                only_failed=False,  # Airflow's default clears failed tasks only
            ),
        )
        assert {t.task_id for t in cleared.task_instances} == {"greet", "after"}, cleared
        wait_run(runs, "hello", run.dag_run_id, "success")
        again = tis.get_task_instance("hello", run.dag_run_id, "greet")
        assert again.try_number == 2, again.try_number

        backfills = backfill_api.BackfillApi(client)
        start = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
        end = datetime.datetime(2026, 1, 3, tzinfo=datetime.timezone.utc)
        # A backfill's own limit holds, and is reported back.
        b = backfills.create_backfill(
            BackfillPostBody(dag_id="hello", from_date=start, to_date=end, max_active_runs=2)
        )
        assert b.max_active_runs == 2, b.max_active_runs
        # Asked again with the client's defaults (max_active_runs=10): the same backfill,
        # now held to 10 of its own, independent of the DAG's 4 (as Airflow 3 answers).
        again = backfills.create_backfill(
            BackfillPostBody(
                dag_id="hello", from_date=start, to_date=end, reprocess_behavior="none"
            )
        )
        assert again.id == b.id and again.max_active_runs == 10, (again.id, again.max_active_runs)
        print("backfill", b.id)
        got = backfills.get_backfill(b.id)
        assert got.dag_id == "hello"
        deadline = time.time() + 60
        while time.time() < deadline:
            runs_in = runs.get_dag_runs("hello", limit=100)
            bf = [r for r in runs_in.dag_runs if r.run_type.value == "backfill"]
            if len(bf) == 3 and all(r.state.value == "success" for r in bf):
                break
            time.sleep(0.3)
        else:
            raise AssertionError(f"the backfill's runs did not all succeed: {bf}")

        try:
            dags.get_dag("no_such_dag")
            raise AssertionError("an unknown DAG was found")
        except af.exceptions.NotFoundException:
            pass
    print("ok")


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # the reason, for the Rust test's failure message
        print(f"FAILED: {type(e).__name__}: {e}", file=sys.stderr)
        raise
