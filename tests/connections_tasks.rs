//! Connections and variables reaching tasks, against two real Postgres clusters: the
//! orchestrator's (`DATABASE_URL`) and a separate "warehouse" cluster each test starts with
//! scripts/lib/postgres.sh. Workers are `upiflow worker` processes, so connections and
//! variables given in their environment (`AIRFLOW_CONN_*`, `UPIFLOW_VAR_*`) are the real
//! path; logs are read with `upiflow logs`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use common::*;
use sqlx::PgPool;
use upiflow_engine::Reference;

/// A private Postgres cluster, stopped and removed when dropped.
struct Warehouse {
    /// A fresh database of its own on that cluster (a superuser, trust auth).
    url: String,
    dir: String,
}

impl Warehouse {
    async fn start() -> Warehouse {
        let root = env!("CARGO_MANIFEST_DIR");
        let out = Command::new("bash")
            .arg("-c")
            .arg("set -e; source scripts/lib/postgres.sh; start_test_postgres 2>/dev/null; echo \"$DATABASE_URL\"; echo \"$PG_DIR\"")
            .current_dir(root)
            .env_remove("DATABASE_URL")
            .output()
            .expect("run scripts/lib/postgres.sh");
        assert!(out.status.success(), "{}", text(&out.stderr));
        let stdout = text(&out.stdout);
        let mut lines = stdout.lines();
        let admin = lines.next().expect("url").to_string();
        let dir = lines.next().expect("dir").to_string();
        let (_, url) = upiflow_engine::store::create_scratch_database(&admin, "wh")
            .await
            .expect("create the warehouse database");
        Warehouse { url, dir }
    }

    async fn pool(&self) -> PgPool {
        PgPool::connect(&self.url)
            .await
            .expect("connect to the warehouse")
    }

    /// The URL with a password (trust auth accepts any), as a user would write it.
    fn url_with_password(&self, password: &str) -> String {
        self.url.replacen(
            "postgres://postgres@",
            &format!("postgres://postgres:{password}@"),
            1,
        )
    }
}

impl Drop for Warehouse {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "source scripts/lib/postgres.sh; PG_DIR='{}'; stop_test_postgres",
                self.dir
            ))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status();
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn upiflow(db: &str, dags: &Path, env: &[(&str, String)], args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_upiflow"))
        .args(args)
        .env("DATABASE_URL", db)
        .env("UPIFLOW_DAGS_FOLDER", dags)
        .env("RUST_LOG", "warn")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("run upiflow")
}

/// A `upiflow worker` process, killed when dropped.
struct WorkerProcess(Child);

impl WorkerProcess {
    fn start(db: &str, dags: &Path, env: &[(&str, String)]) -> WorkerProcess {
        let child = Command::new(env!("CARGO_BIN_EXE_upiflow"))
            .args(["worker", "--heartbeat", "200ms"])
            .env("DATABASE_URL", db)
            .env("UPIFLOW_DAGS_FOLDER", dags)
            .env("RUST_LOG", "warn")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .spawn()
            .expect("start a worker");
        WorkerProcess(child)
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `upiflow ARGS` off the async runtime.
async fn cli(db: &str, dags: &Path, env: &[(&str, String)], args: &[&str]) -> Output {
    let (db, dags) = (db.to_string(), dags.to_path_buf());
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, String)> = env.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        upiflow(&db, &dags, &env, &args)
    })
    .await
    .unwrap()
}

/// The latest run of a DAG.
async fn last_run(pool: &PgPool, dag_id: &str) -> String {
    sqlx::query_scalar("SELECT run_id FROM dag_runs WHERE dag_id = $1 ORDER BY id DESC LIMIT 1")
        .bind(dag_id)
        .fetch_one(pool)
        .await
        .expect("a run")
}

async fn logs(db: &str, dags: &Path, dag_id: &str, run_id: &str, task_id: &str) -> String {
    let out = cli(db, dags, &[], &["logs", dag_id, run_id, task_id]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
}

const MODEL_DAG: &str = r#"
dag_id = "wh_model"
[params]
min_amount = 10
[[tasks]]
id = "create"
kind = "sql"
conn = "warehouse"
sql = "sql/create.sql"
[[tasks]]
id = "load"
kind = "sql"
conn = "warehouse"
sql = "sql/load.sql"
upstream = ["create"]
[[tasks]]
id = "check"
kind = "quality"
conn = "warehouse"
upstream = ["load"]
checks = [
  { test = "not_null", table = "sales", column = "region" },
  { test = "row_count", table = "sales", min = 2, max = 2 },
  { test = "accepted_values", table = "sales", column = "region", values = ["south", "north"] },
]
"#;

const CREATE_SQL: &str = "CREATE TABLE IF NOT EXISTS sales (day date, region text, amount bigint);\n\
                          DELETE FROM sales WHERE day = :ds;";
const LOAD_SQL: &str = "INSERT INTO sales VALUES (:ds, :var.region, :params.min_amount), (:ds, 'north', :params.min_amount + 1);";

#[tokio::test]
async fn sql_and_quality_tasks_work_in_the_connections_database_from_airflow_conn_alone() {
    let db = fresh_db().await;
    let wh = Warehouse::start().await;
    let dir = dags_dir(&[
        ("model.toml", MODEL_DAG),
        ("sql/create.sql", CREATE_SQL),
        ("sql/load.sql", LOAD_SQL),
    ]);
    // Nothing but the environment defines the connection.
    let env = [
        (
            "AIRFLOW_CONN_WAREHOUSE",
            wh.url_with_password("Wh-Passw0rd"),
        ),
        ("UPIFLOW_VAR_REGION", "south".to_string()),
    ];
    let _worker = WorkerProcess::start(&db.url, &dir, &env);
    let out = cli(
        &db.url,
        &dir,
        &[],
        &[
            "trigger",
            "wh_model",
            "--logical-date",
            "2024-03-05",
            "--wait",
        ],
    )
    .await;
    let run = last_run(&db.pool, "wh_model").await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        text(&out.stderr),
        logs(&db.url, &dir, "wh_model", &run, "load").await
    );
    let rows: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT day::text, region, amount FROM sales ORDER BY region DESC")
            .fetch_all(&wh.pool().await)
            .await
            .expect("the table is in the warehouse");
    assert_eq!(
        rows,
        [
            ("2024-03-05".to_string(), "south".to_string(), 10),
            ("2024-03-05".to_string(), "north".to_string(), 11),
        ]
    );
    // Nothing landed in the orchestrator's database.
    let here: Option<String> = sqlx::query_scalar("SELECT to_regclass('sales')::text")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(here, None);
    let check = logs(&db.url, &dir, "wh_model", &run, "check").await;
    assert!(check.contains("on connection `warehouse`"), "{check}");
    assert!(
        check.contains("checks: 3 passed, 0 warned, 0 failed"),
        "{check}"
    );
}

#[tokio::test]
async fn a_quality_check_failing_in_the_warehouse_fails_the_task() {
    let db = fresh_db().await;
    let wh = Warehouse::start().await;
    sqlx::raw_sql("CREATE TABLE t (c text); INSERT INTO t VALUES (NULL), ('x');")
        .execute(&wh.pool().await)
        .await
        .unwrap();
    // The same table exists, clean, in the orchestrator's database: the check must not
    // look there.
    sqlx::raw_sql("CREATE TABLE t (c text); INSERT INTO t VALUES ('x');")
        .execute(&db.pool)
        .await
        .unwrap();
    let dir = dags_dir(&[(
        "q.toml",
        "dag_id = \"q\"\n[[tasks]]\nid = \"check\"\nkind = \"quality\"\nconn = \"warehouse\"\n\
         checks = [{ test = \"not_null\", table = \"t\", column = \"c\" }]\n",
    )]);
    let _worker =
        WorkerProcess::start(&db.url, &dir, &[("UPIFLOW_CONN_WAREHOUSE", wh.url.clone())]);
    let out = cli(&db.url, &dir, &[], &["trigger", "q", "--wait"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let run = last_run(&db.pool, "q").await;
    let log = logs(&db.url, &dir, "q", &run, "check").await;
    assert!(log.contains("FAIL not_null_t_c (1 failing row)"), "{log}");
}

const ECHO_DAG: &str = r#"
dag_id = "echo"
[params]
greeting = "hello"
[[tasks]]
id = "say"
kind = "command"
command = ["sh", "-c", "echo \"{{ params.greeting }} on {{ ds }} in $REGION via {{ conn.warehouse.host }}:{{ conn.warehouse.port }} try {{ try_number }}\"; echo \"password={{ conn.warehouse.password }}\"; echo \"raw=$PW\"; echo \"token=$TOKEN\""]
env = { REGION = "{{ var.region }}", PW = "{{ conn.warehouse.password }}", TOKEN = "{{ var.api_token }}" }
"#;

#[tokio::test]
async fn a_command_gets_params_ds_variables_and_connections_and_secrets_are_masked() {
    let db = fresh_db().await;
    let dir = dags_dir(&[("echo.toml", ECHO_DAG)]);
    let env = [
        (
            "AIRFLOW_CONN_WAREHOUSE",
            "postgres://loader:Sup3r-Secret-pw@wh.example.internal:6543/sales".to_string(),
        ),
        ("UPIFLOW_VAR_REGION", "south".to_string()),
        ("UPIFLOW_VAR_API_TOKEN", "tok-0123456789".to_string()),
    ];
    let _worker = WorkerProcess::start(&db.url, &dir, &env);
    let out = cli(
        &db.url,
        &dir,
        &[],
        &["trigger", "echo", "--logical-date", "2024-03-05", "--wait"],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let first = last_run(&db.pool, "echo").await;
    let log = logs(&db.url, &dir, "echo", &first, "say").await;
    assert!(
        log.contains("hello on 2024-03-05 in south via wh.example.internal:6543 try 1"),
        "{log}"
    );
    // The password, rendered into argv and env and echoed, and the sensitive variable.
    assert!(log.contains("password=***"), "{log}");
    assert!(log.contains("raw=***"), "{log}");
    assert!(log.contains("token=***"), "{log}");
    // A run's conf overrides the params: another run prints something else.
    let out = cli(
        &db.url,
        &dir,
        &[],
        &[
            "trigger",
            "echo",
            "--logical-date",
            "2024-03-06",
            "--conf",
            r#"{"greeting": "bonjour"}"#,
            "--wait",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let second = last_run(&db.pool, "echo").await;
    assert_ne!(first, second);
    let log = logs(&db.url, &dir, "echo", &second, "say").await;
    assert!(log.contains("bonjour on 2024-03-06 in south"), "{log}");
    // Not a byte of either secret is stored, in any line or error.
    let leaked: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM task_logs WHERE line LIKE '%Sup3r-Secret%' OR line LIKE '%tok-0123%')
              + (SELECT count(*) FROM task_tries WHERE error LIKE '%Sup3r-Secret%')",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(leaked, 0);
}

const STORED_DAG: &str = r#"
dag_id = "stored"
[[tasks]]
id = "say"
kind = "command"
command = ["sh", "-c", "echo \"{{ var.region }} {{ var.json.limits.max }} {{ conn.reporting.login }}@{{ conn.reporting.host }}/{{ conn.reporting.schema }}\"; echo \"pw=$PW secret=$S key=$UPIFLOW_FERNET_KEY\""]
env = { PW = "{{ conn.reporting.password }}", S = "{{ var.api_secret }}" }
"#;

#[tokio::test]
async fn variables_and_connections_stored_encrypted_reach_templates_and_stay_masked() {
    let db = fresh_db().await;
    let dir = dags_dir(&[("stored.toml", STORED_DAG)]);
    let key = upiflow(&db.url, &dir, &[], &["db", "generate-key"]);
    assert!(key.status.success(), "{}", text(&key.stderr));
    let key = text(&key.stdout).trim().to_string();
    let env = [("UPIFLOW_FERNET_KEY", key.clone())];
    for args in [
        &[
            "connections",
            "add",
            "reporting",
            "--uri",
            "postgres://rep:Db-Stored-Pw@reporting.example:5433/rpt",
        ][..],
        &["variables", "set", "region", "north"],
        &["variables", "set", "limits", r#"{"max": 42}"#],
        &["variables", "set", "api_secret", "very-secret-value"],
    ] {
        let out = cli(&db.url, &dir, &env, args).await;
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    }
    // The worker passes its own environment (the key included) to the command: the key is
    // masked too.
    let _worker = WorkerProcess::start(&db.url, &dir, &env);
    let out = cli(&db.url, &dir, &[], &["trigger", "stored", "--wait"]).await;
    let run = last_run(&db.pool, "stored").await;
    let log = logs(&db.url, &dir, "stored", &run, "say").await;
    assert_eq!(out.status.code(), Some(0), "{}\n{log}", text(&out.stderr));
    assert!(log.contains("north 42 rep@reporting.example/rpt"), "{log}");
    assert!(log.contains("pw=*** secret=*** key=***"), "{log}");
    for secret in ["Db-Stored-Pw", "very-secret-value", key.as_str()] {
        assert!(!log.contains(secret), "{secret} in {log}");
    }
}

#[tokio::test]
async fn an_undefined_name_at_run_time_fails_the_try_at_once_with_a_clear_error() {
    let db = fresh_db().await;
    let dir = dags_dir(&[
        (
            "undef.toml",
            "dag_id = \"undef\"\n[defaults]\nretries = 3\nretry_delay = \"1s\"\n\
         [[tasks]]\nid = \"a\"\nkind = \"command\"\ncommand = [\"echo\", \"{{ params.nope }}\"]\n\
         [[tasks]]\nid = \"b\"\nkind = \"command\"\ncommand = [\"echo\", \"{{ var.not_set_anywhere }}\"]\n\
         [[tasks]]\nid = \"c\"\nkind = \"sql\"\nconn = \"no_such_conn\"\nsql = \"x.sql\"\n\
         [[tasks]]\nid = \"d\"\nkind = \"sql\"\nconn = \"broken\"\nsql = \"x.sql\"\n\
         [[tasks]]\nid = \"e\"\nkind = \"quality\"\nconn = \"web\"\n\
         checks = [{ test = \"row_count\", table = \"t\", min = 1 }]\n",
        ),
        ("x.sql", "SELECT 1"),
    ]);
    // A malformed URI in the environment, and a connection that is not a database.
    let env = [
        (
            "AIRFLOW_CONN_BROKEN",
            "postgres://u:p@h:notaport/db".to_string(),
        ),
        ("UPIFLOW_CONN_WEB", "http://example.com/x".to_string()),
    ];
    let _worker = WorkerProcess::start(&db.url, &dir, &env);
    let out = cli(&db.url, &dir, &[], &["trigger", "undef", "--wait"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let run = last_run(&db.pool, "undef").await;
    let tries: Vec<(String, i32, String)> = sqlx::query_as(
        "SELECT ti.task_id, tt.try_number, tt.error FROM task_tries tt
           JOIN task_instances ti ON ti.id = tt.ti_id
          WHERE ti.run_id = $1 ORDER BY ti.task_id, tt.try_number",
    )
    .bind(&run)
    .fetch_all(&db.pool)
    .await
    .expect("tries");
    // One try each: no retry can define a name.
    let tasks: Vec<(&str, i32)> = tries.iter().map(|(t, n, _)| (t.as_str(), *n)).collect();
    assert_eq!(
        tasks,
        [("a", 1), ("b", 1), ("c", 1), ("d", 1), ("e", 1)],
        "{tries:?}"
    );
    assert!(
        tries[0].2.contains("template `command[1]`") && tries[0].2.contains("undefined"),
        "{tries:?}"
    );
    assert!(
        tries[1]
            .2
            .contains("variable `not_set_anywhere` does not exist"),
        "{tries:?}"
    );
    assert!(
        tries[2]
            .2
            .contains("connection `no_such_conn` does not exist"),
        "{tries:?}"
    );
    assert!(
        tries[3].2.contains("AIRFLOW_CONN_BROKEN") && tries[3].2.contains("notaport"),
        "{tries:?}"
    );
    assert!(
        tries[4]
            .2
            .contains("connection `web` cannot be used as a Postgres database"),
        "{tries:?}"
    );
}

#[test]
fn dags_validate_reports_a_template_that_does_not_parse_or_names_an_unknown_name() {
    let dir = dags_dir(&[(
        "bad.toml",
        "dag_id = \"bad\"\n[[tasks]]\nid = \"a\"\nkind = \"command\"\n\
         command = [\"echo\", \"{{ ds \"]\n\
         [[tasks]]\nid = \"b\"\nkind = \"command\"\ncommand = [\"echo\"]\n\
         env = { X = \"{{ dss }}\" }\n",
    )]);
    let out = Command::new(env!("CARGO_BIN_EXE_upiflow"))
        .args(["dags", "validate"])
        .env_remove("DATABASE_URL")
        .env("UPIFLOW_DAGS_FOLDER", &dir)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run upiflow");
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("bad.toml:5: task `a`:"), "{err}");
    assert!(err.contains("command[1]"), "{err}");
    assert!(err.contains("bad.toml:10: task `b`:"), "{err}");
    assert!(err.contains("unknown name(s) `dss`"), "{err}");
}

#[test]
fn unknown_connections_and_variables_are_reported_at_their_line_when_checked() {
    let dir: PathBuf = dags_dir(&[
        (
            "refs.toml",
            "dag_id = \"refs\"\n\
             [[tasks]]\nid = \"load\"\nkind = \"sql\"\nsql = \"x.sql\"\nconn = \"warehouse\"\n\
             [[tasks]]\nid = \"say\"\nkind = \"command\"\n\
             command = [\"echo\", \"{{ conn.reporting.host }} {{ var.region }} {{ var.value.known }}\"]\n",
        ),
        ("x.sql", "SELECT :var.region"),
    ]);
    let registry = upiflow_tasks::registry();
    let mut folder = upiflow_engine::dag::load_folder(&dir, &registry);
    assert!(folder.errors.is_empty(), "{:?}", folder.errors);
    let refs = folder.dags[0].references().to_vec();
    assert_eq!(refs.len(), 5, "{refs:?}");
    // `warehouse` and `known` exist; the others do not.
    folder.check_references(|r| match r {
        Reference::Connection(id) => id == "warehouse",
        Reference::Variable(key) => key == "known",
    });
    assert!(folder.dags.is_empty());
    let shown: Vec<String> = folder.errors.iter().map(|e| e.to_string()).collect();
    let file = dir.join("refs.toml").display().to_string();
    assert_eq!(
        shown,
        [
            format!(
                "{file}:5: task `load`: variable `region` does not exist (set it with `upiflow variables set region VALUE`, or UPIFLOW_VAR_REGION)"
            ),
            format!(
                "{file}:10: task `say`: connection `reporting` does not exist (add it with `upiflow connections add reporting --uri URI`, or set UPIFLOW_CONN_REPORTING)"
            ),
            format!(
                "{file}:10: task `say`: variable `region` does not exist (set it with `upiflow variables set region VALUE`, or UPIFLOW_VAR_REGION)"
            ),
        ]
    );
}

#[tokio::test]
async fn a_worker_with_an_unusable_fernet_key_refuses_to_start_without_showing_it() {
    let db = fresh_db().await;
    let dir = dags_dir(&[]);
    let out = cli(
        &db.url,
        &dir,
        &[("UPIFLOW_FERNET_KEY", "not-a-fernet-key-at-all".to_string())],
        &["worker", "--heartbeat", "200ms"],
    )
    .await;
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("UPIFLOW_FERNET_KEY"), "{err}");
    assert!(!err.contains("not-a-fernet-key-at-all"), "{err}");
}

#[tokio::test]
async fn dags_validate_checks_connections_and_variables_in_the_database_and_the_environment() {
    let db = fresh_db().await;
    let dir = dags_dir(&[
        (
            "refs.toml",
            "dag_id = \"refs\"\n\
             [[tasks]]\nid = \"load\"\nkind = \"sql\"\nsql = \"x.sql\"\nconn = \"warehouse\"\n\
             [[tasks]]\nid = \"say\"\nkind = \"command\"\n\
             command = [\"echo\", \"{{ conn.reporting.host }} {{ var.region }}\"]\n",
        ),
        ("x.sql", "SELECT 1"),
    ]);
    let out = cli(&db.url, &dir, &[], &["dags", "validate"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    for missing in [
        "refs.toml:6: task `load`: connection `warehouse` does not exist",
        "refs.toml:10: task `say`: connection `reporting` does not exist",
        "refs.toml:10: task `say`: variable `region` does not exist",
    ] {
        assert!(err.contains(missing), "{missing} in {err}");
    }
    // Stored ones and the environment's count; then the folder is valid.
    let add = cli(
        &db.url,
        &dir,
        &[],
        &[
            "connections",
            "add",
            "warehouse",
            "--uri",
            "postgres://u@h:5432/d",
        ],
    )
    .await;
    assert!(add.status.success(), "{}", text(&add.stderr));
    let set = cli(
        &db.url,
        &dir,
        &[],
        &["variables", "set", "region", "ap-south-1"],
    )
    .await;
    assert!(set.status.success(), "{}", text(&set.stderr));
    let env = [(
        "AIRFLOW_CONN_REPORTING",
        "http://reports.internal".to_string(),
    )];
    let out = cli(&db.url, &dir, &env, &["dags", "validate"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("1 DAG(s) valid"));
    // Without a database, what the environment does not supply is named as not checked.
    let out = Command::new(env!("CARGO_BIN_EXE_upiflow"))
        .args(["dags", "validate"])
        .env_remove("DATABASE_URL")
        .env("UPIFLOW_DAGS_FOLDER", &dir)
        .env("UPIFLOW_HOME", dir.join(".upiflow"))
        .env("AIRFLOW_CONN_REPORTING", "http://reports.internal")
        .env("RUST_LOG", "warn")
        .output()
        .expect("run upiflow");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("note: connection warehouse, variable region not checked: no database"),
        "{err}"
    );
}
