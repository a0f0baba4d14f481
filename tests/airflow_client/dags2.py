"""DAG-level calls of part "dags2" (#14) through Apache Airflow's official Python client
(apache-airflow-client 3.x): details, PATCH /dags with filters and update_mask, favourites and
the is_favorite filter, sources (JSON and the text the file holds), versions, and delete. The
client's pydantic models validate every answer against Airflow's own response models.

Run by tests/api_dags2.rs with UPIFLOW_URL, UPIFLOW_USER, UPIFLOW_PASSWORD and DAG_FILE (the
path of the DAG file of `hello`) set. Exits non-zero (with the reason) on the first thing that
does not work as in Airflow.
"""

import os

import airflow_client.client as af
from airflow_client.client.api import dag_api, dag_source_api, dag_version_api
from airflow_client.client.exceptions import ApiException
from airflow_client.client.models import DAGPatchBody

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
        dags = dag_api.DAGApi(client)
        details = dags.get_dag_details("hello")
        assert details.dag_id == "hello" and details.catchup is False, details
        assert details.params["who"]["value"] == "world", details.params
        assert details.latest_dag_version.version_number == 1, details.latest_dag_version
        assert details.is_favorite is False

        paused = dags.patch_dags(DAGPatchBody(is_paused=True), dag_id_pattern="hel")
        assert [d.dag_id for d in paused.dags] == ["hello"] and paused.dags[0].is_paused
        assert dags.patch_dags(DAGPatchBody(is_paused=False), dag_id_pattern="nothing").total_entries == 0
        assert dags.get_dag("hello").is_paused
        assert status_of(lambda: dags.patch_dag(
            "hello", DAGPatchBody(is_paused=False), update_mask=["description"])) == 400
        assert not dags.patch_dag("hello", DAGPatchBody(is_paused=False),
                                  update_mask=["is_paused"]).is_paused

        dags.favorite_dag("hello")
        assert status_of(lambda: dags.favorite_dag("hello")) == 409
        assert [d.dag_id for d in dags.get_dags(is_favorite=True).dags] == ["hello"]
        assert dags.get_dag_details("hello").is_favorite
        dags.unfavorite_dag("hello")
        assert status_of(lambda: dags.unfavorite_dag("hello")) == 409
        assert dags.get_dags(is_favorite=True).total_entries == 0
        assert status_of(lambda: dags.favorite_dag("nope")) == 404

        sources = dag_source_api.DagSourceApi(client)
        with open(os.environ["DAG_FILE"]) as f:
            text = f.read()
        source = sources.get_dag_source("hello")
        assert (source.content, source.version_number) == (text, 1), source
        assert sources.get_dag_source("hello", version_number=1).content == text
        assert status_of(lambda: sources.get_dag_source("hello", version_number=2)) == 404

        versions = dag_version_api.DagVersionApi(client)
        listed = versions.get_dag_versions("hello")
        assert [v.version_number for v in listed.dag_versions] == [1], listed
        assert versions.get_dag_versions("~").total_entries == 1
        one = versions.get_dag_version("hello", 1)
        assert one == listed.dag_versions[0], one
        assert status_of(lambda: versions.get_dag_version("hello", 2)) == 404

        dags.delete_dag("hello")
        assert status_of(lambda: dags.get_dag("hello")) == 404
        assert status_of(lambda: dags.delete_dag("hello")) == 404
    print("ok")


if __name__ == "__main__":
    main()
