//! The UI in a real headless Chromium (Debian's chromium and chromium-driver, which
//! scripts/test.sh installs), driven through WebDriver with fantoccini, against a real
//! server, scheduler and worker on a fresh database. Screenshots of the pages land in
//! `target/test-artifacts/`.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use fantoccini::{Client, ClientBuilder, Locator};
use tokio_util::sync::CancellationToken;
use upiflow_engine::scheduler::{Scheduler, SchedulerConfig};
use upiflow_web::auth::{self, Role};

/// One browser at a time: the machine has two cores.
static BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

struct Env {
    browser: Client,
    base: String,
    db: TestDb,
    dags: PathBuf,
    stop: CancellationToken,
    driver: tokio::process::Child,
    _profile: PathBuf,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A DAG folder with the DAGs the browser tests use.
fn dag_files(marker: &std::path::Path) -> Vec<(String, String)> {
    vec![
        (
            "demo.toml".into(),
            "dag_id = \"demo\"\ndescription = \"Three steps\"\nschedule = \"@daily\"\n\
             start_date = \"2026-01-01\"\ncatchup = false\n\
             [params]\nregion = \"south\"\n\
             [[tasks]]\nid = \"extract\"\nkind = \"noop\"\n\
             [[tasks]]\nid = \"transform\"\nkind = \"noop\"\nupstream = [\"extract\"]\n\
             [[tasks]]\nid = \"load\"\nkind = \"command\"\nupstream = [\"transform\"]\n\
             command = [\"sh\", \"-c\", \"echo 'loaded <b>bold</b>'\"]\n"
                .into(),
        ),
        (
            "flaky.toml".into(),
            format!(
                "dag_id = \"flaky\"\nschedule = \"none\"\nstart_date = \"2026-01-01\"\n\
                 [[tasks]]\nid = \"check\"\nkind = \"command\"\nretries = 0\n\
                 command = [\"sh\", \"-c\", \"test -f {}\"]\n\
                 [[tasks]]\nid = \"after\"\nkind = \"noop\"\nupstream = [\"check\"]\n",
                marker.display()
            ),
        ),
        (
            "xss.toml".into(),
            "dag_id = \"xss\"\ndescription = \"<script>window.__xss = 1</script><img src=x onerror=\\\"window.__xss = 2\\\">\"\n\
             schedule = \"none\"\nstart_date = \"2026-01-01\"\n\
             [[tasks]]\nid = \"a\"\nkind = \"noop\"\n"
                .into(),
        ),
    ]
}

impl Env {
    async fn start() -> Env {
        let db = fresh_db().await;
        auth::create_user(&db.pool, "ada", "admin-password", Role::Admin)
            .await
            .unwrap();
        let marker = std::env::temp_dir().join(format!(
            "upiflow-browser-marker-{}",
            uuid::Uuid::new_v4().simple()
        ));
        let files = dag_files(&marker);
        let refs: Vec<(&str, &str)> = files
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        let dags = dags_dir(&refs);
        std::fs::write(dags.join(".marker-path"), marker.display().to_string()).unwrap();

        let stop = CancellationToken::new();
        let registry = upiflow_tasks::registry();
        let mut cfg = SchedulerConfig::new(dags.clone());
        cfg.poll = Duration::from_millis(200);
        let scheduler = Scheduler::new(db.pool.clone(), registry.clone(), cfg);
        tokio::spawn(scheduler.run(stop.clone()));
        let (worker_stop, _) = spawn_worker(&db.pool, fast_worker("browser"));
        let parent = stop.clone();
        tokio::spawn(async move {
            parent.cancelled().await;
            worker_stop.cancel();
        });
        // Wait until the scheduler has recorded the DAGs.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM dags")
                .fetch_one(&db.pool)
                .await
                .unwrap();
            if n == 3 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the scheduler did not sync the DAGs"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        let state = web_state(&db.pool).await;
        let listener = upiflow_web::listen(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let stop_web = stop.clone();
        tokio::spawn(upiflow_web::serve(listener, state, async move {
            stop_web.cancelled().await
        }));

        assert!(
            std::path::Path::new(CHROMEDRIVER).exists(),
            "{CHROMEDRIVER} is missing: install Debian's chromium and chromium-driver (scripts/test.sh does)"
        );
        let port = free_port();
        let driver = tokio::process::Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromedriver");
        let profile = std::env::temp_dir().join(format!(
            "upiflow-chromium-{}",
            uuid::Uuid::new_v4().simple()
        ));
        let caps = serde_json::json!({
            // The console (CSP violations, script errors), read with `Env::console`.
            "goog:loggingPrefs": { "browser": "ALL" },
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1400,1000",
                    format!("--user-data-dir={}", profile.display()),
                ],
            }
        });
        let caps = match caps {
            serde_json::Value::Object(m) => m,
            _ => unreachable!(),
        };
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        let browser = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(c) => break c,
                Err(e) => {
                    assert!(Instant::now() < deadline, "cannot reach chromedriver: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        };
        Env {
            browser,
            base,
            db,
            dags,
            stop,
            driver,
            _profile: profile,
        }
    }

    fn marker(&self) -> PathBuf {
        PathBuf::from(std::fs::read_to_string(self.dags.join(".marker-path")).unwrap())
    }

    async fn goto(&self, path: &str) {
        self.browser
            .goto(&format!("{}{path}", self.base))
            .await
            .unwrap();
    }

    async fn login(&self) {
        self.goto("/").await;
        // Not signed in: the login page, which sends us back afterwards.
        let user = self
            .browser
            .wait()
            .for_element(Locator::Css("input[name=username]"))
            .await
            .unwrap();
        user.send_keys("ada").await.unwrap();
        self.browser
            .find(Locator::Css("input[name=password]"))
            .await
            .unwrap()
            .send_keys("admin-password")
            .await
            .unwrap();
        self.browser
            .find(Locator::Css("form button[type=submit]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        self.browser
            .wait()
            .for_element(Locator::Css("#dag-list"))
            .await
            .unwrap();
    }

    /// Waits until `css` matches an element whose text contains `text`.
    async fn wait_for_text(&self, css: &str, text: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(el) = self.browser.find(Locator::Css(css)).await
                && let Ok(t) = el.text().await
                && t.contains(text)
            {
                return t;
            }
            if Instant::now() > deadline {
                let page = self.browser.source().await.unwrap_or_default();
                self.screenshot("timeout").await;
                panic!("`{css}` never showed `{text}` within {within:?}; page:\n{page}");
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }

    /// Waits until the element `css` has attribute `attr` equal to `want`; returns false if
    /// it instead reaches one of `fail_on`.
    async fn wait_for_attr(&self, css: &str, attr: &str, want: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(el) = self.browser.find(Locator::Css(css)).await
                && let Ok(Some(v)) = el.attr(attr).await
                && v == want
            {
                return;
            }
            if Instant::now() > deadline {
                let page = self.browser.source().await.unwrap_or_default();
                self.screenshot("timeout").await;
                panic!("`{css}` never had {attr}={want} within {within:?}; page:\n{page}");
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }

    async fn fill(&self, css: &str, text: &str) {
        let el = self.browser.find(Locator::Css(css)).await.unwrap();
        el.clear().await.unwrap();
        el.send_keys(text).await.unwrap();
    }

    async fn click(&self, css: &str) {
        self.browser
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no `{css}`: {e}"))
            .click()
            .await
            .unwrap();
    }

    async fn path(&self) -> String {
        self.browser.current_url().await.unwrap().path().to_string()
    }

    async fn screenshot(&self, name: &str) {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .unwrap()
            .join("test-artifacts");
        std::fs::create_dir_all(&dir).unwrap();
        if let Ok(png) = self.browser.screenshot().await {
            std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
        }
    }

    /// Fails when `page` logged a CSP violation or an error; records it as `seen`.
    async fn assert_clean_console(&self, page: &str, seen: &mut Vec<String>) {
        // Room for the page's own scripts (refreshes, charts) to run.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let problems: Vec<_> = self
            .console()
            .await
            .into_iter()
            .filter(is_problem)
            .collect();
        assert!(problems.is_empty(), "{page}: {problems:#?}");
        seen.push(page.to_string());
    }

    /// The browser console's entries since the last call (chromedriver hands each out once):
    /// `(level, message)`, such as `("SEVERE", "... violates the following Content Security
    /// Policy directive ...")`.
    async fn console(&self) -> Vec<(String, String)> {
        let v = self.browser.issue_cmd(BrowserLog).await.unwrap();
        v.as_array()
            .unwrap_or_else(|| panic!("chromedriver's log is a list: {v}"))
            .iter()
            .map(|e| {
                (
                    e["level"].as_str().unwrap_or("").to_string(),
                    e["message"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    async fn finish(mut self) {
        let _ = self.browser.close().await;
        let _ = self.driver.kill().await;
        self.stop.cancel();
    }
}

/// chromedriver's browser-log endpoint (not in WebDriver's standard, so fantoccini has no
/// method for it).
#[derive(Debug)]
struct BrowserLog;

impl fantoccini::wd::WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (axum::http::Method, Option<String>) {
        (
            axum::http::Method::POST,
            Some(r#"{"type": "browser"}"#.to_string()),
        )
    }
}

/// Whether a console entry is a CSP violation or an error (a failed script, a resource that
/// did not load).
fn is_problem((level, message): &(String, String)) -> bool {
    level == "SEVERE" || message.contains("Content Security Policy")
}

/// Every main page under the CSP in a real Chromium: the DAGs list, a DAG's grid and graph,
/// the trigger form and a run it starts, a task instance with its log, the backfill form and
/// list, the missed intervals, pools, connections, variables, events and the payments
/// dashboard. None may log a CSP violation or an error; and the check can fail: an inline
/// script added to a page is refused and reported.
#[tokio::test]
async fn every_page_works_under_the_csp_without_console_errors() {
    let _one = BROWSER.lock().await;
    let env = Env::start().await;
    env.login().await;
    let mut seen = Vec::new();
    env.assert_clean_console("/ (after login)", &mut seen).await;
    for page in ["/dags/demo", "/dags/demo/graph", "/dags/demo/missed"] {
        env.goto(page).await;
        env.assert_clean_console(page, &mut seen).await;
    }
    env.goto("/dags/demo/trigger").await;
    env.assert_clean_console("/dags/demo/trigger", &mut seen)
        .await;
    env.fill("#trigger-form input[name=logical_date]", "2026-02-01")
        .await;
    env.click("#trigger-form button[type=submit]").await;
    env.wait_for_attr(
        "#run-summary",
        "data-state",
        "success",
        Duration::from_secs(30),
    )
    .await;
    let run = env.path().await;
    env.assert_clean_console(&run, &mut seen).await;
    env.click("#task-list tr[data-task=load] a").await;
    env.wait_for_text("#log", "loaded", Duration::from_secs(10))
        .await;
    let task = env.path().await;
    env.assert_clean_console(&task, &mut seen).await;
    for page in [
        "/dags/demo",
        "/dags/demo/backfill",
        "/backfills",
        "/pools",
        "/connections",
        "/variables",
        "/events",
        "/payments?range=1h",
    ] {
        env.goto(page).await;
        env.assert_clean_console(page, &mut seen).await;
    }
    assert!(seen.len() >= 15, "{seen:?}");

    // The check catches a violation: an inline script is refused (it never runs) and reported.
    env.goto("/").await;
    env.assert_clean_console("/", &mut seen).await;
    let ran = env
        .browser
        .execute(
            "const s = document.createElement('script'); \
             s.textContent = 'window.__inline_ran = true'; \
             document.body.appendChild(s); \
             return window.__inline_ran === true;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(ran, serde_json::Value::Bool(false), "the inline script ran");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let log = env.console().await;
    assert!(
        log.iter()
            .any(|e| is_problem(e) && e.1.contains("Content Security Policy")),
        "no violation reported: {log:#?}"
    );
    env.finish().await;
}

#[tokio::test]
async fn log_in_and_see_the_dags_with_untrusted_text_shown_as_text() {
    let _one = BROWSER.lock().await;
    let env = Env::start().await;
    env.login().await;
    let text = env
        .wait_for_text("#dag-list", "xss", Duration::from_secs(5))
        .await;
    assert!(text.contains("demo") && text.contains("flaky"), "{text}");
    // The description is shown as the text it is, and none of it ran.
    assert!(
        text.contains("<script>window.__xss = 1</script>"),
        "the description is visible as text: {text}"
    );
    let ran = env
        .browser
        .execute(
            "return window.__xss === undefined ? null : window.__xss;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(ran, serde_json::Value::Null, "a script from a DAG file ran");
    env.screenshot("dag-list").await;
    env.finish().await;
}

#[tokio::test]
async fn trigger_a_dag_from_the_ui_and_watch_the_run_turn_green() {
    let _one = BROWSER.lock().await;
    let env = Env::start().await;
    env.login().await;
    env.goto("/dags/demo").await;
    env.click("#trigger-link").await;
    env.fill("#trigger-form input[name=logical_date]", "2026-02-01")
        .await;
    env.fill(
        "#trigger-form textarea[name=conf]",
        r#"{"region": "north"}"#,
    )
    .await;
    env.click("#trigger-form button[type=submit]").await;
    // The run page refreshes itself until the run is done: no reload from the test.
    env.wait_for_attr(
        "#run-summary",
        "data-state",
        "success",
        Duration::from_secs(30),
    )
    .await;
    assert!(env.path().await.starts_with("/dags/demo/runs/"));
    for task in ["extract", "transform", "load"] {
        env.wait_for_attr(
            &format!("#task-list tr[data-task={task}]"),
            "data-state",
            "success",
            Duration::from_secs(5),
        )
        .await;
    }
    let conf = env
        .wait_for_text("#run-conf", "north", Duration::from_secs(5))
        .await;
    assert!(conf.contains("region"), "{conf}");
    env.screenshot("run").await;

    // The task's log, shown as text.
    env.click("#task-list tr[data-task=load] a").await;
    let log = env
        .wait_for_text("#log", "loaded <b>bold</b>", Duration::from_secs(10))
        .await;
    assert!(log.contains("loaded <b>bold</b>"), "{log}");
    env.screenshot("task-log").await;

    // The grid shows the run in its column, green.
    env.goto("/dags/demo").await;
    env.browser
        .wait()
        .for_element(Locator::Css("[data-task=load][data-state=success]"))
        .await
        .unwrap();
    env.screenshot("grid").await;
    env.goto("/dags/demo/graph").await;
    env.browser
        .wait()
        .for_element(Locator::Css("svg"))
        .await
        .unwrap();
    env.screenshot("graph").await;
    env.finish().await;
}

#[tokio::test]
async fn a_bad_conf_is_refused_in_the_form_and_nothing_runs() {
    let _one = BROWSER.lock().await;
    let env = Env::start().await;
    env.login().await;
    env.goto("/dags/demo/trigger").await;
    env.fill(
        "#trigger-form textarea[name=conf]",
        r#"{"regoin": "north"}"#,
    )
    .await;
    env.click("#trigger-form button[type=submit]").await;
    let msg = env
        .wait_for_text("#form-error", "regoin", Duration::from_secs(5))
        .await;
    assert!(!msg.is_empty());
    // What the user typed is still there to correct.
    let kept = env
        .browser
        .find(Locator::Css("#trigger-form textarea[name=conf]"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap()
        .unwrap_or_default();
    assert!(kept.contains("regoin"), "{kept}");
    let manual: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM dag_runs WHERE dag_id = 'demo' AND run_type = 'manual'",
    )
    .fetch_one(&env.db.pool)
    .await
    .unwrap();
    assert_eq!(manual, 0);
    env.finish().await;
}

#[tokio::test]
async fn start_a_backfill_and_watch_its_progress() {
    let _one = BROWSER.lock().await;
    let env = Env::start().await;
    env.login().await;
    env.goto("/dags/demo").await;
    env.click("#backfill-link").await;
    env.fill("#backfill-form input[name=from]", "2026-01-01")
        .await;
    env.fill("#backfill-form input[name=to]", "2026-01-05")
        .await;
    env.click("#backfill-form button[type=submit]").await;
    env.wait_for_attr(
        "#backfill-progress",
        "data-total",
        "5",
        Duration::from_secs(10),
    )
    .await;
    assert!(env.path().await.starts_with("/backfills/"));
    env.wait_for_attr(
        "#backfill-progress",
        "data-done",
        "5",
        Duration::from_secs(60),
    )
    .await;
    env.wait_for_attr(
        "#backfill-progress",
        "data-state",
        "success",
        Duration::from_secs(30),
    )
    .await;
    let rows = env
        .browser
        .find_all(Locator::Css("#backfill-runs tr[data-state=success]"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 5);
    env.screenshot("backfill").await;
    env.finish().await;
}

#[tokio::test]
async fn clear_a_failed_task_and_see_it_run_again() {
    let _one = BROWSER.lock().await;
    let env = Env::start().await;
    env.login().await;
    env.goto("/dags/flaky/trigger").await;
    env.click("#trigger-form button[type=submit]").await;
    env.wait_for_attr(
        "#run-summary",
        "data-state",
        "failed",
        Duration::from_secs(30),
    )
    .await;
    env.wait_for_attr(
        "#task-list tr[data-task=after]",
        "data-state",
        "upstream_failed",
        Duration::from_secs(5),
    )
    .await;
    // What the task needed is there now; clear it and what follows it.
    std::fs::write(env.marker(), "ok").unwrap();
    env.click("#task-list tr[data-task=check] input[name=downstream]")
        .await;
    env.click("#task-list tr[data-task=check] button[type=submit]")
        .await;
    env.browser.accept_alert().await.unwrap();
    env.wait_for_attr(
        "#run-summary",
        "data-state",
        "success",
        Duration::from_secs(30),
    )
    .await;
    env.wait_for_attr(
        "#task-list tr[data-task=check] td[data-try]",
        "data-try",
        "2",
        Duration::from_secs(5),
    )
    .await;
    env.wait_for_attr(
        "#task-list tr[data-task=after]",
        "data-state",
        "success",
        Duration::from_secs(5),
    )
    .await;
    env.finish().await;
}

#[tokio::test]
async fn the_payments_dashboard_draws_its_panels_and_refreshes_itself() {
    let _one = BROWSER.lock().await;
    let env = Env::start().await;
    // 600 payments over the last 50 minutes, and a week of daily summaries.
    sqlx::query(
        "INSERT INTO clean_upi_transactions
            (txn_id, payer, payee, amount, status, event_time, kafka_partition, kafka_offset)
         SELECT 'T' || g, 'user' || (g % 37) || '@' || (ARRAY['oksbi','ybl','okaxis','upi','okhdfcbank'])[1 + g % 5],
                'merchant' || (g % 12) || '@upi', 10 + (g % 500),
                (ARRAY['SUCCESS','SUCCESS','SUCCESS','FAILED','PENDING'])[1 + g % 5],
                now() - (g * interval '5 seconds'), 0, g
         FROM generate_series(1, 600) g",
    )
    .execute(&env.db.pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO daily_upi_summary (date, total_txns, success_txns, failed_txns, pending_txns, total_amount)
         SELECT d::date, 1000 + i * 50, 800 + i * 40, 150, 50 + i * 10, 250000 + i * 1000
         FROM generate_series(0, 6) i, LATERAL (SELECT (now() AT TIME ZONE 'Asia/Kolkata')::date - i AS d) x",
    )
    .execute(&env.db.pool)
    .await
    .unwrap();
    env.login().await;
    env.goto("/payments?range=1h").await;
    let totals = env
        .wait_for_text("[data-panel=totals]", "600", Duration::from_secs(10))
        .await;
    assert!(totals.contains("transactions"), "{totals}");
    for panel in [
        "tpm",
        "status",
        "failures",
        "banks",
        "top-merchants",
        "daily-totals",
    ] {
        env.browser
            .find(Locator::Css(&format!("[data-panel={panel}] svg")))
            .await
            .unwrap_or_else(|e| panic!("panel {panel} has no chart: {e}"));
    }
    // A payment arriving now shows up without reloading the page.
    sqlx::query(
        "INSERT INTO clean_upi_transactions
            (txn_id, payer, payee, amount, status, event_time, kafka_partition, kafka_offset)
         VALUES ('late', 'u@ybl', 'merchant1@upi', 99, 'SUCCESS', now(), 0, 601)",
    )
    .execute(&env.db.pool)
    .await
    .unwrap();
    env.wait_for_text("[data-panel=totals]", "601", Duration::from_secs(15))
        .await;
    env.screenshot("dashboard").await;
    env.finish().await;
}

/// Another site framing the UI: Chromium refuses to show the UI inside it (`frame-ancestors
/// 'none'`), while a page of that site without the policy shows in the same kind of frame.
#[tokio::test]
async fn a_page_of_another_origin_cannot_frame_the_ui() {
    let _one = BROWSER.lock().await;
    let env = Env::start().await;
    // Another origin (another port): a page with two frames, the UI's login page and a
    // control page of its own.
    let other = upiflow_web::listen(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let other_base = format!("http://{}", other.local_addr().unwrap());
    let ui_login = format!("{}/login", env.base);
    let app = axum::Router::new()
        .route(
            "/",
            axum::routing::get(move || {
                let ui_login = ui_login.clone();
                async move {
                    axum::response::Html(format!(
                        "<!doctype html><iframe id=\"ui\" src=\"{ui_login}\"></iframe>\
                         <iframe id=\"control\" src=\"/control\"></iframe>"
                    ))
                }
            }),
        )
        .route(
            "/control",
            axum::routing::get(|| async {
                axum::response::Html("<!doctype html><p id=\"framed\">framed</p>")
            }),
        );
    let stop_other = env.stop.clone();
    tokio::spawn(async move {
        axum::serve(other, app)
            .with_graceful_shutdown(async move { stop_other.cancelled().await })
            .await
    });
    env.browser.goto(&other_base).await.unwrap();
    env.browser
        .wait()
        .for_element(Locator::Css("iframe#control"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    // The control frame (index 1) shows its content.
    env.browser.enter_frame(1).await.unwrap();
    let shown = env
        .browser
        .wait()
        .at_most(Duration::from_secs(5))
        .for_element(Locator::Css("#framed"))
        .await;
    assert!(shown.is_ok(), "a frame without the policy shows its page");
    env.browser.enter_parent_frame().await.unwrap();
    // The UI's frame (index 0) is blocked: no login form inside it.
    env.browser.enter_frame(0).await.unwrap();
    let form = env.browser.find(Locator::Css("input[name=username]")).await;
    assert!(form.is_err(), "the UI showed inside another site's frame");
    env.browser.enter_parent_frame().await.unwrap();
    env.screenshot("framed-by-another-site").await;
    env.finish().await;
}
