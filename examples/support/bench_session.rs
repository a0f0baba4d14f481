//! A signed-in viewer for the page benchmarks: the user `bench` made in the bench's database,
//! and its session cookie (`name=value`), as a browser sends it.

use upiflow_web::auth::{self, Role};

pub async fn viewer_cookie(state: &upiflow_web::AppState) -> anyhow::Result<String> {
    // Sessions are checked against `users` on every request (as in production).
    auth::create_user(&state.pool, "bench", "bench-password", Role::Viewer)
        .await
        .map_err(anyhow::Error::msg)?;
    let grant = auth::check_password(&state.pool, "bench", "bench-password")
        .await?
        .ok_or_else(|| anyhow::anyhow!("the bench user cannot sign in"))?;
    let c = upiflow_web::ui::session::start(&state.token_key, "bench", grant, false)?;
    Ok(format!("{}={}", c.name(), c.value()))
}
