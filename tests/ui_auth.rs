//! The UI's sign-in, session cookie and CSRF protection, in-process against a real Postgres:
//! pages need a session, forms need the session's CSRF token, viewers cannot change anything,
//! sessions and API tokens are not interchangeable, and what a DAG file says is escaped.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::*;
use tower::ServiceExt;
use upiflow_web::auth::{self, Role};

struct Ui {
    app: axum::Router,
    db: TestDb,
}

async fn ui() -> Ui {
    let db = fresh_db().await;
    auth::create_user(&db.pool, "ada", "admin-password", Role::Admin)
        .await
        .unwrap();
    auth::create_user(&db.pool, "vic", "viewer-password", Role::Viewer)
        .await
        .unwrap();
    let dir = dags_dir(&[(
        "d.toml",
        "dag_id = \"d\"\ndescription = \"<script>alert(1)</script>\"\nschedule = \"@daily\"\n\
         [[tasks]]\nid = \"a\"\nkind = \"noop\"\n",
    )]);
    let dag = load(&dir, "d.toml");
    let mut conn = db.pool.acquire().await.unwrap();
    upiflow_engine::store::dags::sync(&mut conn, &dag)
        .await
        .unwrap();
    let state = upiflow_web::AppState::new(db.pool.clone()).await.unwrap();
    Ui {
        app: upiflow_web::app(state),
        db,
    }
}

struct Resp {
    status: StatusCode,
    location: Option<String>,
    set_cookies: Vec<String>,
    body: String,
}

impl Resp {
    /// `name=value` of a cookie the response set.
    fn cookie(&self, name: &str) -> Option<String> {
        self.set_cookies
            .iter()
            .find(|c| c.starts_with(&format!("{name}=")))
            .map(|c| c.split(';').next().unwrap().to_string())
    }

    /// The value of the first hidden input named `name`.
    fn hidden(&self, name: &str) -> String {
        let marker = format!("name=\"{name}\" value=\"");
        let at = self.body.find(&marker).expect("hidden input") + marker.len();
        self.body[at..].split('"').next().unwrap().to_string()
    }
}

impl Ui {
    async fn send(
        &self,
        method: &str,
        uri: &str,
        cookie: Option<&str>,
        form: Option<&str>,
    ) -> Resp {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(c) = cookie {
            req = req.header(header::COOKIE, c);
        }
        let req = match form {
            Some(f) => req
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(f.to_string())),
            None => req.body(Body::empty()),
        }
        .unwrap();
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let location = resp
            .headers()
            .get(header::LOCATION)
            .map(|v| v.to_str().unwrap().to_string());
        let set_cookies = resp
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 22)
            .await
            .unwrap();
        Resp {
            status,
            location,
            set_cookies,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    /// Logs in through the form, as a browser does; returns the session cookie.
    async fn login(&self, user: &str, password: &str) -> String {
        let page = self.send("GET", "/login?next=/", None, None).await;
        assert_eq!(page.status, StatusCode::OK);
        let twin = page
            .cookie("upiflow_login_csrf")
            .expect("login csrf cookie");
        let csrf = page.hidden("csrf");
        let form = format!("username={user}&password={password}&csrf={csrf}&next=%2F");
        let resp = self.send("POST", "/login", Some(&twin), Some(&form)).await;
        assert_eq!(resp.status, StatusCode::SEE_OTHER, "{}", resp.body);
        assert_eq!(resp.location.as_deref(), Some("/"));
        let set = resp
            .set_cookies
            .iter()
            .find(|c| c.starts_with("upiflow_session="))
            .expect("session cookie")
            .clone();
        assert!(set.contains("HttpOnly"), "{set}");
        assert!(set.contains("SameSite=Strict"), "{set}");
        resp.cookie("upiflow_session").unwrap()
    }
}

#[tokio::test]
async fn pages_need_a_session_and_send_you_back_after_login() {
    let ui = ui().await;
    let resp = ui.send("GET", "/?x=1", None, None).await;
    assert_eq!(resp.status, StatusCode::SEE_OTHER);
    assert_eq!(resp.location.as_deref(), Some("/login?next=%2F%3Fx%3D1"));
    let login = ui.send("GET", "/login?next=%2Fdags%2Fd", None, None).await;
    assert_eq!(login.hidden("next"), "/dags/d");

    let cookie = ui.login("ada", "admin-password").await;
    let home = ui.send("GET", "/", Some(&cookie), None).await;
    assert_eq!(home.status, StatusCode::OK);
    assert!(home.body.contains("ada"));
    assert!(home.body.contains("data-dag=\"d\""));
}

#[tokio::test]
async fn a_wrong_password_or_a_forged_form_does_not_log_in() {
    let ui = ui().await;
    let page = ui.send("GET", "/login", None, None).await;
    let twin = page.cookie("upiflow_login_csrf").unwrap();
    let csrf = page.hidden("csrf");

    let wrong = format!("username=ada&password=nope&csrf={csrf}");
    let resp = ui.send("POST", "/login", Some(&twin), Some(&wrong)).await;
    assert_eq!(resp.status, StatusCode::SEE_OTHER);
    assert!(resp.location.as_deref().unwrap().contains("error=1"));
    assert!(resp.cookie("upiflow_session").is_none());

    // The right password, but the form's token does not match the browser's cookie
    // (a form posted from another site).
    let forged = "username=ada&password=admin-password&csrf=guess";
    let resp = ui.send("POST", "/login", Some(&twin), Some(forged)).await;
    assert!(resp.cookie("upiflow_session").is_none());
    let resp = ui
        .send(
            "POST",
            "/login",
            None,
            Some(&format!("username=ada&password=admin-password&csrf={csrf}")),
        )
        .await;
    assert!(resp.cookie("upiflow_session").is_none());

    let shown = ui.send("GET", "/login?error=1", None, None).await;
    assert!(shown.body.contains("Wrong username or password"));
}

#[tokio::test]
async fn next_never_leaves_the_site() {
    let ui = ui().await;
    for evil in [
        "//evil.example/x",
        "https://evil.example/",
        "/\\evil.example",
    ] {
        let q = serde_urlencoded::to_string([("next", evil)]).unwrap();
        let page = ui.send("GET", &format!("/login?{q}"), None, None).await;
        assert_eq!(page.hidden("next"), "/", "{evil}");
    }
}

#[tokio::test]
async fn forms_need_the_sessions_csrf_token_and_the_admin_role() {
    let ui = ui().await;
    let admin = ui.login("ada", "admin-password").await;
    let viewer = ui.login("vic", "viewer-password").await;
    let home = ui.send("GET", "/", Some(&admin), None).await;
    let csrf = home.hidden("csrf");

    let paused = || async {
        sqlx::query_scalar::<_, bool>("SELECT is_paused FROM dags WHERE dag_id = 'd'")
            .fetch_one(&ui.db.pool)
            .await
            .unwrap()
    };
    let before = paused().await;

    let no_token = ui
        .send("POST", "/dags/d/pause", Some(&admin), Some("paused=true"))
        .await;
    assert_eq!(no_token.status, StatusCode::FORBIDDEN);
    assert!(no_token.body.contains("CSRF"));
    let wrong = ui
        .send(
            "POST",
            "/dags/d/pause",
            Some(&admin),
            Some("paused=true&csrf=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    // A viewer's own token does not make it an admin.
    let vcsrf = ui
        .send("GET", "/", Some(&viewer), None)
        .await
        .hidden("csrf");
    let as_viewer = ui
        .send(
            "POST",
            "/dags/d/pause",
            Some(&viewer),
            Some(&format!("paused=true&csrf={vcsrf}")),
        )
        .await;
    assert_eq!(as_viewer.status, StatusCode::FORBIDDEN);
    assert_eq!(paused().await, before, "nothing changed yet");

    let ok = ui
        .send(
            "POST",
            "/dags/d/pause",
            Some(&admin),
            Some(&format!("paused={}&csrf={csrf}", !before)),
        )
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    assert_eq!(paused().await, !before);

    let unknown = ui
        .send(
            "POST",
            "/dags/nope/pause",
            Some(&admin),
            Some(&format!("paused=true&csrf={csrf}")),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let bad = ui
        .send(
            "POST",
            "/dags/d/pause",
            Some(&admin),
            Some(&format!("paused=maybe&csrf={csrf}")),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn logout_needs_the_token_and_ends_the_session() {
    let ui = ui().await;
    let admin = ui.login("ada", "admin-password").await;
    let csrf = ui.send("GET", "/", Some(&admin), None).await.hidden("csrf");
    let forged = ui.send("POST", "/logout", Some(&admin), Some("")).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let out = ui
        .send(
            "POST",
            "/logout",
            Some(&admin),
            Some(&format!("csrf={csrf}")),
        )
        .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    let cleared = out
        .set_cookies
        .iter()
        .find(|c| c.starts_with("upiflow_session="))
        .unwrap();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
}

#[tokio::test]
async fn sessions_and_api_tokens_are_not_interchangeable() {
    let ui = ui().await;
    let admin = ui.login("ada", "admin-password").await;
    let session_token = admin.trim_start_matches("upiflow_session=");
    let resp = ui
        .app
        .clone()
        .oneshot(
            Request::builder()
                .uri("/api/v2/dags")
                .header(header::AUTHORIZATION, format!("Bearer {session_token}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    let key = upiflow_web::auth::signing_key(&ui.db.pool).await.unwrap();
    let api_token = auth::issue_token(
        &key,
        "ada",
        upiflow_web::auth::Grant {
            role: Role::Admin,
            version: 0,
        },
    )
    .unwrap();
    let page = ui
        .send(
            "GET",
            "/",
            Some(&format!("upiflow_session={api_token}")),
            None,
        )
        .await;
    assert_eq!(
        page.status,
        StatusCode::SEE_OTHER,
        "an API token is no session"
    );
}

#[tokio::test]
async fn what_dag_files_say_is_shown_as_text() {
    let ui = ui().await;
    let admin = ui.login("ada", "admin-password").await;
    let home = ui.send("GET", "/", Some(&admin), None).await;
    assert!(!home.body.contains("<script>alert(1)</script>"));
    assert!(home.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
}

#[tokio::test]
async fn the_first_admin_is_created_once() {
    let db = fresh_db().await;
    let first = auth::ensure_first_admin(&db.pool).await.unwrap();
    let password = first.expect("a password on first start");
    assert!(password.len() >= 16);
    assert_eq!(
        auth::check_password(&db.pool, "admin", &password)
            .await
            .unwrap()
            .map(|g| g.role),
        Some(Role::Admin)
    );
    assert_eq!(auth::ensure_first_admin(&db.pool).await.unwrap(), None);
}

#[tokio::test]
async fn the_refresh_fragment_is_only_the_region() {
    let ui = ui().await;
    let admin = ui.login("ada", "admin-password").await;
    let req = Request::builder()
        .uri("/")
        .header(header::COOKIE, &admin)
        .header("x-fragment", "1")
        .body(Body::empty())
        .unwrap();
    let resp = ui.app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    let body = String::from_utf8_lossy(&body);
    assert!(body.contains("dag-list"));
    assert!(!body.contains("<html"));
}

#[tokio::test]
async fn a_form_over_the_limit_is_a_413_page() {
    let ui = ui().await;
    let admin = ui.login("ada", "admin-password").await;
    let csrf = ui.send("GET", "/", Some(&admin), None).await.hidden("csrf");
    let big = "x".repeat(upiflow_web::BODY_LIMIT + 1);
    let resp = ui
        .send(
            "POST",
            "/dags/d/pause",
            Some(&admin),
            Some(&format!("paused=true&csrf={csrf}&pad={big}")),
        )
        .await;
    assert_eq!(resp.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(resp.body.contains("larger than"), "{}", resp.body);
}
