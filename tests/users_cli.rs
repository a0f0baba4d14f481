//! `upiflow users create|list|delete|set-password|set-role` through the real binary against a
//! real Postgres: an existing name is refused (not silently replaced), the last admin can be
//! neither deleted nor demoted, passwords are checked, and what is stored is what signs in.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;
use upiflow_web::auth::{self, Role};

fn upiflow(db_url: &str, dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_upiflow"))
        .args(args)
        .env("DATABASE_URL", db_url)
        .env("UPIFLOW_DAGS_FOLDER", dir)
        .env("UPIFLOW_HOME", dir.join(".upiflow"))
        .env("RUST_LOG", "warn")
        .output()
        .expect("run upiflow")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs a command that must succeed; returns its stdout.
fn ok(db: &TestDb, dir: &Path, args: &[&str]) -> String {
    let out = upiflow(&db.url, dir, args);
    assert!(
        out.status.success(),
        "{args:?}: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Runs a command that must fail; returns its stderr.
fn refused(db: &TestDb, dir: &Path, args: &[&str]) -> String {
    let out = upiflow(&db.url, dir, args);
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "{args:?} should fail");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

/// `users ARGS...`.
fn u<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["users"];
    v.extend_from_slice(args);
    v
}

async fn signs_in(db: &TestDb, user: &str, password: &str) -> Option<Role> {
    auth::check_password(&db.pool, user, password)
        .await
        .ok()
        .flatten()
        .map(|g| g.role)
}

#[tokio::test]
async fn users_are_created_listed_changed_and_deleted_and_the_last_admin_stays() {
    let db = fresh_db().await;
    let dir = dags_dir(&[]);
    ok(
        &db,
        &dir,
        &u(&[
            "create",
            "--username",
            "ada",
            "--password",
            "first-password",
            "--role",
            "admin",
        ]),
    );
    // An existing name is an error and changes nothing.
    let e = refused(
        &db,
        &dir,
        &u(&[
            "create",
            "--username",
            "ada",
            "--password",
            "other-password",
            "--role",
            "viewer",
        ]),
    );
    assert!(
        e.contains("exists already") && e.contains("set-password"),
        "{e}"
    );
    assert_eq!(
        signs_in(&db, "ada", "first-password").await,
        Some(Role::Admin)
    );
    assert_eq!(signs_in(&db, "ada", "other-password").await, None);

    // The last admin can be neither demoted nor deleted.
    let e = refused(
        &db,
        &dir,
        &u(&["set-role", "--username", "ada", "--role", "viewer"]),
    );
    assert!(e.contains("last admin"), "{e}");
    let e = refused(&db, &dir, &u(&["delete", "--username", "ada"]));
    assert!(e.contains("last admin"), "{e}");
    assert_eq!(
        signs_in(&db, "ada", "first-password").await,
        Some(Role::Admin)
    );

    // With a second admin, the first may become a viewer.
    ok(
        &db,
        &dir,
        &u(&[
            "create",
            "--username",
            "bob",
            "--password",
            "bobs-password",
            "--role",
            "admin",
        ]),
    );
    ok(
        &db,
        &dir,
        &u(&["set-role", "--username", "ada", "--role", "viewer"]),
    );
    assert_eq!(
        signs_in(&db, "ada", "first-password").await,
        Some(Role::Viewer)
    );
    let list = ok(&db, &dir, &u(&["list"]));
    let ada = list.lines().find(|l| l.contains("ada")).unwrap_or("");
    let bob = list.lines().find(|l| l.contains("bob")).unwrap_or("");
    assert!(ada.contains("viewer") && bob.contains("admin"), "{list}");

    // A new password replaces the old one.
    ok(
        &db,
        &dir,
        &u(&[
            "set-password",
            "--username",
            "ada",
            "--password",
            "second-password",
        ]),
    );
    assert_eq!(signs_in(&db, "ada", "first-password").await, None);
    assert_eq!(
        signs_in(&db, "ada", "second-password").await,
        Some(Role::Viewer)
    );

    // Bad input: clear errors, nothing changed.
    let e = refused(
        &db,
        &dir,
        &u(&["set-password", "--username", "ada", "--password", "short"]),
    );
    assert!(e.contains("at least 8"), "{e}");
    let e = refused(
        &db,
        &dir,
        &u(&[
            "set-password",
            "--username",
            "nobody",
            "--password",
            "long-enough",
        ]),
    );
    assert!(e.contains("no user `nobody`"), "{e}");
    let e = refused(&db, &dir, &u(&["delete", "--username", "nobody"]));
    assert!(e.contains("no user `nobody`"), "{e}");
    let e = refused(
        &db,
        &dir,
        &u(&["set-role", "--username", "ada", "--role", "superuser"]),
    );
    assert!(e.contains("superuser"), "{e}");
    assert_eq!(
        signs_in(&db, "ada", "second-password").await,
        Some(Role::Viewer)
    );

    // Deleting a viewer: it can no longer sign in; the admin stays.
    ok(&db, &dir, &u(&["delete", "--username", "ada"]));
    assert_eq!(signs_in(&db, "ada", "second-password").await, None);
    let list = ok(&db, &dir, &u(&["list"]));
    assert!(!list.contains("ada") && list.contains("bob"), "{list}");

    // Every change is audited, refusals as failed, never with a password.
    let rows: Vec<(String, String, serde_json::Value)> = sqlx::query_as(
        "SELECT event, outcome, coalesce(extra, 'null') FROM event_log
         WHERE source = 'cli' ORDER BY id",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let events: Vec<(&str, &str)> = rows
        .iter()
        .map(|(e, o, _)| (e.as_str(), o.as_str()))
        .collect();
    assert!(
        events.contains(&("cli_users_create", "failed")),
        "{events:?}"
    );
    assert!(
        events.contains(&("cli_users_set_role", "failed")),
        "{events:?}"
    );
    assert!(
        events.contains(&("cli_users_set_password", "success")),
        "{events:?}"
    );
    assert!(
        events.contains(&("cli_users_delete", "success")),
        "{events:?}"
    );
    for (_, _, extra) in &rows {
        let s = extra.to_string();
        assert!(
            !s.contains("password\":") && !s.contains("second-password"),
            "{s}"
        );
    }
}
