//! Connections and variables against a real Postgres, through the real binary: encryption at
//! rest, a wrong key, `db rotate-key`, environment overrides, `connections test` against a
//! live and a closed server, imports that are all or nothing, and bad input.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use serde_json::{Value, json};
use upiflow_engine::EngineError;
use upiflow_engine::secrets::{KeyRing, Secrets};

/// Runs `upiflow` on `db_url` with `key` as UPIFLOW_FERNET_KEY (none: unset) and `env`.
fn upiflow(
    db_url: &str,
    home: &Path,
    key: Option<&str>,
    env: &[(&str, &str)],
    args: &[&str],
) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_upiflow"));
    cmd.args(args)
        .env("UPIFLOW_HOME", home)
        .env("RUST_LOG", "warn")
        .env("DATABASE_URL", db_url)
        .env_remove("UPIFLOW_FERNET_KEY");
    if let Some(k) = key {
        cmd.env("UPIFLOW_FERNET_KEY", k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run upiflow")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[track_caller]
fn ok(out: &Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// The command failed with exit 1; its stderr.
#[track_caller]
fn fails(out: &Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout: {}\nstderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stderr)
}

fn home() -> PathBuf {
    dags_dir(&[]).join(".upiflow")
}

/// Every stored byte of both tables, as text.
async fn table_text(db: &TestDb) -> String {
    sqlx::query_scalar::<_, Option<String>>(
        "SELECT coalesce((SELECT string_agg(c::text, '|') FROM connections c), '')
             || coalesce((SELECT string_agg(v::text, '|') FROM variables v), '')",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap()
    .unwrap_or_default()
}

async fn count(db: &TestDb, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

const PASSWORD: &str = "s3cr#t p@ss/wörd";
const URI: &str = "postgresql://alice:s3cr%23t%20p%40ss%2Fw%C3%B6rd@db.example:6543/warehouse?sslmode=require&api_token=tok-9f8e7d";

#[tokio::test]
async fn connections_are_encrypted_at_rest_and_read_back_with_the_key() {
    let db = fresh_db().await;
    let h = home();
    let key = KeyRing::generate_key();
    let run = |args: &[&str]| upiflow(&db.url, &h, Some(&key), &[], args);

    let added = ok(&run(&["connections", "add", "wh", "--uri", URI]));
    assert!(added.contains("password and extra encrypted"), "{added}");
    assert!(
        !added.contains("s3cr") && !added.contains("tok-9f8e7d"),
        "{added}"
    );
    ok(&run(&[
        "variables",
        "set",
        "db_password",
        "hunter2-var",
        "--description",
        "x",
    ]));

    let stored = table_text(&db).await;
    for secret in [PASSWORD, "s3cr", "tok-9f8e7d", "hunter2-var", "api_token"] {
        assert!(
            !stored.contains(secret),
            "`{secret}` is in the tables: {stored}"
        );
    }
    let flags: (bool, bool) =
        sqlx::query_as("SELECT is_encrypted, is_extra_encrypted FROM connections")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(flags, (true, true));

    // The CLI hides the secrets unless asked.
    let list = ok(&run(&["connections", "list"]));
    assert!(
        list.contains("***") && !list.contains("s3cr") && !list.contains("tok-9f8e7d"),
        "{list}"
    );
    assert!(
        list.contains("db.example") && list.contains("sslmode"),
        "{list}"
    );
    let got = ok(&run(&["connections", "get", "wh"]));
    assert!(
        !got.contains("s3cr") && !got.contains("tok-9f8e7d"),
        "{got}"
    );
    let shown: Value = serde_json::from_str(&ok(&run(&[
        "connections",
        "get",
        "wh",
        "--show-password",
        "-o",
        "json",
    ])))
    .unwrap();
    assert_eq!(shown["password"], json!(PASSWORD));
    assert_eq!(shown["conn_type"], json!("postgres"));
    assert_eq!(shown["port"], json!(6543));
    assert_eq!(shown["extra"]["api_token"], json!("tok-9f8e7d"));
    let vars = ok(&run(&["variables", "list"]));
    assert!(
        vars.contains("db_password") && !vars.contains("hunter2-var"),
        "{vars}"
    );
    assert_eq!(
        ok(&run(&["variables", "get", "db_password"])),
        "hunter2-var\n"
    );

    // In process, with the same key: the decrypted connection, the variable.
    let s = Secrets::new(db.pool.clone(), Some(key.clone())).unwrap();
    let c = s.connection("wh").await.unwrap().unwrap();
    assert_eq!(c.password.as_deref(), Some(PASSWORD));
    assert_eq!(c.login.as_deref(), Some("alice"));
    // `api_token` is no libpq parameter: a Postgres URL for it is refused by name.
    let e = c.postgres_url().unwrap_err();
    assert!(e.to_string().contains("extra `api_token`"), "{e}");
    assert_eq!(
        s.variable("db_password").await.unwrap().as_deref(),
        Some("hunter2-var")
    );
    assert_eq!(s.variable("nope").await.unwrap(), None);
    assert!(s.connection("nope").await.unwrap().is_none());
}

#[tokio::test]
async fn without_a_key_values_are_stored_plain_and_a_wrong_key_is_a_clear_error() {
    let db = fresh_db().await;
    let h = home();
    let (k1, k2) = (KeyRing::generate_key(), KeyRing::generate_key());

    // No key: stored as given and flagged so (Airflow's behaviour), and said.
    let out = ok(&upiflow(
        &db.url,
        &h,
        None,
        &[],
        &[
            "connections",
            "add",
            "plain",
            "--uri",
            "postgres://u:plainpw@h/db",
        ],
    ));
    assert!(out.contains("stored unencrypted"), "{out}");
    let (pw, enc): (String, bool) =
        sqlx::query_as("SELECT password, is_encrypted FROM connections WHERE conn_id = 'plain'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!((pw.as_str(), enc), ("plainpw", false));

    ok(&upiflow(
        &db.url,
        &h,
        Some(&k1),
        &[],
        &[
            "connections",
            "add",
            "enc",
            "--uri",
            "postgres://u:encpw@h/db",
        ],
    ));
    ok(&upiflow(
        &db.url,
        &h,
        Some(&k1),
        &[],
        &["variables", "set", "api_key", "v-secret"],
    ));

    // Another key: a clear error naming what cannot be decrypted, never garbage.
    for args in [
        &["connections", "get", "enc", "--show-password"][..],
        &["connections", "list"][..],
        &["variables", "get", "api_key"][..],
    ] {
        let err = fails(&upiflow(&db.url, &h, Some(&k2), &[], args));
        assert!(
            err.contains("the Fernet key does not match"),
            "{args:?}: {err}"
        );
        assert!(!err.contains("encpw") && !err.contains("v-secret"), "{err}");
    }
    let err = fails(&upiflow(
        &db.url,
        &h,
        Some(&k2),
        &[],
        &["connections", "get", "enc"],
    ));
    assert!(
        err.contains("cannot decrypt connection `enc`'s password"),
        "{err}"
    );
    // No key at all for an encrypted value.
    let err = fails(&upiflow(
        &db.url,
        &h,
        None,
        &[],
        &["connections", "get", "enc"],
    ));
    assert!(err.contains("no Fernet key is configured"), "{err}");
    // A malformed key list.
    let err = fails(&upiflow(
        &db.url,
        &h,
        Some("not-a-key"),
        &[],
        &["connections", "list"],
    ));
    assert!(
        err.contains("UPIFLOW_FERNET_KEY") && !err.contains("not-a-key"),
        "{err}"
    );

    let wrong = Secrets::new(db.pool.clone(), Some(k2)).unwrap();
    assert!(matches!(
        wrong.connection("enc").await,
        Err(EngineError::DecryptFailed(_))
    ));
    // The plain one reads with any key.
    let c = wrong.connection("plain").await.unwrap().unwrap();
    assert_eq!(c.password.as_deref(), Some("plainpw"));
}

#[tokio::test]
async fn rotate_key_keeps_every_connection_and_variable_usable_with_the_new_key() {
    let db = fresh_db().await;
    let h = home();
    let (old, new) = (KeyRing::generate_key(), KeyRing::generate_key());
    ok(&upiflow(
        &db.url,
        &h,
        None,
        &[],
        &[
            "connections",
            "add",
            "before_key",
            "--uri",
            "postgres://u:pw0@h/db",
        ],
    ));
    ok(&upiflow(
        &db.url,
        &h,
        None,
        &[],
        &["variables", "set", "v0", "plain-value"],
    ));
    for (id, pw) in [("a", "pw-a"), ("b", "pw-b")] {
        let uri = format!("postgres://u:{pw}@h/db?sslmode=require");
        ok(&upiflow(
            &db.url,
            &h,
            Some(&old),
            &[],
            &["connections", "add", id, "--uri", &uri],
        ));
    }
    ok(&upiflow(
        &db.url,
        &h,
        Some(&old),
        &[],
        &["variables", "set", "v1", "{\"n\": 1}"],
    ));
    let before = table_text(&db).await;

    // Without a key, rotation is refused; with only the new key, a value fails to decrypt
    // and nothing changes.
    fails(&upiflow(&db.url, &h, None, &[], &["db", "rotate-key"]));
    let err = fails(&upiflow(
        &db.url,
        &h,
        Some(&new),
        &[],
        &["db", "rotate-key"],
    ));
    assert!(err.contains("the Fernet key does not match"), "{err}");
    assert_eq!(table_text(&db).await, before);

    let list = format!("{new},{old}");
    let out = ok(&upiflow(
        &db.url,
        &h,
        Some(&list),
        &[],
        &["db", "rotate-key"],
    ));
    assert!(out.contains("3 connection(s) and 2 variable(s)"), "{out}");
    assert!(out.contains("2 value(s) were unencrypted before"), "{out}");
    let after = table_text(&db).await;
    assert!(
        !after.contains("pw0") && !after.contains("plain-value"),
        "{after}"
    );

    // The new key alone now reads everything; the old one alone reads nothing.
    let s = Secrets::new(db.pool.clone(), Some(new.clone())).unwrap();
    for (id, pw) in [("before_key", "pw0"), ("a", "pw-a"), ("b", "pw-b")] {
        let c = s.connection(id).await.unwrap().unwrap();
        assert_eq!(c.password.as_deref(), Some(pw), "{id}");
    }
    assert_eq!(
        s.connection("a").await.unwrap().unwrap().extra["sslmode"],
        json!("require")
    );
    assert_eq!(
        s.variable("v0").await.unwrap().as_deref(),
        Some("plain-value")
    );
    assert_eq!(
        s.variable("v1").await.unwrap().as_deref(),
        Some("{\"n\": 1}")
    );
    let err = fails(&upiflow(
        &db.url,
        &h,
        Some(&old),
        &[],
        &["connections", "get", "a"],
    ));
    assert!(err.contains("the Fernet key does not match"), "{err}");
    let flags: Vec<(bool,)> = sqlx::query_as(
        "SELECT is_encrypted FROM connections UNION ALL SELECT is_encrypted FROM variables",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert!(flags.iter().all(|f| f.0), "{flags:?}");
}

/// Run in a child process of this test binary (see the test below) with AIRFLOW_CONN_X set:
/// `Secrets::connection("x")` finds it with an empty database.
#[tokio::test]
#[ignore = "run by airflow_conn_alone_makes_the_connection_available, in a child process"]
async fn child_reads_airflow_conn_x_from_its_environment() {
    let url = std::env::var("CHILD_DB_URL").expect("run by the parent test");
    let pool = upiflow_engine::store::connect(&url, 2).await.unwrap();
    let s = Secrets::from_env(pool).unwrap();
    let c = s
        .connection("x")
        .await
        .unwrap()
        .expect("AIRFLOW_CONN_X is set");
    assert_eq!(c.conn_type, "postgres");
    let pg = upiflow_engine::store::connect(&c.postgres_url().unwrap(), 1)
        .await
        .unwrap();
    let one: i32 = sqlx::query_scalar("SELECT 1").fetch_one(&pg).await.unwrap();
    assert_eq!(one, 1);
    assert!(Secrets::connection_in_env("X"));
}

#[tokio::test]
async fn airflow_conn_alone_makes_the_connection_available() {
    let db = fresh_db().await;
    let h = home();
    // With a password (the dev server trusts local connections and ignores it), to see it
    // masked.
    let mut with_pw = upiflow_engine::secrets::Connection::from_uri("x", &db.url).unwrap();
    with_pw.password = Some("env-secret-pw".into());
    let uri = with_pw.to_uri();
    let env = [("AIRFLOW_CONN_X", uri.as_str())];
    // The engine's lookup, in a child process that has the variable.
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "child_reads_airflow_conn_x_from_its_environment",
            "--nocapture",
        ])
        .env("AIRFLOW_CONN_X", &uri)
        .env("CHILD_DB_URL", &db.url)
        .output()
        .unwrap();
    let out = text(&child.stdout);
    assert!(child.status.success(), "{out}\n{}", text(&child.stderr));
    assert!(out.contains("1 passed"), "{out}");

    // The CLI's: test and get read the environment; nothing is stored.
    let tested = ok(&upiflow(
        &db.url,
        &h,
        None,
        &env,
        &["connections", "test", "x"],
    ));
    assert!(tested.contains("connection x: ok"), "{tested}");
    let shown = ok(&upiflow(
        &db.url,
        &h,
        None,
        &env,
        &["connections", "get", "x", "-o", "json"],
    ));
    assert!(!shown.contains("env-secret-pw"), "{shown}");
    let got: Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(got["source"], json!("environment"));
    assert_eq!(got["password"], json!("***"));
    // UPIFLOW_CONN_ wins over AIRFLOW_CONN_.
    let both = [
        ("AIRFLOW_CONN_X", db.url.as_str()),
        ("UPIFLOW_CONN_X", "http://other.example"),
    ];
    let got: Value = serde_json::from_str(&ok(&upiflow(
        &db.url,
        &h,
        None,
        &both,
        &["connections", "get", "x", "-o", "json"],
    )))
    .unwrap();
    assert_eq!(got["host"], json!("other.example"));
    // A malformed override is an error naming the variable, not a fall-through.
    let bad = [("AIRFLOW_CONN_X", "postgres://u@h:notaport/db")];
    let err = fails(&upiflow(
        &db.url,
        &h,
        None,
        &bad,
        &["connections", "get", "x"],
    ));
    assert!(
        err.contains("AIRFLOW_CONN_X") && err.contains("notaport"),
        "{err}"
    );
    // Variables too.
    let var = [("AIRFLOW_VAR_REGION", "ap-south-1")];
    assert_eq!(
        ok(&upiflow(
            &db.url,
            &h,
            None,
            &var,
            &["variables", "get", "region"]
        )),
        "ap-south-1\n"
    );
    assert_eq!(
        count(&db, "connections").await + count(&db, "variables").await,
        0
    );
}

#[tokio::test]
async fn connections_test_says_ok_against_postgres_and_fails_clearly_on_a_closed_port() {
    let db = fresh_db().await;
    let h = home();
    let key = KeyRing::generate_key();
    let run = |args: &[&str]| upiflow(&db.url, &h, Some(&key), &[], args);
    ok(&run(&["connections", "add", "dev", "--uri", &db.url]));
    let out = ok(&run(&["connections", "test", "dev"]));
    assert!(
        out.contains("connection dev: ok (SELECT 1 on 127.0.0.1:"),
        "{out}"
    );

    // A port nothing listens on: taken from the OS, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let closed = format!("postgres://u:closedpw@127.0.0.1:{port}/db");
    ok(&run(&["connections", "add", "closed", "--uri", &closed]));
    let err = fails(&run(&["connections", "test", "closed", "--timeout", "5s"]));
    assert!(
        err.contains(&format!(
            "connection closed: failed: cannot reach 127.0.0.1:{port}/db"
        )),
        "{err}"
    );
    assert!(!err.contains("closedpw"), "{err}");

    // A database the server does not have: the server's refusal, the password masked (the
    // dev server trusts local connections, so a wrong password would not be refused).
    let mut c = upiflow_engine::secrets::Connection::from_uri("nodb", &db.url).unwrap();
    c.schema = Some("no_such_db_for_test".into());
    c.password = Some("definitely-secret".into());
    ok(&run(&["connections", "add", "nodb", "--uri", &c.to_uri()]));
    let err = fails(&run(&["connections", "test", "nodb"]));
    assert!(err.contains("connection nodb: failed"), "{err}");
    assert!(err.contains("no_such_db_for_test"), "{err}");
    assert!(!err.contains("definitely-secret"), "{err}");

    // Other types cannot be tested.
    ok(&run(&[
        "connections",
        "add",
        "api",
        "--conn-type",
        "http",
        "--host",
        "api.example",
    ]));
    let err = fails(&run(&["connections", "test", "api"]));
    assert!(
        err.contains("testing is not supported for connections of type `http`"),
        "{err}"
    );
    let err = fails(&run(&["connections", "test", "missing"]));
    assert!(err.contains("no connection `missing`"), "{err}");
}

#[tokio::test]
async fn variables_import_is_all_or_nothing_and_export_round_trips() {
    let db = fresh_db().await;
    let h = home();
    let key = KeyRing::generate_key();
    let run = |args: &[&str]| upiflow(&db.url, &h, Some(&key), &[], args);
    let dir = dags_dir(&[
        ("bad.json", "{\"a\": 1, \"b\": "),
        ("array.json", "[1, 2]"),
        ("null.json", "{\"a\": \"x\", \"b\": null}"),
        (
            "longkey.json",
            &format!("{{\"a\": \"x\", \"{}\": \"y\"}}", "k".repeat(251)),
        ),
        (
            "good.json",
            r#"{"region": "ap-south-1", "limits": {"max": 5}, "n": 3,
                "partner_api_key": {"value": "pk-123456", "description": "partner"}}"#,
        ),
    ]);
    let f = |n: &str| dir.join(n).display().to_string();
    for (file, says) in [
        ("bad.json", "is not JSON"),
        ("array.json", "one JSON object"),
        ("null.json", "entry `b`: the value is null"),
        ("longkey.json", "must be 1-250 characters"),
    ] {
        let err = fails(&run(&["variables", "import", &f(file)]));
        assert!(
            err.contains(says) && err.contains("nothing was imported"),
            "{file}: {err}"
        );
        assert_eq!(count(&db, "variables").await, 0, "{file}");
    }
    let err = fails(&run(&["variables", "import", &f("missing.json")]));
    assert!(err.contains("cannot read"), "{err}");

    let out = ok(&run(&["variables", "import", &f("good.json")]));
    assert!(out.contains("4 variable(s) imported: 4 created"), "{out}");
    assert_eq!(ok(&run(&["variables", "get", "limits"])), "{\"max\":5}\n");
    assert_eq!(ok(&run(&["variables", "get", "n", "-j"])), "3\n");
    let list = ok(&run(&["variables", "list"]));
    assert!(
        list.contains("partner_api_key") && !list.contains("pk-123456"),
        "{list}"
    );
    assert!(list.contains("ap-south-1"), "{list}");
    let err = fails(&run(&["variables", "get", "nope"]));
    assert!(err.contains("no variable `nope`"), "{err}");
    assert_eq!(
        ok(&run(&["variables", "get", "nope", "--default", "dflt"])),
        "dflt\n"
    );

    // --action-on-existing-key fail: an existing key aborts the whole import.
    ok(&run(&["variables", "set", "region", "eu-west-1"]));
    let err = fails(&run(&[
        "variables",
        "import",
        &f("good.json"),
        "--action-on-existing-key",
        "fail",
    ]));
    assert!(err.contains("variable `limits` already exists"), "{err}");
    assert_eq!(ok(&run(&["variables", "get", "region"])), "eu-west-1\n");
    let out = ok(&run(&[
        "variables",
        "import",
        &f("good.json"),
        "--action-on-existing-key",
        "skip",
    ]));
    assert!(out.contains("0 created, 0 overwritten, 4 skipped"), "{out}");

    let export = dir.join("out.json");
    ok(&run(&[
        "variables",
        "export",
        &export.display().to_string(),
    ]));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&export).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let exported: Value = serde_json::from_str(&std::fs::read_to_string(&export).unwrap()).unwrap();
    assert_eq!(
        exported,
        json!({"region": "eu-west-1", "limits": {"max": 5}, "n": 3,
               "partner_api_key": {"value": "pk-123456", "description": "partner"}})
    );
    // Into a second database, the export imports back to the same variables.
    let db2 = fresh_db().await;
    ok(&upiflow(
        &db2.url,
        &h,
        Some(&key),
        &[],
        &["variables", "import", &export.display().to_string()],
    ));
    let s = Secrets::new(db2.pool.clone(), Some(key.clone())).unwrap();
    assert_eq!(
        s.variable("limits").await.unwrap().as_deref(),
        Some("{\"max\":5}")
    );
    assert_eq!(
        s.get_variable("partner_api_key")
            .await
            .unwrap()
            .description
            .as_deref(),
        Some("partner")
    );
    ok(&run(&["variables", "delete", "n"]));
    fails(&run(&["variables", "delete", "n"]));
}

#[tokio::test]
async fn bad_connection_input_is_a_clear_error_and_writes_nothing() {
    let db = fresh_db().await;
    let h = home();
    let key = KeyRing::generate_key();
    let run = |args: &[&str]| upiflow(&db.url, &h, Some(&key), &[], args);
    for (args, says) in [
        (
            &["connections", "add", "c", "--uri", "not a uri"][..],
            "invalid URI: expected TYPE://",
        ),
        (
            &[
                "connections",
                "add",
                "c",
                "--uri",
                "postgres://u:p@h:70000/db",
            ][..],
            "port `70000`",
        ),
        (
            &[
                "connections",
                "add",
                "c",
                "--uri",
                "postgres://u:pa#ss@h/db",
            ][..],
            "fragment",
        ),
        (
            &[
                "connections",
                "add",
                "c",
                "--conn-type",
                "postgres",
                "--port",
                "-1",
            ][..],
            "port -1",
        ),
        (
            &[
                "connections",
                "add",
                "c",
                "--conn-type",
                "http",
                "--extra",
                "[1]",
            ][..],
            "JSON object",
        ),
        (
            &[
                "connections",
                "add",
                "c",
                "--conn-type",
                "http",
                "--extra",
                "{bad",
            ][..],
            "not JSON",
        ),
        (&["connections", "add", "c"][..], "--conn-type"),
        (
            &["connections", "add", "bad id", "--uri", "http://h"][..],
            "connection id `bad id`",
        ),
        (
            &["connections", "get", "missing"][..],
            "no connection `missing`",
        ),
        (
            &["connections", "delete", "missing"][..],
            "no connection `missing`",
        ),
        (
            &["connections", "export", "out.yaml"][..],
            "export files are JSON",
        ),
    ] {
        let err = fails(&run(args));
        assert!(err.contains(says), "{args:?}: {err}");
    }
    assert_eq!(count(&db, "connections").await, 0);

    let dir = dags_dir(&[
        ("notjson.json", "conn_id,uri\nx,postgres://h"),
        (
            "onebad.json",
            r#"{"good": {"conn_type": "postgres", "host": "h", "password": "pw"},
                "bad": {"conn_type": "postgres", "port": 123456}}"#,
        ),
    ]);
    let f = |n: &str| dir.join(n).display().to_string();
    let err = fails(&run(&["connections", "import", &f("notjson.json")]));
    assert!(
        err.contains("not JSON") && err.contains("nothing was imported"),
        "{err}"
    );
    let err = fails(&run(&["connections", "import", &f("onebad.json")]));
    assert!(
        err.contains("entry `bad`") && err.contains("port 123456"),
        "{err}"
    );
    assert_eq!(count(&db, "connections").await, 0);

    // Export then import (Airflow's JSON form) round-trips, passwords included.
    ok(&run(&[
        "connections",
        "add",
        "wh",
        "--uri",
        URI,
        "--description",
        "the warehouse",
    ]));
    ok(&run(&[
        "connections",
        "add",
        "api",
        "--conn-type",
        "http",
        "--host",
        "https://api.example",
        "--extra",
        "{\"timeout\": 30}",
    ]));
    fails(&run(&["connections", "add", "wh", "--uri", URI]));
    let export = dir.join("conns.json");
    ok(&run(&[
        "connections",
        "export",
        &export.display().to_string(),
    ]));
    let s = Secrets::new(db.pool.clone(), Some(key.clone())).unwrap();
    let before = (
        s.connection("wh").await.unwrap(),
        s.connection("api").await.unwrap(),
    );
    ok(&run(&["connections", "delete", "wh"]));
    let out = ok(&run(&[
        "connections",
        "import",
        &export.display().to_string(),
    ]));
    assert!(out.contains("1 created, 0 overwritten, 1 skipped"), "{out}");
    let after = (
        s.connection("wh").await.unwrap(),
        s.connection("api").await.unwrap(),
    );
    assert_eq!(before, after);
    assert_eq!(
        after.0.unwrap().description.as_deref(),
        Some("the warehouse")
    );
}

#[tokio::test]
async fn the_engine_lists_pages_patches_and_refuses_duplicates() {
    use upiflow_engine::ErrorKind;
    use upiflow_engine::secrets::{ConnOrder, Connection, VarOrder};
    use upiflow_engine::store::filters::TextMatch;

    let db = fresh_db().await;
    let s = Secrets::new(db.pool.clone(), Some(KeyRing::generate_key())).unwrap();
    for (id, t) in [
        ("pg_a", "postgres"),
        ("pg_b", "postgres"),
        ("http_a", "http"),
        ("http_b", "http"),
        ("s3", "aws"),
    ] {
        let c = Connection::from_uri(id, &format!("{t}://u:pw-{id}@h-{id}:1000/db")).unwrap();
        s.add_connection(&c).await.unwrap();
    }
    let dup = Connection::from_uri("pg_a", "postgres://h").unwrap();
    let e = s.add_connection(&dup).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");

    let m = [TextMatch::Substring(vec!["_A".into()])];
    let (page, total) = s.list_connections(&m, &[], 10, 0).await.unwrap();
    let ids: Vec<&str> = page.iter().map(|c| c.connection.conn_id.as_str()).collect();
    assert_eq!((ids, total), (vec!["http_a", "pg_a"], 2));
    let order = [(ConnOrder::ConnType, true)];
    let (page, total) = s.list_connections(&[], &order, 2, 1).await.unwrap();
    let ids: Vec<&str> = page.iter().map(|c| c.connection.conn_id.as_str()).collect();
    assert_eq!((ids, total), (vec!["pg_b", "http_a"], 5));
    assert_eq!(page[0].connection.password.as_deref(), Some("pw-pg_b"));
    assert_eq!(s.count_connections().await.unwrap(), 5);

    // A patch changes what it is told to, in one transaction, with the rules applied.
    let patched = s
        .patch_connection("pg_a", &|c| {
            c.port = Some(6543);
            c.password = None;
            c.description = Some("patched".into());
            Ok(())
        })
        .await
        .unwrap();
    assert_eq!(patched.connection.port, Some(6543));
    assert_eq!(patched.connection.password, None);
    assert_eq!(patched.connection.host.as_deref(), Some("h-pg_a"));
    let e = s
        .patch_connection("pg_a", &|c| {
            c.port = Some(0);
            Ok(())
        })
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid, "{e}");
    assert_eq!(
        s.get_connection("pg_a").await.unwrap().connection.port,
        Some(6543)
    );
    let e = s.patch_connection("nope", &|_| Ok(())).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    let e = s.delete_connection("nope").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");

    for k in ["alpha", "beta", "gamma_token"] {
        s.add_variable(k, &format!("v-{k}"), None).await.unwrap();
    }
    let e = s.add_variable("alpha", "x", None).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    let v = s
        .patch_variable("beta", &|val, d| {
            val.push_str("-2");
            *d = Some("described".into());
            Ok(())
        })
        .await
        .unwrap();
    assert_eq!(
        (v.val.as_str(), v.description.as_deref()),
        ("v-beta-2", Some("described"))
    );
    let (page, total) = s
        .list_variables(
            &[TextMatch::Prefix(vec!["g".into()])],
            &[(VarOrder::Key, true)],
            10,
            0,
        )
        .await
        .unwrap();
    assert_eq!((page.len(), total), (1, 1));
    assert_eq!(page[0].val, "v-gamma_token");
    assert_eq!(s.count_variables().await.unwrap(), 3);
    let e = s.set_variable("", "x", None).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid, "{e}");
}
