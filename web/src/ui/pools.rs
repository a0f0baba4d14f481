//! `/pools`: every pool with its size and the slots its task instances hold (running) and
//! wait for (scheduled or up for retry); for admins a form that creates or resizes a pool
//! (`POST /pools`) and a delete button per pool (`POST /pools/{name}/delete`). The rules
//! are the engine's (`upiflow_engine::pools`); a refusal is an error page with its message.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{Markup, html};
use serde::Deserialize;
use upiflow_engine::pools;
use upiflow_engine::store::pools::{self as store_pools, PoolUsage};

use super::extract::wants_fragment;
use super::format::ts;
use super::{Nav, Permitted, UiError, UiUser, csrf_field, page};
use crate::AppState;
use crate::roles::may;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/pools", get(list).post(set))
        .route("/pools/{name}/delete", post(delete))
}

fn table(user: &UiUser, rows: &[PoolUsage]) -> Markup {
    html! {
        table id="pool-list" {
            thead { tr {
                th { "Pool" } th.num { "Slots" } th.num { "Running" }
                th.num title="Scheduled or up for retry: waiting for a slot" { "Waiting" }
                th.num { "Open" } th { "Description" } th { "Changed" }
                @if user.may(crate::roles::Action::Pools) { th {} }
            } }
            tbody {
                @for r in rows {
                    tr data-pool=(r.pool.name) {
                        td { strong { (r.pool.name) } }
                        td.num data-col="slots" { (r.pool.slots) }
                        td.num data-col="running" { (r.running) }
                        td.num data-col="waiting" { (r.scheduled) }
                        td.num data-col="open" { (r.open()) }
                        td { (r.pool.description.as_deref().unwrap_or("")) }
                        td { (ts(r.pool.updated_at)) }
                        @if user.may(crate::roles::Action::Pools) {
                            td {
                                @if r.pool.name != upiflow_engine::dag::DEFAULT_POOL {
                                    // Pool names are letters, digits, `_`, `-` and `.`: a
                                    // path segment as they are.
                                    form.inline method="post" action={ "/pools/" (r.pool.name) "/delete" } {
                                        (csrf_field(user))
                                        button.danger type="submit" { "Delete" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn body(user: &UiUser, rows: &[PoolUsage], warnings: &[String]) -> Markup {
    html! {
        h1 { "Pools" }
        p.muted {
            "A pool limits how many slots its tasks' tries hold at once, across every worker. A task names its pool with "
            code { "pool" } " (else " code { "default_pool" } ") and takes " code { "pool_slots" } " of it (default 1)."
        }
        @for w in warnings {
            p.notice role="status" { "Warning: " (w) }
        }
        div data-refresh="/pools" data-every="5" { (table(user, rows)) }
        @if user.may(crate::roles::Action::Pools) {
            h2 { "Create or resize a pool" }
            form.card.form id="pool-form" method="post" action="/pools" {
                (csrf_field(user))
                label { "Name" input type="text" name="name" required; }
                label { "Slots (a whole number, 0 or more)" input type="text" name="slots" inputmode="numeric" required; }
                label {
                    "Description"
                    input type="text" name="description";
                    span.hint { "Empty: an existing pool keeps its description." }
                }
                button type="submit" { "Set pool" }
            }
        }
    }
}

async fn list(
    State(s): State<AppState>,
    user: UiUser,
    headers: HeaderMap,
) -> Result<Markup, UiError> {
    let rows = {
        let mut conn = s.pool.acquire().await?;
        store_pools::all(&mut conn).await?
    };
    if wants_fragment(&headers) {
        return Ok(table(&user, &rows));
    }
    Ok(page("Pools", &user, Nav::Pools, body(&user, &rows, &[])))
}

#[derive(Deserialize)]
struct SetForm {
    name: String,
    slots: String,
    #[serde(default)]
    description: String,
}

async fn set(
    State(s): State<AppState>,
    Permitted(user, f, _): Permitted<may::Pools, SetForm>,
) -> Result<Response, UiError> {
    let name = f.name.trim();
    let slots: i64 = f.slots.trim().parse().map_err(|_| {
        UiError::BadRequest(format!("Slots: `{}` is not a whole number", f.slots.trim()))
    })?;
    let description = Some(f.description.trim()).filter(|d| !d.is_empty());
    let changed = pools::set(&s.pool, name, slots, description).await?;
    tracing::info!(user = %user.username, pool = %name, slots, "pool set from the UI");
    let warnings = changed.warnings();
    if warnings.is_empty() {
        return Ok(Redirect::to("/pools").into_response());
    }
    // Shown once, on the page the change answers with.
    let rows = {
        let mut conn = s.pool.acquire().await?;
        store_pools::all(&mut conn).await?
    };
    Ok(page("Pools", &user, Nav::Pools, body(&user, &rows, &warnings)).into_response())
}

#[derive(Deserialize)]
struct DeleteForm {}

async fn delete(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Permitted(user, DeleteForm {}, _): Permitted<may::Pools, DeleteForm>,
) -> Result<Redirect, UiError> {
    pools::delete(&s.pool, &name).await?;
    tracing::info!(user = %user.username, pool = %name, "pool deleted from the UI");
    Ok(Redirect::to("/pools"))
}
