//! The web over TLS and behind a proxy, through the real `upiflow web` binary: a certificate
//! made in the test (rcgen, for 127.0.0.1 and localhost) served with `--tls-cert/--tls-key`,
//! signed in through `/login` by an https client that trusts it (cookies `Secure`, HSTS),
//! refused over plain http; Apache Airflow's Python client and a headless Chromium connect
//! over https; bad certificate files are refused before anything listens; `--behind-proxy`
//! trusts `X-Forwarded-Proto` and `X-Forwarded-For`, and without it they are ignored.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncBufReadExt, BufReader};
use upiflow_web::auth::{self, Role};

const BIN: &str = env!("CARGO_BIN_EXE_upiflow");

/// A self-signed certificate for 127.0.0.1 and localhost, written as PEM files.
struct Cert {
    dir: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    pem: String,
    /// base64 of the SHA-256 of its public key (Chromium's way to trust one key).
    spki_sha256: String,
}

fn make_cert() -> Cert {
    let made =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    let dir = std::env::temp_dir().join(format!("upiflow-tls-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let pem = made.cert.pem();
    std::fs::write(&cert, &pem).unwrap();
    std::fs::write(&key, made.key_pair.serialize_pem()).unwrap();
    use base64::Engine;
    use sha2::Digest;
    let spki_sha256 = base64::engine::general_purpose::STANDARD
        .encode(sha2::Sha256::digest(made.key_pair.public_key_der()));
    Cert {
        dir,
        cert,
        key,
        pem,
        spki_sha256,
    }
}

/// A running `upiflow web` and the address it printed.
struct Web {
    child: tokio::process::Child,
    addr: String,
}

impl Drop for Web {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Starts `upiflow web --bind 127.0.0.1:0 ARGS...` on `db` and waits for the line that names
/// its address.
async fn start_web(db: &TestDb, args: &[&str]) -> Web {
    start(db, "web", "upiflow web: ", args, &[]).await
}

/// Starts `upiflow COMMAND --bind 127.0.0.1:0 ARGS...` and waits for the stderr line that
/// starts with `announce` and names its address.
async fn start(
    db: &TestDb,
    command: &str,
    announce: &str,
    args: &[&str],
    env: &[(&str, &Path)],
) -> Web {
    let mut child = tokio::process::Command::new(BIN)
        .args([command, "--bind", "127.0.0.1:0"])
        .args(args)
        .env("DATABASE_URL", &db.url)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(url) = line.strip_prefix(announce) {
                return url.to_string();
            }
        }
        panic!("upiflow {command} exited before listening");
    })
    .await
    .expect("upiflow listens");
    // Keep draining its log so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Web { child, addr }
}

/// An https client that trusts `cert` only (no system roots) and follows no redirect.
fn client_trusting(cert: &Cert) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(cert.pem.as_bytes()).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn plain_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn set_cookies(resp: &reqwest::Response) -> Vec<String> {
    resp.headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

fn is_secure(cookie: &str) -> bool {
    cookie
        .split(';')
        .any(|a| a.trim().eq_ignore_ascii_case("secure"))
}

/// `name=value` of a Set-Cookie line.
fn pair(cookie: &str) -> &str {
    cookie.split(';').next().unwrap()
}

/// Signs in through the login form as a browser would: the form (its CSRF token and the
/// cookie carrying its twin), then the POST. Returns the answers' Set-Cookie lines and the
/// two answers' HSTS headers.
async fn sign_in_through_the_form(
    http: &reqwest::Client,
    base: &str,
    extra: &[(&str, &str)],
    password: &str,
) -> (
    Vec<String>,
    Vec<Option<String>>,
    reqwest::StatusCode,
    String,
) {
    let mut form = http.get(format!("{base}/login"));
    for (k, v) in extra {
        form = form.header(*k, *v);
    }
    let form = form.send().await.unwrap();
    assert_eq!(form.status(), 200);
    let hsts = |r: &reqwest::Response| {
        r.headers()
            .get(reqwest::header::STRICT_TRANSPORT_SECURITY)
            .map(|v| v.to_str().unwrap().to_string())
    };
    let mut cookies = set_cookies(&form);
    let mut hsts_seen = vec![hsts(&form)];
    let html = form.text().await.unwrap();
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("the login form carries a CSRF token")
        .to_string();
    let twin = cookies
        .iter()
        .find(|c| c.starts_with("upiflow_login_csrf="))
        .map(|c| pair(c).to_string())
        .expect("the login form sets its CSRF cookie");
    let mut post = http
        .post(format!("{base}/login"))
        .header(reqwest::header::COOKIE, twin)
        .form(&[
            ("username", "ada"),
            ("password", password),
            ("csrf", csrf.as_str()),
            ("next", "/"),
        ]);
    for (k, v) in extra {
        post = post.header(*k, *v);
    }
    let post = post.send().await.unwrap();
    let status = post.status();
    hsts_seen.push(hsts(&post));
    let signed_in = set_cookies(&post);
    let session = signed_in
        .iter()
        .find(|c| c.starts_with("upiflow_session="))
        .map(|c| pair(c).to_string())
        .unwrap_or_default();
    cookies.extend(signed_in);
    (cookies, hsts_seen, status, session)
}

async fn admin(db: &TestDb) {
    auth::create_user(&db.pool, "ada", "admin-password", Role::Admin)
        .await
        .unwrap();
}

#[tokio::test]
async fn over_tls_a_client_signs_in_with_secure_cookies_and_plain_http_fails() {
    let db = fresh_db().await;
    admin(&db).await;
    let cert = make_cert();
    let web = start_web(
        &db,
        &[
            "--tls-cert",
            cert.cert.to_str().unwrap(),
            "--tls-key",
            cert.key.to_str().unwrap(),
        ],
    )
    .await;
    let base = web.addr.clone();
    assert!(base.starts_with("https://127.0.0.1:"), "{base}");
    let https = client_trusting(&cert);
    let (cookies, hsts, status, session) =
        sign_in_through_the_form(&https, &base, &[], "admin-password").await;
    assert_eq!(status, 303, "signed in and sent on");
    assert!(!session.is_empty(), "a session cookie: {cookies:?}");
    // Every cookie, the CSRF cookie's removal included, is Secure.
    assert!(cookies.len() >= 3, "{cookies:?}");
    for c in &cookies {
        assert!(is_secure(c), "not Secure: {c}");
    }
    for h in &hsts {
        assert_eq!(h.as_deref(), Some("max-age=31536000"));
    }
    // The session works over https.
    let home = https
        .get(format!("{base}/"))
        .header(reqwest::header::COOKIE, &session)
        .send()
        .await
        .unwrap();
    assert_eq!(home.status(), 200);
    assert!(home.text().await.unwrap().contains("dag-list"));

    // The same port over plain http: no answer comes back.
    let plain = base.replace("https://", "http://");
    let r = plain_client().get(format!("{plain}/login")).send().await;
    assert!(r.is_err(), "plain http was answered: {r:?}");
    // A client that does not trust the certificate refuses it.
    let r = plain_client().get(format!("{base}/login")).send().await;
    let e = r.expect_err("an untrusted certificate was accepted");
    assert!(format!("{e:?}").contains("ertificate"), "{e:?}");
    // A client that connects and never starts its handshake holds up no one.
    let silent = tokio::net::TcpStream::connect(base.trim_start_matches("https://"))
        .await
        .unwrap();
    let again = https.get(format!("{base}/login")).send().await.unwrap();
    assert_eq!(again.status(), 200);
    drop(silent);
    // SIGTERM: a graceful stop, as over plain http.
    let mut web = web;
    let pid = nix::unistd::Pid::from_raw(web.child.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(15), web.child.wait())
        .await
        .expect("upiflow web stops on SIGTERM")
        .unwrap();
    assert!(status.success(), "{status:?}");
    let _ = std::fs::remove_dir_all(&cert.dir);
}

/// `upiflow standalone --tls-cert/--tls-key` serves its web over TLS too.
#[tokio::test]
async fn standalone_serves_its_web_over_tls() {
    let db = fresh_db().await;
    admin(&db).await;
    let cert = make_cert();
    let (home, dags) = (cert.dir.join("home"), cert.dir.join("dags"));
    std::fs::create_dir_all(&dags).unwrap();
    // No broker: the orchestrator and web run without ingest.
    let broker = Path::new("127.0.0.1:1");
    let web = start(
        &db,
        "standalone",
        "upiflow standalone: web UI at ",
        &[
            "--tls-cert",
            cert.cert.to_str().unwrap(),
            "--tls-key",
            cert.key.to_str().unwrap(),
        ],
        &[
            ("UPIFLOW_HOME", home.as_path()),
            ("UPIFLOW_DAGS_FOLDER", dags.as_path()),
            ("KAFKA_BOOTSTRAP_SERVERS", broker),
        ],
    )
    .await;
    assert!(web.addr.starts_with("https://"), "{}", web.addr);
    let (cookies, hsts, status, session) =
        sign_in_through_the_form(&client_trusting(&cert), &web.addr, &[], "admin-password").await;
    assert_eq!(status, 303);
    assert!(!session.is_empty());
    assert!(cookies.iter().all(|c| is_secure(c)), "{cookies:?}");
    assert!(
        hsts.iter()
            .all(|h| h.as_deref() == Some("max-age=31536000"))
    );
    drop(web);
    let _ = std::fs::remove_dir_all(&cert.dir);
}

/// Bad certificate files are refused by `upiflow web` and `upiflow standalone` before they
/// listen, with a message that names the file.
#[tokio::test]
async fn bad_certificate_files_are_clear_errors_before_listening() {
    let db = fresh_db().await;
    let cert = make_cert();
    let other = make_cert();
    let missing = cert.dir.join("missing.pem");
    let garbage = cert.dir.join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let cases: Vec<(Vec<String>, Vec<String>)> = vec![
        (
            vec![
                "--tls-cert".into(),
                s(&cert.cert),
                "--tls-key".into(),
                s(&other.key),
            ],
            vec!["does not match".into(), s(&other.key), s(&cert.cert)],
        ),
        (
            vec![
                "--tls-cert".into(),
                s(&missing),
                "--tls-key".into(),
                s(&cert.key),
            ],
            vec!["cannot read the TLS certificate".into(), s(&missing)],
        ),
        (
            vec![
                "--tls-cert".into(),
                s(&cert.cert),
                "--tls-key".into(),
                s(&missing),
            ],
            vec!["cannot read the TLS key".into(), s(&missing)],
        ),
        (
            vec![
                "--tls-cert".into(),
                s(&garbage),
                "--tls-key".into(),
                s(&cert.key),
            ],
            vec!["not a PEM certificate".into(), s(&garbage)],
        ),
        (
            // The two swapped.
            vec![
                "--tls-cert".into(),
                s(&cert.cert),
                "--tls-key".into(),
                s(&cert.cert),
            ],
            vec!["holds no PEM private key".into(), s(&cert.cert)],
        ),
        (
            vec!["--tls-cert".into(), s(&cert.cert)],
            vec!["--tls-key".into(), "required".into()],
        ),
        (
            vec!["--tls-key".into(), s(&cert.key)],
            vec!["--tls-cert".into(), "required".into()],
        ),
    ];
    for command in ["web", "standalone"] {
        for (args, want) in &cases {
            // A port nothing listens on: it must stay that way.
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let bind = format!("127.0.0.1:{port}");
            let data = cert.dir.join(format!("data-{port}"));
            let out = tokio::time::timeout(
                Duration::from_secs(60),
                tokio::process::Command::new(BIN)
                    .arg(command)
                    .args(["--bind", &bind])
                    .args(args)
                    .env("DATABASE_URL", &db.url)
                    .env("UPIFLOW_HOME", &data)
                    .env("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
                    .kill_on_drop(true)
                    .output(),
            )
            .await
            .unwrap_or_else(|_| panic!("{command} {args:?} kept running"))
            .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{command} {args:?} succeeded: {err}");
            for w in want {
                assert!(
                    err.contains(w.as_str()),
                    "{command} {args:?}: `{w}` not in {err}"
                );
            }
            assert!(
                !err.contains("listening") && !err.contains("web UI at"),
                "{command} {args:?} listened first: {err}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&cert.dir);
    let _ = std::fs::remove_dir_all(&other.dir);
}

async fn audit_addr_of_failed_login(db: &TestDb) -> Option<String> {
    sqlx::query_scalar(
        "SELECT remote_addr FROM event_log WHERE event = 'login' AND outcome::text <> 'success' \
         ORDER BY id DESC LIMIT 1",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn behind_a_proxy_forwarded_https_makes_cookies_secure_and_the_forwarded_address_is_logged() {
    let db = fresh_db().await;
    admin(&db).await;
    let web = start_web(&db, &["--behind-proxy"]).await;
    let base = web.addr.clone();
    assert!(base.starts_with("http://"), "{base}");
    let http = plain_client();
    // The proxy says https, and appends the address it saw to what the client sent.
    let proxied = [
        ("x-forwarded-proto", "https"),
        ("x-forwarded-for", "198.51.100.1, 203.0.113.9"),
    ];
    let (cookies, hsts, status, session) =
        sign_in_through_the_form(&http, &base, &proxied, "admin-password").await;
    assert_eq!(status, 303);
    assert!(!session.is_empty());
    for c in &cookies {
        assert!(is_secure(c), "not Secure behind an https proxy: {c}");
    }
    for h in &hsts {
        assert_eq!(h.as_deref(), Some("max-age=31536000"));
    }
    // The proxy says http: neither.
    let (cookies, hsts, ..) = sign_in_through_the_form(
        &http,
        &base,
        &[("x-forwarded-proto", "http")],
        "admin-password",
    )
    .await;
    assert!(cookies.iter().all(|c| !is_secure(c)), "{cookies:?}");
    assert!(hsts.iter().all(Option::is_none), "{hsts:?}");
    // A failed sign-in is logged with the proxy's entry, not the client's forged one.
    let r = http
        .post(format!("{base}/auth/token"))
        .headers(
            proxied
                .iter()
                .map(|(k, v)| (k.parse().unwrap(), v.parse().unwrap()))
                .collect(),
        )
        .json(&serde_json::json!({"username": "ada", "password": "wrong-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        audit_addr_of_failed_login(&db).await.as_deref(),
        Some("203.0.113.9")
    );
}

#[tokio::test]
async fn without_behind_proxy_forged_forwarded_headers_are_ignored() {
    let db = fresh_db().await;
    admin(&db).await;
    let web = start_web(&db, &[]).await;
    let base = web.addr.clone();
    let http = plain_client();
    let forged = [
        ("x-forwarded-proto", "https"),
        ("x-forwarded-for", "203.0.113.9"),
    ];
    let (cookies, hsts, status, session) =
        sign_in_through_the_form(&http, &base, &forged, "admin-password").await;
    assert_eq!(status, 303);
    assert!(!session.is_empty());
    assert!(cookies.iter().all(|c| !is_secure(c)), "{cookies:?}");
    assert!(hsts.iter().all(Option::is_none), "{hsts:?}");
    let r = http
        .post(format!("{base}/auth/token"))
        .headers(
            forged
                .iter()
                .map(|(k, v)| (k.parse().unwrap(), v.parse().unwrap()))
                .collect(),
        )
        .json(&serde_json::json!({"username": "ada", "password": "wrong-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        audit_addr_of_failed_login(&db).await.as_deref(),
        Some("127.0.0.1")
    );
}

fn python() -> PathBuf {
    if let Ok(p) = std::env::var("UPIFLOW_AIRFLOW_CLIENT_PYTHON") {
        return PathBuf::from(p);
    }
    let venv =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/airflow-client-venv/bin/python");
    assert!(
        venv.exists(),
        "{} is missing: scripts/test.sh installs apache-airflow-client there",
        venv.display()
    );
    venv
}

/// Airflow's client over https: it trusts the test's certificate through `ssl_ca_cert`, gets a
/// token and lists the DAGs; without the certificate it refuses the server.
const PYTHON_CLIENT: &str = r#"
import json, os, ssl, sys, urllib.request
import airflow_client.client as af
from airflow_client.client.api import dag_api

url, ca = os.environ["UPIFLOW_URL"], os.environ["UPIFLOW_CA"]
req = urllib.request.Request(
    url + "/auth/token",
    data=json.dumps({"username": "ada", "password": "admin-password"}).encode(),
    headers={"Content-Type": "application/json"},
)
ctx = ssl.create_default_context(cafile=ca)
token = json.load(urllib.request.urlopen(req, context=ctx))["access_token"]
with af.ApiClient(af.Configuration(host=url, access_token=token, ssl_ca_cert=ca)) as c:
    dags = dag_api.DAGApi(c).get_dags()
    ids = [d.dag_id for d in dags.dags]
    if ids != ["hello"] or dags.total_entries != 1:
        sys.exit(f"unexpected DAGs: {ids}")
try:
    with af.ApiClient(af.Configuration(host=url, access_token=token)) as c:
        dag_api.DAGApi(c).get_dags()
    sys.exit("a client without the certificate was answered")
except Exception as e:
    if "CERTIFICATE_VERIFY_FAILED" not in str(e):
        raise
print("ok")
"#;

#[tokio::test]
async fn airflows_python_client_lists_dags_over_https() {
    let db = fresh_db().await;
    admin(&db).await;
    let dags = dags_dir(&[(
        "hello.toml",
        "dag_id = \"hello\"\nschedule = \"none\"\nstart_date = \"2026-01-01\"\n\
         [[tasks]]\nid = \"a\"\nkind = \"noop\"\n",
    )]);
    let stop = tokio_util::sync::CancellationToken::new();
    let mut cfg = upiflow_engine::scheduler::SchedulerConfig::new(dags);
    cfg.poll = Duration::from_millis(200);
    tokio::spawn(
        upiflow_engine::scheduler::Scheduler::new(db.pool.clone(), upiflow_tasks::registry(), cfg)
            .run(stop.clone()),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM dags")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        if n == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the scheduler did not sync");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let cert = make_cert();
    let web = start_web(
        &db,
        &[
            "--tls-cert",
            cert.cert.to_str().unwrap(),
            "--tls-key",
            cert.key.to_str().unwrap(),
        ],
    )
    .await;
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(python())
            .args(["-c", PYTHON_CLIENT])
            .env("UPIFLOW_URL", &web.addr)
            .env("UPIFLOW_CA", &cert.cert)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the client finishes")
    .expect("python runs");
    stop.cancel();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.trim_end().ends_with("ok"),
        "Airflow's client over https:\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    let _ = std::fs::remove_dir_all(&cert.dir);
}

/// A real headless Chromium that trusts the test's certificate (by its key, with
/// `--ignore-certificate-errors-spki-list`, nothing else) signs in over https.
#[tokio::test]
async fn chromium_signs_in_over_https() {
    use fantoccini::{ClientBuilder, Locator};
    let db = fresh_db().await;
    admin(&db).await;
    let cert = make_cert();
    let web = start_web(
        &db,
        &[
            "--tls-cert",
            cert.cert.to_str().unwrap(),
            "--tls-key",
            cert.key.to_str().unwrap(),
        ],
    )
    .await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut driver = tokio::process::Command::new("/usr/bin/chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start chromedriver (Debian's chromium-driver)");
    let profile = cert.dir.join("chromium-profile");
    let caps = serde_json::json!({
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--disable-background-networking", "--disable-sync",
                format!("--user-data-dir={}", profile.display()),
                format!("--ignore-certificate-errors-spki-list={}", cert.spki_sha256),
            ],
        }
    });
    let serde_json::Value::Object(caps) = caps else {
        unreachable!()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let browser = loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(c) => break c,
            Err(e) => {
                assert!(Instant::now() < deadline, "cannot reach chromedriver: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    browser.goto(&format!("{}/", web.addr)).await.unwrap();
    let user = browser
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("input[name=username]"))
        .await
        .expect("the login page over https");
    user.send_keys("ada").await.unwrap();
    browser
        .find(Locator::Css("input[name=password]"))
        .await
        .unwrap()
        .send_keys("admin-password")
        .await
        .unwrap();
    browser
        .find(Locator::Css("form button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("#dag-list"))
        .await
        .expect("signed in over https");
    let url = browser.current_url().await.unwrap();
    assert_eq!(url.scheme(), "https");
    let secure = browser
        .execute("return window.isSecureContext;", vec![])
        .await
        .unwrap();
    assert_eq!(secure, serde_json::Value::Bool(true));
    let _ = browser.close().await;
    let _ = driver.kill().await;
    let _ = std::fs::remove_dir_all(&cert.dir);
}
