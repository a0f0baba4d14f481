//! The DAG pages of the web UI in-process (tower `oneshot`) against a real Postgres: every
//! page rendered from a run a worker really executed, 404 pages, viewers and bad CSRF tokens
//! refused on every form, bad input shown back with its message, untrusted text escaped.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::*;
use serde_json::json;
use tower::ServiceExt;
use upiflow_engine::ops::{self, Trigger};
use upiflow_engine::store::dags::VersionCache;
use upiflow_web::auth::Role;
use upiflow_web::ui::session;

const DAG: &str = r#"dag_id = "d"
description = "Counts <script>alert('desc')</script> & more"
schedule = "@daily"
[params]
n = 1
note = "hello"
[[tasks]]
id = "a"
kind = "command"
command = ["sh", "-c", "echo '<script>alert(\"log\")</script>'; echo 'to stderr' >&2"]
[[tasks]]
id = "b"
kind = "noop"
upstream = ["a"]
[[tasks]]
id = "c"
kind = "noop"
upstream = ["a"]
[[tasks]]
id = "d_end"
kind = "noop"
upstream = ["b", "c"]
"#;

struct Ui {
    app: axum::Router,
    db: TestDb,
    dag: upiflow_engine::Dag,
    admin: String,
    viewer: String,
}

struct Page {
    status: StatusCode,
    location: Option<String>,
    body: String,
}

async fn ui() -> Ui {
    let db = fresh_db().await;
    let dir = dags_dir(&[("d.toml", DAG)]);
    let dag = load(&dir, "d.toml");
    let mut conn = db.pool.acquire().await.unwrap();
    upiflow_engine::store::dags::sync(&mut conn, &dag)
        .await
        .unwrap();
    drop(conn);
    let state = upiflow_web::AppState::new(db.pool.clone()).await.unwrap();
    // Sessions are checked against `users` on every request: the users exist.
    for (user, role) in [("ada", Role::Admin), ("vic", Role::Viewer)] {
        upiflow_web::auth::create_user(&db.pool, user, "a-password", role)
            .await
            .unwrap();
    }
    let cookie = |user: &str, role| {
        let c = session::start(
            &state.token_key,
            user,
            upiflow_web::auth::Grant { role, version: 0 },
            false,
        )
        .unwrap();
        format!("{}={}", c.name(), c.value())
    };
    let admin = cookie("ada", Role::Admin);
    let viewer = cookie("vic", Role::Viewer);
    Ui {
        app: upiflow_web::app(state),
        db,
        dag,
        admin,
        viewer,
    }
}

impl Ui {
    async fn send(&self, req: Request<Body>) -> Page {
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let location = resp
            .headers()
            .get(header::LOCATION)
            .map(|l| l.to_str().unwrap().to_string());
        let bytes = axum::body::to_bytes(resp.into_body(), 64 << 20)
            .await
            .unwrap();
        Page {
            status,
            location,
            body: String::from_utf8(bytes.to_vec()).unwrap(),
        }
    }

    async fn get(&self, uri: &str, cookie: &str) -> Page {
        self.send(
            Request::get(uri)
                .header(header::COOKIE, cookie)
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    async fn fragment(&self, uri: &str, cookie: &str) -> Page {
        self.send(
            Request::get(uri)
                .header(header::COOKIE, cookie)
                .header("x-fragment", "1")
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    async fn post(&self, uri: &str, cookie: &str, form: &[(&str, &str)]) -> Page {
        self.send(
            Request::post(uri)
                .header(header::COOKIE, cookie)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(
                    form.iter()
                        .map(|(k, v)| format!("{}={}", seg(k), seg(v)))
                        .collect::<Vec<_>>()
                        .join("&"),
                ))
                .unwrap(),
        )
        .await
    }

    /// The CSRF token of `cookie`'s session, read from a page's hidden field.
    async fn csrf(&self, cookie: &str) -> String {
        let page = self.get("/dags/d", cookie).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        let at = page
            .body
            .find("name=\"csrf\" value=\"")
            .expect("a csrf field")
            + 19;
        let end = page.body[at..].find('"').unwrap();
        page.body[at..at + end].to_string()
    }

    async fn runs(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM dag_runs")
            .fetch_one(&self.db.pool)
            .await
            .unwrap()
    }

    /// Triggers a run with `conf` and waits until a worker has finished it.
    async fn finished_run(&self, conf: serde_json::Value) -> String {
        let req = Trigger {
            conf,
            ..Trigger::default()
        };
        let run = ops::trigger(&self.db.pool, &VersionCache::new(), &self.dag, &req)
            .await
            .unwrap();
        let (stop, handle) = spawn_worker(&self.db.pool, fast_worker("ui"));
        let state = tokio::time::timeout(
            Duration::from_secs(60),
            ops::wait_until_done(&self.db.pool, run.id, Duration::from_millis(50)),
        )
        .await
        .expect("the run finishes")
        .unwrap();
        stop.cancel();
        handle.await.unwrap();
        assert_eq!(state.as_str(), "success");
        run.run_id
    }
}

/// Percent-encoded as the pages write path segments (and good for form values too).
fn seg(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn assert_escaped(body: &str, what: &str) {
    assert!(
        !body.contains("<script>alert"),
        "{what}: raw <script> in the page"
    );
    assert!(
        body.contains("&lt;script&gt;alert"),
        "{what}: escaped text missing"
    );
}

#[tokio::test]
async fn every_page_renders_a_run_a_worker_finished_with_untrusted_text_escaped() {
    let u = ui().await;
    let run_id = u
        .finished_run(json!({"note": "<script>alert('conf')</script>"}))
        .await;
    let run = format!("/dags/d/runs/{}", seg(&run_id));

    let grid = u.get("/dags/d", &u.admin).await;
    assert_eq!(grid.status, StatusCode::OK);
    assert_escaped(&grid.body, "grid");
    assert!(grid.body.contains(r#"id="grid""#));
    assert!(grid.body.contains(&format!(r#"href="{run}""#)), "run link");
    for task in ["a", "b", "c", "d_end"] {
        assert!(
            grid.body.contains(&format!(
                r#"href="{run}/tasks/{task}" data-task="{task}" data-run="{run_id}" data-state="success""#
            )),
            "grid cell of {task}"
        );
    }
    // Rows in topological order: a before b and c, which come before d_end.
    let row = |t: &str| grid.body.find(&format!(r#"<tr data-task="{t}""#)).unwrap();
    assert!(row("a") < row("b") && row("b") < row("d_end") && row("c") < row("d_end"));
    let frag = u.fragment("/dags/d", &u.admin).await;
    assert_eq!(frag.status, StatusCode::OK);
    assert!(frag.body.contains(r#"id="grid""#) && !frag.body.contains("<html"));

    let graph = u.get("/dags/d/graph", &u.admin).await;
    assert_eq!(graph.status, StatusCode::OK);
    assert!(graph.body.contains("<svg"));
    assert!(
        graph
            .body
            .contains(r#"<g class="node" data-task="d_end" data-state="success">"#)
    );
    assert_eq!(graph.body.matches(r#"<path class="edge""#).count(), 4);
    let picked = u
        .get(&format!("/dags/d/graph?run_id={}", seg(&run_id)), &u.admin)
        .await;
    assert_eq!(picked.status, StatusCode::OK);

    let page = u.get(&run, &u.admin).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains(r#"id="run-summary" data-run=""#));
    assert!(page.body.contains(r#"<svg class="gantt" id="gantt""#));
    assert_eq!(page.body.matches(r#"<g class="gantt-row""#).count(), 4);
    assert!(
        page.body.contains("&lt;script&gt;alert('conf')"),
        "conf shown, escaped"
    );
    assert!(!page.body.contains("<script>alert"));
    assert!(
        page.body.contains(r#"class="inline clear-form""#),
        "admins can clear"
    );
    assert!(
        page.body.contains("data-refresh-final"),
        "a finished run stops refreshing"
    );
    let viewed = u.get(&run, &u.viewer).await;
    assert_eq!(viewed.status, StatusCode::OK);
    assert!(
        !viewed.body.contains("clear-form"),
        "viewers see no clear button"
    );

    let task = u.get(&format!("{run}/tasks/a"), &u.admin).await;
    assert_eq!(task.status, StatusCode::OK);
    assert_escaped(&task.body, "task log");
    assert!(
        task.body
            .contains(r#"<tr data-try="1" data-state="success" class="selected">"#)
    );
    assert!(task.body.contains(r#"data-stream="stderr""#) && task.body.contains("to stderr"));
    assert!(task.body.contains(r#"data-stream="stdout""#));
    let first = u.get(&format!("{run}/tasks/a?try=1"), &u.admin).await;
    assert_eq!(first.status, StatusCode::OK);
    let none = u.get(&format!("{run}/tasks/a?try=7"), &u.admin).await;
    assert_eq!(none.status, StatusCode::NOT_FOUND);
    assert!(none.body.contains("has no try 7"));
    let bad = u.get(&format!("{run}/tasks/a?try=last"), &u.admin).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn unknown_dags_runs_tasks_and_backfills_are_404_pages_with_a_message() {
    let u = ui().await;
    for uri in [
        "/dags/nope",
        "/dags/nope/graph",
        "/dags/nope/trigger",
        "/dags/nope/backfill",
        "/dags/nope/missed",
        "/dags/d/runs/nope",
        "/dags/d/runs/nope/tasks/a",
        "/dags/d/graph?run_id=nope",
        "/backfills/999",
        "/backfills/abc",
    ] {
        let p = u.get(uri, &u.viewer).await;
        assert_eq!(p.status, StatusCode::NOT_FOUND, "{uri}");
        assert!(p.body.contains("error-message"), "{uri}: {}", p.body);
    }
    let run_id = u.finished_run(json!({})).await;
    let p = u
        .get(
            &format!("/dags/d/runs/{}/tasks/zzz", seg(&run_id)),
            &u.viewer,
        )
        .await;
    assert_eq!(p.status, StatusCode::NOT_FOUND);
    assert!(p.body.contains("has no task `zzz`"));
}

#[tokio::test]
async fn pages_need_a_session() {
    let u = ui().await;
    let p = u.get("/dags/d", "").await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert_eq!(p.location.as_deref(), Some("/login?next=%2Fdags%2Fd"));
    let p = u.post("/dags/d/trigger", "", &[("conf", "{}")]).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert_eq!(u.runs().await, 0);
}

const POSTS: [&str; 5] = [
    "/dags/d/trigger",
    "/dags/d/backfill",
    "/dags/d/missed/backfill",
    "/dags/d/pause",
    "/dags/d/runs/RUN/tasks/a/clear",
];

#[tokio::test]
async fn viewers_get_403_on_every_form_and_nothing_changes() {
    let u = ui().await;
    let run_id = u.finished_run(json!({})).await;
    let csrf = u.csrf(&u.viewer).await;
    let trigger = u.get("/dags/d/trigger", &u.viewer).await;
    assert_eq!(trigger.status, StatusCode::OK);
    assert!(
        trigger.body.contains("<fieldset disabled>"),
        "read-only form"
    );
    for uri in POSTS {
        let uri = uri.replace("RUN", &seg(&run_id));
        let p = u
            .post(
                &uri,
                &u.viewer,
                &[
                    ("csrf", &csrf),
                    ("conf", "{}"),
                    ("from", "2024-01-01"),
                    ("to", "2024-01-02"),
                    ("paused", "true"),
                ],
            )
            .await;
        assert_eq!(p.status, StatusCode::FORBIDDEN, "{uri}");
        assert!(p.body.contains("(role viewer) may not"), "{uri}");
    }
    assert_eq!(u.runs().await, 1);
    let paused: bool = sqlx::query_scalar("SELECT is_paused FROM dags WHERE dag_id = 'd'")
        .fetch_one(&u.db.pool)
        .await
        .unwrap();
    assert!(!paused);
}

#[tokio::test]
async fn a_missing_or_wrong_csrf_token_is_403() {
    let u = ui().await;
    let run_id = u.finished_run(json!({})).await;
    for uri in POSTS {
        let uri = uri.replace("RUN", &seg(&run_id));
        for form in [
            vec![("conf", "{}")],
            vec![
                ("csrf", "forged-token-of-the-right-length-xxxxx"),
                ("conf", "{}"),
            ],
        ] {
            let p = u.post(&uri, &u.admin, &form).await;
            assert_eq!(p.status, StatusCode::FORBIDDEN, "{uri} {form:?}");
            assert!(p.body.contains("CSRF"), "{uri}");
        }
    }
    // Another session's token is no good either.
    let theirs = u.csrf(&u.viewer).await;
    let p = u
        .post(
            "/dags/d/trigger",
            &u.admin,
            &[("csrf", &theirs), ("conf", "{}")],
        )
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    assert_eq!(u.runs().await, 1);
}

#[tokio::test]
async fn a_bad_trigger_shows_the_form_again_with_the_message_and_creates_nothing() {
    let u = ui().await;
    let csrf = u.csrf(&u.admin).await;
    let form = u.get("/dags/d/trigger", &u.admin).await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(form.body.contains(r#"id="trigger-form""#));
    assert!(
        form.body.contains("&quot;note&quot;: &quot;hello&quot;"),
        "params as the default conf"
    );

    let cases: [(&str, &str, StatusCode, &str); 4] = [
        (
            "",
            "{not json",
            StatusCode::BAD_REQUEST,
            "Conf is not valid JSON",
        ),
        (
            "",
            r#"{"nope": 1}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown param `nope`",
        ),
        (
            "",
            r#"{"n": "<b>ten</b>"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "must be an integer",
        ),
        (
            "next tuesday",
            "{}",
            StatusCode::BAD_REQUEST,
            "Logical date",
        ),
    ];
    for (date, conf, status, message) in cases {
        let p = u
            .post(
                "/dags/d/trigger",
                &u.admin,
                &[("csrf", &csrf), ("logical_date", date), ("conf", conf)],
            )
            .await;
        assert_eq!(p.status, status, "{conf}: {}", p.body);
        assert!(p.body.contains(message), "{conf}: {}", p.body);
        assert!(p.body.contains(r#"id="form-error""#));
        let kept = conf
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;");
        assert!(p.body.contains(&kept), "the user's conf is kept: {kept}");
        assert!(!p.body.contains("<b>ten</b>"));
    }
    assert_eq!(u.runs().await, 0);

    let ok = u
        .post(
            "/dags/d/trigger",
            &u.admin,
            &[
                ("csrf", &csrf),
                ("logical_date", "2024-03-05T10:30"),
                ("conf", r#"{"n": 5}"#),
            ],
        )
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    let to = ok.location.unwrap();
    assert!(
        to.starts_with("/dags/d/runs/manual__2024-03-05T00%3A00%3A00"),
        "{to}"
    );
    let page = u.get(&to, &u.admin).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("&quot;n&quot;: 5"));
    // The same date again is a conflict, said on the form.
    let again = u
        .post(
            "/dags/d/trigger",
            &u.admin,
            &[
                ("csrf", &csrf),
                ("logical_date", "2024-03-05"),
                ("conf", "{}"),
            ],
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert!(again.body.contains("already has a run"));
    assert_eq!(u.runs().await, 1);
}

#[tokio::test]
async fn a_backfill_starts_from_its_form_and_its_page_follows_the_progress() {
    let u = ui().await;
    let csrf = u.csrf(&u.admin).await;
    let bad = u
        .post(
            "/dags/d/backfill",
            &u.admin,
            &[
                ("csrf", &csrf),
                ("from", "2024-01-05"),
                ("to", "2024-01-01"),
            ],
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        bad.body.contains("From must not be after To"),
        "{}",
        bad.body
    );
    assert!(bad.body.contains(r#"value="2024-01-05""#), "input kept");
    let bad = u
        .post(
            "/dags/d/backfill",
            &u.admin,
            &[("csrf", &csrf), ("from", "soon"), ("to", "2024-01-01")],
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    for n in ["0", "-1", "two", "1.5"] {
        let bad = u
            .post(
                "/dags/d/backfill",
                &u.admin,
                &[
                    ("csrf", &csrf),
                    ("from", "2024-01-01"),
                    ("to", "2024-01-03"),
                    ("max_active_runs", n),
                ],
            )
            .await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{n}");
        assert!(bad.body.contains("Max active runs: `"), "{n}: {}", bad.body);
    }
    assert_eq!(u.runs().await, 0);

    let p = u
        .post(
            "/dags/d/backfill",
            &u.admin,
            &[
                ("csrf", &csrf),
                ("from", "2024-01-01"),
                ("to", "2024-01-03"),
                ("rerun_failed", "on"),
                ("max_active_runs", "2"),
                ("compete", "on"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let to = p.location.unwrap();
    assert!(to.starts_with("/backfills/"), "{to}");
    let page = u.get(&to, &u.admin).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains("at most 2 runs at once"),
        "{}",
        page.body
    );
    let (limit, yields): (Option<i32>, bool) =
        sqlx::query_as("SELECT max_active_runs, yield_to_scheduled FROM backfills")
            .fetch_one(&u.db.pool)
            .await
            .unwrap();
    assert_eq!(limit, Some(2));
    assert!(!yields, "ticked: it competes with scheduled runs");
    assert!(page.body.contains("competes with scheduled runs"));
    assert!(page.body.contains(r#"data-total="3""#));
    assert!(
        page.body.contains("data-refresh="),
        "a running backfill refreshes"
    );
    assert_eq!(page.body.matches("<tr data-run=").count(), 3);
    let list = u.get("/backfills", &u.viewer).await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(
        list.body.contains(r#"id="backfill-list""#)
            && list.body.contains(&format!(r#"href="{to}""#))
    );

    let (stop, handle) = spawn_worker(&u.db.pool, fast_worker("ui"));
    let done = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let f = u.fragment(&to, &u.admin).await;
            if f.body.contains(r#"data-done="3" data-total="3""#) {
                return f;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the backfill finishes");
    stop.cancel();
    handle.await.unwrap();
    assert!(
        done.body
            .contains(r#"data-count="success"><dt>Succeeded</dt><dd>3</dd>"#),
        "{}",
        done.body
    );
}

#[tokio::test]
async fn clearing_a_task_and_its_downstream_queues_them_again() {
    let u = ui().await;
    let run_id = u.finished_run(json!({})).await;
    let csrf = u.csrf(&u.admin).await;
    let run = format!("/dags/d/runs/{}", seg(&run_id));
    let p = u
        .post(
            &format!("{run}/tasks/b/clear"),
            &u.admin,
            &[("csrf", &csrf), ("downstream", "on")],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let to = p.location.unwrap();
    assert!(to.starts_with(&format!("{run}?cleared=")), "{to}");
    let states: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT task_id, state::text FROM task_instances ORDER BY task_id")
            .fetch_all(&u.db.pool)
            .await
            .unwrap();
    let state = |t: &str| states.iter().find(|s| s.0 == t).unwrap().1.clone();
    assert_eq!(state("a").as_deref(), Some("success"));
    assert_eq!(state("b").as_deref(), Some("scheduled"));
    assert_eq!(state("c").as_deref(), Some("success"));
    assert_eq!(state("d_end"), None);
    let page = u.get(&to, &u.admin).await;
    assert!(page.body.contains(r#"id="cleared""#) && page.body.contains("b, d_end"));
    assert!(
        page.body
            .contains(r#"<tr data-task="b" data-state="scheduled">"#)
    );
    assert!(
        page.body.contains(r#"data-refresh=""#),
        "a running run refreshes"
    );
    // Clearing only c leaves d_end alone.
    let p = u
        .post(
            &format!("{run}/tasks/c/clear"),
            &u.admin,
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    let p = u
        .post(
            &format!("{run}/tasks/nope/clear"),
            &u.admin,
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(p.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_grid_of_a_dag_without_runs_lists_its_tasks_and_checks_its_query() {
    let u = ui().await;
    let p = u.get("/dags/d", &u.viewer).await;
    assert_eq!(p.status, StatusCode::OK);
    assert!(p.body.contains(r#"id="grid-empty""#));
    assert!(p.body.contains(r#"<tr data-task="d_end">"#));
    assert!(
        p.body
            .contains("<button class=\"secondary\" type=\"submit\" disabled"),
        "viewer's pause switch is disabled"
    );
    for (q, status) in [
        ("?runs=1000", StatusCode::OK),
        ("?runs=0", StatusCode::BAD_REQUEST),
        ("?runs=1001", StatusCode::BAD_REQUEST),
        ("?runs=many", StatusCode::BAD_REQUEST),
        ("?offset=-1", StatusCode::BAD_REQUEST),
        ("?offset=9223372036854775807", StatusCode::OK),
    ] {
        let p = u.get(&format!("/dags/d{q}"), &u.viewer).await;
        assert_eq!(p.status, status, "{q}");
    }
    let graph = u.get("/dags/d/graph", &u.viewer).await;
    assert_eq!(graph.status, StatusCode::OK);
    assert!(graph.body.contains(r#"data-task="a" data-state="none""#));
}

#[tokio::test]
async fn the_grid_pages_through_runs_newest_on_the_right() {
    let u = ui().await;
    let csrf = u.csrf(&u.admin).await;
    for day in ["2024-01-01", "2024-01-02", "2024-01-03"] {
        let p = u
            .post(
                "/dags/d/trigger",
                &u.admin,
                &[("csrf", &csrf), ("logical_date", day), ("conf", "")],
            )
            .await;
        assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    }
    let p = u.get("/dags/d?runs=2", &u.admin).await;
    let jan = |d: &str| p.body.find(&format!("data-run=\"manual__2024-01-0{d}"));
    assert!(jan("1").is_none());
    assert!(jan("2").unwrap() < jan("3").unwrap(), "newest on the right");
    assert!(p.body.contains(r#"id="grid-older""#));
    let older = u.get("/dags/d?runs=2&offset=2", &u.admin).await;
    assert!(older.body.contains("data-run=\"manual__2024-01-01"));
    assert!(older.body.contains(r#"id="grid-newer""#));
}

#[tokio::test]
async fn the_missed_intervals_are_listed_and_backfilled_from_their_page() {
    let u = ui().await;
    let empty = u.get("/dags/d/missed", &u.admin).await;
    assert_eq!(empty.status, StatusCode::OK);
    assert!(empty.body.contains(r#"id="no-missed""#));
    sqlx::query(
        "INSERT INTO missed_intervals (dag_id, logical_date, data_interval_start, data_interval_end, reason)
         SELECT 'd', s, s, s + interval '1 day', 'catchup_disabled'
         FROM generate_series('2024-02-01'::timestamptz, '2024-02-04', interval '1 day') s",
    )
    .execute(&u.db.pool)
    .await
    .unwrap();
    let page = u.get("/dags/d/missed", &u.admin).await;
    assert_eq!(page.body.matches("<tr data-interval=").count(), 4);
    let csrf = u.csrf(&u.admin).await;
    let p = u
        .post("/dags/d/missed/backfill", &u.admin, &[("csrf", &csrf)])
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    assert!(p.location.unwrap().starts_with("/backfills/"));
    assert_eq!(u.runs().await, 4);
    let after = u.get("/dags/d/missed", &u.admin).await;
    assert!(after.body.contains(r#"id="no-missed""#));
    let again = u
        .post("/dags/d/missed/backfill", &u.admin, &[("csrf", &csrf)])
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn pausing_from_a_dag_page_returns_to_it() {
    let u = ui().await;
    let csrf = u.csrf(&u.admin).await;
    let p = u
        .post(
            "/dags/d/pause",
            &u.admin,
            &[
                ("csrf", &csrf),
                ("paused", "true"),
                ("next", "/dags/d/graph"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert_eq!(p.location.as_deref(), Some("/dags/d/graph"));
    let page = u.get("/dags/d", &u.admin).await;
    assert!(page.body.contains(r#"data-paused="true""#));
    let p = u
        .post(
            "/dags/d/pause",
            &u.admin,
            &[
                ("csrf", &csrf),
                ("paused", "false"),
                ("next", "https://evil.example/"),
            ],
        )
        .await;
    assert_eq!(p.location.as_deref(), Some("/"));
}

/// Every answer carries the browser-hardening headers: pages, the sign-in page, static files,
/// API answers and refusals. The policy allows no inline script, and no other site may frame
/// a page.
#[tokio::test]
async fn every_answer_carries_the_security_headers() {
    let ui = ui().await;
    let mut checked = 0;
    for (uri, cookie, want) in [
        ("/", ui.admin.as_str(), StatusCode::OK),
        ("/dags/d", ui.viewer.as_str(), StatusCode::OK),
        ("/login", "", StatusCode::OK),
        ("/static/app.js", "", StatusCode::OK),
        ("/api/v2/dags", "", StatusCode::UNAUTHORIZED),
        ("/no/such/page", ui.admin.as_str(), StatusCode::NOT_FOUND),
    ] {
        let resp = ui
            .app
            .clone()
            .oneshot(
                Request::get(uri)
                    .header(header::COOKIE, cookie)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), want, "{uri}");
        let h = resp.headers();
        let csp = h
            .get(header::CONTENT_SECURITY_POLICY)
            .unwrap_or_else(|| panic!("{uri}: no CSP"))
            .to_str()
            .unwrap();
        assert!(csp.contains("script-src 'self'"), "{uri}: {csp}");
        assert!(!csp.contains("script-src 'self' 'unsafe"), "{uri}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{uri}: {csp}");
        assert_eq!(h[header::X_FRAME_OPTIONS], "DENY", "{uri}");
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "{uri}");
        assert_eq!(h[header::REFERRER_POLICY], "same-origin", "{uri}");
        checked += 1;
    }
    assert_eq!(checked, 6);
}
