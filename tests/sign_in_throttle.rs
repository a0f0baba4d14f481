//! Sign-in throttling (Airflow's `[fab] auth_rate_limit`, default `5 per 40 second`) through
//! real servers on real sockets against a real Postgres: per username and per client
//! address, on every sign-in path (`/auth/token`, HTTP Basic, the login form), shared by two
//! `upiflow web` processes, quick to refuse (no password hashed), configurable and
//! switchable off, and a bad setting refused at start.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::process::Stdio;
use std::time::Duration;

use common::*;
use serde_json::json;
use tokio::io::AsyncBufReadExt;
use tokio_util::sync::CancellationToken;
use upiflow_web::auth::{self, Role};
use upiflow_web::throttle::Limit;

const ADA_PASSWORD: &str = "admin-password";

fn local() -> IpAddr {
    IpAddr::from([127, 0, 0, 1])
}

/// `POST /auth/token` as `user` from `from`.
async fn token(to: SocketAddr, from: IpAddr, user: &str, password: &str) -> Answer {
    let body = json!({"username": user, "password": password}).to_string();
    send(
        to,
        from,
        "POST /auth/token HTTP/1.1\r\nContent-Type: application/json",
        &body,
    )
    .await
}

/// A read of the API with HTTP Basic credentials.
async fn basic_get(to: SocketAddr, user: &str, password: &str) -> Answer {
    let head = format!(
        "GET /api/v2/dags HTTP/1.1\r\nAuthorization: {}",
        basic(user, password)
    );
    send(to, local(), &head, "").await
}

fn assert_throttled(a: &Answer, window: u64) {
    assert_eq!(a.status, 429, "{a:?}");
    let secs = a.retry_after();
    assert!((1..=window).contains(&secs), "Retry-After {secs}: {a:?}");
    let detail = a.json()["detail"].as_str().unwrap().to_string();
    assert_eq!(
        detail,
        format!("too many failed sign-ins; try again in {secs} s")
    );
}

/// A database with the admin `ada` and the viewer `vic`.
async fn db_with_users() -> TestDb {
    let db = fresh_db().await;
    auth::create_user(&db.pool, "ada", ADA_PASSWORD, Role::Admin)
        .await
        .unwrap();
    auth::create_user(&db.pool, "vic", "viewer-password", Role::Viewer)
        .await
        .unwrap();
    db
}

/// An in-process web server on a real socket, throttled as `limit` says.
struct Server {
    addr: SocketAddr,
    stop: CancellationToken,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn server(db: &TestDb, limit: Limit) -> Server {
    let mut state = web_state(&db.pool).await;
    state.throttle = limit;
    let listener = upiflow_web::listen("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let s = stop.clone();
    tokio::spawn(upiflow_web::serve(listener, state, async move {
        s.cancelled().await
    }));
    Server { addr, stop }
}

fn rate(max: u32, secs: u64) -> Limit {
    Limit::per(max, Duration::from_secs(secs)).unwrap()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The newest `login` row of the audit log: its outcome and the status it notes.
async fn last_login(db: &TestDb) -> (String, Option<i64>, Option<String>) {
    sqlx::query_as(
        "SELECT outcome, (extra->>'status')::bigint, owner FROM event_log
         WHERE event = 'login' ORDER BY id DESC LIMIT 1",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap()
}

async fn rows(db: &TestDb, key: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM sign_in_failures WHERE key = $1")
        .bind(key)
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_sixth_wrong_password_within_40_s_is_a_quick_429_with_retry_after() {
    let db = db_with_users().await;
    let s = server(&db, Limit::default()).await;
    let mut wrong = Vec::new();
    for _ in 0..5 {
        let a = token(s.addr, local(), "ada", "wrong-password").await;
        assert_eq!(a.status, 401, "{a:?}");
        wrong.push(a.took);
    }
    let a = token(s.addr, local(), "ada", "wrong-password").await;
    assert_throttled(&a, 40);
    // The right password too, while the window lasts.
    let a = token(s.addr, local(), "ada", ADA_PASSWORD).await;
    assert_throttled(&a, 40);
    // Refused before any hashing: well under a checked password's time. The machine may be
    // busy (tests run in parallel, argon2 takes whole cores), so the fastest of 45 attempts is
    // the server's own time, undisturbed: a hash would make even that one take tens of ms.
    // The medians, which the load inflates, still must be far below a checked password's.
    let mut rounds = Vec::new();
    let mut fastest = Duration::MAX;
    for _ in 0..3 {
        let mut throttled = Vec::new();
        for i in 0..15 {
            let password = if i % 2 == 0 { ADA_PASSWORD } else { "wrong" };
            let a = token(s.addr, local(), "ada", password).await;
            assert_eq!(a.status, 429, "{a:?}");
            fastest = fastest.min(a.took);
            throttled.push(a.took);
        }
        rounds.push(median(throttled));
    }
    let (quick, slow) = (*rounds.iter().min().unwrap(), median(wrong));
    eprintln!(
        "429: fastest {fastest:?}, median per round {rounds:?}; median 401 (argon2): {slow:?}"
    );
    assert!(
        fastest < Duration::from_millis(5),
        "429 took {fastest:?} at best"
    );
    assert!(quick * 5 < slow, "429 {quick:?} vs 401 {slow:?}");
    // Throttled attempts are not failures: the count stays at 5.
    assert_eq!(rows(&db, "user:ada").await, 5);
    assert_eq!(rows(&db, "addr:127.0.0.1").await, 5);
    // The audit log has the refusal.
    assert_eq!(
        last_login(&db).await,
        ("refused".into(), Some(429), Some("ada".into()))
    );
    // Another user from another address is not affected.
    let a = token(
        s.addr,
        IpAddr::from([127, 0, 0, 2]),
        "vic",
        "viewer-password",
    )
    .await;
    assert_eq!(a.status, 201, "{a:?}");
}

#[tokio::test]
async fn the_right_password_waits_for_the_window_and_a_success_does_not_reset_the_count() {
    let db = db_with_users().await;
    // Short, but long enough for six argon2 checks on a busy machine.
    let s = server(&db, rate(5, 5)).await;
    // A success among failures neither counts nor resets: the fifth failure throttles.
    for i in 0..6 {
        let (password, want) = if i == 2 {
            (ADA_PASSWORD, 201)
        } else {
            ("wrong-password", 401)
        };
        let a = token(s.addr, local(), "ada", password).await;
        assert_eq!(a.status, want, "attempt {i}: {a:?}");
    }
    let a = token(s.addr, local(), "ada", ADA_PASSWORD).await;
    assert_throttled(&a, 5);
    // Retry-After is when the oldest counted failure leaves the window: waiting it out is
    // enough, and a moment before it is not.
    let wait = Duration::from_secs(a.retry_after());
    let early = token(s.addr, local(), "ada", ADA_PASSWORD).await;
    assert_eq!(early.status, 429, "{early:?}");
    tokio::time::sleep(wait + Duration::from_millis(150)).await;
    let a = token(s.addr, local(), "ada", ADA_PASSWORD).await;
    assert_eq!(a.status, 201, "{a:?}");
    assert!(a.json()["access_token"].as_str().is_some());
}

#[tokio::test]
async fn failures_from_one_address_throttle_every_user_from_it_and_one_users_every_address() {
    let db = db_with_users().await;
    let s = server(&db, Limit::default()).await;
    let attacker = IpAddr::from([127, 0, 0, 3]);
    for i in 0..5 {
        let a = token(s.addr, attacker, &format!("guess{i}"), "password").await;
        assert_eq!(a.status, 401, "{a:?}");
    }
    // A sixth user from that address, right password and all: refused.
    let a = token(s.addr, attacker, "ada", ADA_PASSWORD).await;
    assert_throttled(&a, 40);
    // The same user from elsewhere is fine: ada has no failure of her own.
    let a = token(s.addr, local(), "ada", ADA_PASSWORD).await;
    assert_eq!(a.status, 201, "{a:?}");
    // Five failures for one user from five addresses throttle that user from a sixth.
    for i in 0..5u8 {
        let a = token(s.addr, IpAddr::from([127, 0, 1, 10 + i]), "vic", "nope").await;
        assert_eq!(a.status, 401, "{a:?}");
    }
    let a = token(
        s.addr,
        IpAddr::from([127, 0, 1, 20]),
        "vic",
        "viewer-password",
    )
    .await;
    assert_throttled(&a, 40);
}

#[tokio::test]
async fn http_basic_is_throttled_like_a_token_request() {
    let db = db_with_users().await;
    let s = server(&db, Limit::default()).await;
    for _ in 0..5 {
        let a = basic_get(s.addr, "vic", "wrong-password").await;
        assert_eq!(a.status, 401, "{a:?}");
    }
    let a = basic_get(s.addr, "vic", "wrong-password").await;
    assert_throttled(&a, 40);
    let a = basic_get(s.addr, "vic", "viewer-password").await;
    assert_throttled(&a, 40);
    // Basic and the token endpoint count together.
    let a = token(
        s.addr,
        IpAddr::from([127, 0, 0, 4]),
        "vic",
        "viewer-password",
    )
    .await;
    assert_throttled(&a, 40);
}

#[tokio::test]
async fn the_login_form_says_how_long_to_wait_with_a_429() {
    let db = db_with_users().await;
    let s = server(&db, Limit::default()).await;
    let page = send(s.addr, local(), "GET /login HTTP/1.1", "").await;
    let cookie = page
        .headers
        .iter()
        .find(|(k, v)| k.eq_ignore_ascii_case("set-cookie") && v.contains("csrf"))
        .map(|(_, v)| v.split(';').next().unwrap().to_string())
        .expect("a CSRF cookie");
    let marker = "name=\"csrf\" value=\"";
    let at = page.body.find(marker).unwrap() + marker.len();
    let csrf = page.body[at..].split('"').next().unwrap().to_string();
    let to = s.addr;
    let post = |password: &'static str| {
        let (cookie, csrf) = (cookie.clone(), csrf.clone());
        async move {
            let form = serde_urlencoded::to_string([
                ("username", "ada"),
                ("password", password),
                ("csrf", csrf.as_str()),
                ("next", "/"),
            ])
            .unwrap();
            let head = format!(
                "POST /login HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\n\
                 Cookie: {cookie}"
            );
            send(to, local(), &head, &form).await
        }
    };
    for _ in 0..5 {
        let a = post("wrong-password").await;
        assert_eq!(a.status, 303, "{a:?}");
        assert!(a.header("location").unwrap().contains("error=1"), "{a:?}");
    }
    let a = post(ADA_PASSWORD).await;
    assert_eq!(a.status, 429, "{a:?}");
    let secs = a.retry_after();
    assert!((1..=40).contains(&secs), "{secs}");
    assert!(
        a.body
            .contains(&format!("too many failed sign-ins; try again in {secs} s")),
        "{}",
        a.body
    );
    // Still the login form, ready for the next try.
    assert!(a.body.contains("action=\"/login\""), "{}", a.body);
    assert!(a.body.contains(&csrf), "{}", a.body);
    assert_eq!(
        last_login(&db).await,
        ("refused".into(), Some(429), Some("ada".into()))
    );
}

#[tokio::test]
async fn concurrent_wrong_passwords_cannot_slip_under_the_limit() {
    let db = db_with_users().await;
    let s = server(&db, Limit::default()).await;
    // Spawned at once, so they race each other through the check.
    let tries: Vec<_> = (0..12)
        .map(|i| {
            let addr = s.addr;
            // Different addresses, so only the user's count is at stake.
            tokio::spawn(async move {
                token(addr, IpAddr::from([127, 0, 2, i]), "ada", "wrong-password")
                    .await
                    .status
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tries {
        statuses.push(t.await.unwrap());
    }
    statuses.sort();
    assert_eq!(statuses, [[401; 5].as_slice(), &[429; 7]].concat());
}

#[tokio::test]
async fn throttling_can_be_turned_off() {
    let db = db_with_users().await;
    let s = server(&db, Limit::Off).await;
    for _ in 0..8 {
        let a = token(s.addr, local(), "ada", "wrong-password").await;
        assert_eq!(a.status, 401, "{a:?}");
    }
    let a = token(s.addr, local(), "ada", ADA_PASSWORD).await;
    assert_eq!(a.status, 201, "{a:?}");
    assert_eq!(rows(&db, "user:ada").await, 0);
}

#[tokio::test]
async fn failures_past_the_window_are_swept_as_new_ones_come() {
    let db = db_with_users().await;
    // Long enough for five argon2 checks on a busy machine.
    let s = server(&db, rate(50, 3)).await;
    for i in 0..5 {
        let a = token(s.addr, local(), &format!("u{i}"), "password").await;
        assert_eq!(a.status, 401, "{a:?}");
    }
    let all = |db: &TestDb| {
        let pool = db.pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM sign_in_failures")
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    assert_eq!(all(&db).await, 10);
    tokio::time::sleep(Duration::from_millis(3200)).await;
    let a = token(s.addr, local(), "late", "password").await;
    assert_eq!(a.status, 401, "{a:?}");
    assert_eq!(all(&db).await, 2);
}

/// A `upiflow web` process on `db`, with these environment variables; its address.
struct WebProcess {
    child: tokio::process::Child,
    addr: SocketAddr,
}

impl Drop for WebProcess {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

fn web_command(db: &TestDb, env: &[(&str, &str)]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_upiflow"));
    cmd.args(["web", "--bind", "127.0.0.1:0"])
        .env("DATABASE_URL", &db.url)
        .env("UPIFLOW_DAGS_FOLDER", dags_dir(&[]))
        .env("RUST_LOG", "warn")
        .env_remove("UPIFLOW_AUTH_RATE_LIMIT")
        .env_remove("UPIFLOW_AUTH_RATE_LIMITED")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

async fn web_process(db: &TestDb, env: &[(&str, &str)]) -> WebProcess {
    let mut child = web_command(db, env).spawn().unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(a) = line.strip_prefix("upiflow web: http://") {
                return a.parse::<SocketAddr>().unwrap();
            }
        }
        panic!("upiflow web ended before listening");
    })
    .await
    .expect("upiflow web listens");
    // Keep reading, so a chatty process never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    WebProcess { child, addr }
}

#[tokio::test]
async fn two_web_processes_on_one_database_share_the_throttle_as_configured() {
    let db = db_with_users().await;
    let limit = [("UPIFLOW_AUTH_RATE_LIMIT", "3 per 30 seconds")];
    let a = web_process(&db, &limit).await;
    let b = web_process(&db, &limit).await;
    // Two failures on one process, one on the other: the limit of 3 is reached.
    for to in [a.addr, a.addr, b.addr] {
        let r = token(to, local(), "ada", "wrong-password").await;
        assert_eq!(r.status, 401, "{r:?}");
    }
    for to in [a.addr, b.addr] {
        let r = token(to, IpAddr::from([127, 0, 0, 5]), "ada", ADA_PASSWORD).await;
        assert_throttled(&r, 30);
    }
}

#[tokio::test]
async fn the_environment_can_turn_throttling_off() {
    let db = db_with_users().await;
    let w = web_process(&db, &[("UPIFLOW_AUTH_RATE_LIMITED", "false")]).await;
    for _ in 0..7 {
        let r = token(w.addr, local(), "ada", "wrong-password").await;
        assert_eq!(r.status, 401, "{r:?}");
    }
    let r = token(w.addr, local(), "ada", ADA_PASSWORD).await;
    assert_eq!(r.status, 201, "{r:?}");
}

#[tokio::test]
async fn a_bad_rate_limit_stops_the_web_at_start_with_a_clear_message() {
    let db = db_with_users().await;
    for (env, says) in [
        (
            ("UPIFLOW_AUTH_RATE_LIMIT", "5 per fortnight"),
            "UPIFLOW_AUTH_RATE_LIMIT: `5 per fortnight`: unknown unit `fortnight`",
        ),
        (
            ("UPIFLOW_AUTH_RATE_LIMIT", "lots"),
            "UPIFLOW_AUTH_RATE_LIMIT: `lots` is not a rate limit",
        ),
        (
            ("UPIFLOW_AUTH_RATE_LIMITED", "sometimes"),
            "UPIFLOW_AUTH_RATE_LIMITED: `sometimes` is not a boolean",
        ),
    ] {
        let out = tokio::time::timeout(Duration::from_secs(60), web_command(&db, &[env]).output())
            .await
            .expect("upiflow web stops")
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{env:?}: {stderr}");
        assert!(stderr.contains(says), "{env:?}: {stderr}");
        assert!(!stderr.contains("listening"), "{env:?}: {stderr}");
    }
}

#[tokio::test]
async fn odd_usernames_are_counted_like_any_other_never_a_500() {
    let db = db_with_users().await;
    let s = server(&db, Limit::default()).await;
    // Longer than any index entry could hold: counted by its first 256 bytes.
    let long = "x".repeat(100_000);
    for i in 0..6 {
        let a = token(s.addr, IpAddr::from([127, 0, 3, i]), &long, "password").await;
        let want = if i < 5 { 401 } else { 429 };
        assert_eq!(a.status, want, "attempt {i}: {}", a.body);
    }
    // A NUL cannot be stored in Postgres text: a client error, not a crash.
    let a = token(s.addr, IpAddr::from([127, 0, 3, 9]), "a\0b", "password").await;
    assert!((400..500).contains(&a.status), "{a:?}");
}
