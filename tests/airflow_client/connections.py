"""Connections and variables through Apache Airflow's official Python client
(apache-airflow-client 3.x), as an Airflow script manages them: create, duplicates and bad
bodies refused, get (the password redacted), patch with and without update_mask (a redacted
password sent back keeps the stored one), test against a real Postgres and a closed port,
list with filters and order, delete; then the same for variables, with a sensitive key
redacted. The client's pydantic models validate every answer against Airflow's own
ConnectionResponse, ConnectionTestResponse, VariableResponse and their collections.

Run by tests/airflow_client.rs with UPIFLOW_URL, UPIFLOW_USER, UPIFLOW_PASSWORD and
PG_HOST, PG_PORT, PG_USER, PG_DB (a Postgres that accepts that user) set.
Exits non-zero (with the reason) on the first thing that does not work as in Airflow.
"""

import json
import os
import sys

import airflow_client.client as af
from airflow_client.client.api import connection_api, variable_api
from airflow_client.client.exceptions import ApiException
from airflow_client.client.models import ConnectionBody, VariableBody

from check import URL, token


def status_of(call) -> int:
    try:
        call()
    except ApiException as e:
        return e.status
    raise AssertionError("the call succeeded; it should have been refused")


def connections(client) -> None:
    conns = connection_api.ConnectionApi(client)
    assert conns.get_connections().total_entries == 0
    pg = dict(host=os.environ["PG_HOST"], port=int(os.environ["PG_PORT"]),
              login=os.environ["PG_USER"], var_schema=os.environ["PG_DB"])
    made = conns.post_connection(ConnectionBody(
        connection_id="warehouse", conn_type="postgres", password="s3cret-pw",
        extra=json.dumps({"sslmode": "disable"}), description="DWH", **pg))
    assert (made.connection_id, made.conn_type, made.host, made.port) == (
        "warehouse", "postgres", pg["host"], pg["port"]), made
    assert made.password == "***", made.password
    assert json.loads(made.extra) == {"sslmode": "disable"}, made.extra
    assert status_of(lambda: conns.post_connection(
        ConnectionBody(connection_id="warehouse", conn_type="postgres"))) == 409
    # (A bad id such as "bad id" is refused by the client's own model before it is sent.)
    assert status_of(lambda: conns.post_connection(
        ConnectionBody(connection_id="x", conn_type="postgres", extra="[1]"))) == 422

    got = conns.get_connection("warehouse")
    assert got.password == "***" and got.description == "DWH" and got.login == pg["login"], got
    assert status_of(lambda: conns.get_connection("nope")) == 404

    # What was read goes back: the redacted password and extra keep the stored ones.
    back = ConnectionBody(connection_id="warehouse", conn_type="postgres", password=got.password,
                          extra=got.extra, description="the warehouse", **pg)
    patched = conns.patch_connection("warehouse", back)
    assert patched.description == "the warehouse" and patched.password == "***", patched
    tested = conns.test_connection(
        ConnectionBody(connection_id="warehouse", conn_type="postgres", password="***", **pg))
    assert tested.status is True, tested.message
    # update_mask: only host changes, the description given alongside does not.
    moved = conns.patch_connection("warehouse", ConnectionBody(
        connection_id="warehouse", conn_type="postgres", host="127.0.0.1", description="no"),
        update_mask=["host"])
    assert (moved.host, moved.description) == ("127.0.0.1", "the warehouse"), moved
    assert status_of(lambda: conns.patch_connection(
        "warehouse", ConnectionBody(connection_id="other", conn_type="postgres"))) == 400
    assert status_of(lambda: conns.patch_connection(
        "nope", ConnectionBody(connection_id="nope", conn_type="postgres"))) == 404

    closed = conns.test_connection(ConnectionBody(
        connection_id="closed", conn_type="postgres", host="127.0.0.1", port=1, login="u"))
    assert closed.status is False and "cannot reach" in closed.message, closed
    http = conns.test_connection(ConnectionBody(connection_id="web", conn_type="http", host="h"))
    assert http.status is False and "Postgres" in http.message, http

    partner = conns.post_connection(ConnectionBody(
        connection_id="api_partner", conn_type="http", host="a",
        extra=json.dumps({"api_key": "k-123", "region": "ap-south-1"})))
    assert json.loads(partner.extra) == {"api_key": "***", "region": "ap-south-1"}, partner.extra
    found = conns.get_connections(connection_id_pattern="ware", order_by=["-connection_id"])
    assert [c.connection_id for c in found.connections] == ["warehouse"], found
    page = conns.get_connections(limit=1, offset=1, order_by=["connection_id"])
    assert [c.connection_id for c in page.connections] == ["warehouse"], page
    assert page.total_entries == 2, page
    assert status_of(lambda: conns.get_connections(order_by=["password"])) == 400

    conns.delete_connection("api_partner")
    assert status_of(lambda: conns.delete_connection("api_partner")) == 404


def variables(client) -> None:
    vars_ = variable_api.VariableApi(client)
    made = vars_.post_variable(VariableBody(key="region", value="ap-south-1", description="r"))
    assert (made.key, made.value, made.description) == ("region", "ap-south-1", "r"), made
    secret = vars_.post_variable(VariableBody(key="partner_api_key", value="k-999"))
    assert secret.value == "***", secret
    cfg = vars_.post_variable(VariableBody(key="cfg", value={"user": "u", "token": "t-1"}))
    assert json.loads(cfg.value) == {"user": "u", "token": "***"}, cfg.value
    assert status_of(lambda: vars_.post_variable(VariableBody(key="region", value="x"))) == 409
    assert status_of(lambda: vars_.post_variable(VariableBody(key="", value="x"))) == 422

    assert vars_.get_variable("region").value == "ap-south-1"
    assert status_of(lambda: vars_.get_variable("nope")) == 404
    patched = vars_.patch_variable("region", VariableBody(key="region", value="eu-west-1",
                                                          description="not this"),
                                   update_mask=["value"])
    assert (patched.value, patched.description) == ("eu-west-1", "r"), patched
    assert status_of(lambda: vars_.patch_variable(
        "region", VariableBody(key="other", value="x"))) == 400

    listed = vars_.get_variables(order_by=["-key"])
    assert [v.key for v in listed.variables] == ["region", "partner_api_key", "cfg"], listed
    found = vars_.get_variables(variable_key_pattern="api")
    assert [v.key for v in found.variables] == ["partner_api_key"], found
    vars_.delete_variable("cfg")
    assert status_of(lambda: vars_.delete_variable("cfg")) == 404


def main() -> None:
    config = af.Configuration(host=URL, access_token=token())
    with af.ApiClient(config) as client:
        connections(client)
        variables(client)
    print("ok")


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # the test reads the reason from stderr
        print(f"FAILED: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
