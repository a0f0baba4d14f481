"""Pools through Apache Airflow's official Python client (apache-airflow-client 3.x), as an
Airflow script manages them: list, create, a duplicate refused, get, patch with update_mask,
resize default_pool, delete, and the refusals. The client's pydantic models validate every
answer against Airflow's own PoolResponse and PoolCollectionResponse.

Run by tests/airflow_client.rs with UPIFLOW_URL, UPIFLOW_USER and UPIFLOW_PASSWORD set.
Exits non-zero (with the reason) on the first thing that does not work as in Airflow.
"""

import sys

import airflow_client.client as af
from airflow_client.client.api import pool_api
from airflow_client.client.exceptions import ApiException
from airflow_client.client.models import PoolBody, PoolPatchBody

from check import URL, token


def status_of(call) -> int:
    try:
        call()
    except ApiException as e:
        return e.status
    raise AssertionError("the call succeeded; it should have been refused")


def main() -> None:
    config = af.Configuration(host=URL, access_token=token())
    with af.ApiClient(config) as client:
        pools = pool_api.PoolApi(client)
        listed = pools.get_pools()
        names = [p.name for p in listed.pools]
        assert names == ["default_pool"], names
        assert listed.total_entries == 1
        assert listed.pools[0].slots == 128 and listed.pools[0].open_slots == 128

        made = pools.post_pool(PoolBody(name="partner_api", slots=3, description="Partner API"))
        assert (made.name, made.slots, made.open_slots, made.running_slots) == (
            "partner_api", 3, 3, 0), made
        assert made.description == "Partner API" and made.include_deferred is False
        assert status_of(lambda: pools.post_pool(PoolBody(name="partner_api", slots=1))) == 409
        assert status_of(lambda: pools.post_pool(PoolBody(name="bad name", slots=1))) == 422

        got = pools.get_pool("partner_api")
        assert got.slots == 3 and got.scheduled_slots == 0 and got.deferred_slots == 0, got
        assert status_of(lambda: pools.get_pool("nope")) == 404

        patched = pools.patch_pool(
            "partner_api", PoolPatchBody(slots=5, description="not this"), update_mask=["slots"]
        )
        assert (patched.slots, patched.description) == (5, "Partner API"), patched
        patched = pools.patch_pool("partner_api", PoolPatchBody(description="Partner API v2"))
        assert (patched.slots, patched.description) == (5, "Partner API v2"), patched
        resized = pools.patch_pool(
            "default_pool", PoolPatchBody(slots=64), update_mask=["slots"]
        )
        assert resized.slots == 64, resized
        assert status_of(
            lambda: pools.patch_pool("default_pool", PoolPatchBody(description="mine"))
        ) == 400

        found = pools.get_pools(pool_name_pattern="partner", order_by=["-name"])
        assert [p.name for p in found.pools] == ["partner_api"], found
        page = pools.get_pools(limit=1, offset=1, order_by=["name"])
        assert [p.name for p in page.pools] == ["partner_api"] and page.total_entries == 2, page

        assert status_of(lambda: pools.delete_pool("default_pool")) == 400
        pools.delete_pool("partner_api")
        assert status_of(lambda: pools.get_pool("partner_api")) == 404
        assert status_of(lambda: pools.delete_pool("partner_api")) == 404
    print("ok")


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # the test reads the reason from stderr
        print(f"FAILED: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
