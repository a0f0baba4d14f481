"""The audit log through Apache Airflow's official Python client (apache-airflow-client 3.x):
a change made through the client (a variable posted, a pool patched) is read back with
EventLogApi.get_event_logs (filters, paging, order) and get_event_log, and the client's
pydantic models validate every answer against Airflow's EventLogResponse and
EventLogCollectionResponse.

Run by tests/airflow_client.rs with UPIFLOW_URL, UPIFLOW_USER and UPIFLOW_PASSWORD set.
Exits non-zero (with the reason) on the first thing that does not work as in Airflow.
"""

import datetime
import json

import airflow_client.client as af
from airflow_client.client.api import event_log_api, pool_api, variable_api
from airflow_client.client.exceptions import ApiException
from airflow_client.client.models import PoolPatchBody, VariableBody

from check import URL, token


def status_of(call) -> int:
    try:
        call()
    except ApiException as e:
        return e.status
    raise AssertionError("the call succeeded; it should have been refused")


def main() -> None:
    config = af.Configuration(host=URL, access_token=token())
    started = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=5)
    with af.ApiClient(config) as client:
        variable_api.VariableApi(client).post_variable(
            VariableBody(key="audit_me", value="hidden-value")
        )
        pool_api.PoolApi(client).patch_pool(
            "default_pool", PoolPatchBody(slots=64), update_mask=["slots"]
        )
        logs = event_log_api.EventLogApi(client)

        posted = logs.get_event_logs(event="post_variable", owner="airflow")
        assert posted.total_entries == 1, posted
        row = posted.event_logs[0]
        assert row.event == "post_variable" and row.owner == "airflow", row
        extra = json.loads(row.extra)
        assert extra["value"] == "***" and extra["variable_key"] == "audit_me", extra
        assert "hidden-value" not in row.extra
        assert row.when >= started, (row.when, started)

        # The sign-in of token() and the two changes, newest first, a page of two.
        page = logs.get_event_logs(order_by=["-event_log_id"], limit=2, after=started)
        assert page.total_entries == 3, page
        assert [r.event for r in page.event_logs] == ["patch_pool", "post_variable"], page
        signed_in = logs.get_event_logs(included_events=["login"], offset=0)
        assert [(r.owner, json.loads(r.extra)["outcome"]) for r in signed_in.event_logs] == [
            ("airflow", "success")
        ], signed_in
        later = logs.get_event_logs(before=started)
        assert later.total_entries == 0, later
        none = logs.get_event_logs(excluded_events=["login", "post_variable", "patch_pool"])
        assert none.total_entries == 0 and none.event_logs == [], none

        one = logs.get_event_log(row.event_log_id)
        assert one.event_log_id == row.event_log_id and one.event == "post_variable", one
        assert status_of(lambda: logs.get_event_log(987654)) == 404
        assert status_of(lambda: logs.get_event_logs(order_by=["nope"])) == 400
    print("ok")


if __name__ == "__main__":
    main()
