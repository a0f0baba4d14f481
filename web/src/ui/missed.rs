//! `/dags/{dag_id}/missed`: the intervals the scheduler skipped (catch-up off, or paused)
//! that still have no run, and a button that backfills them, as
//! `upiflow backfill DAG --missed` does.

use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{Markup, html};
use upiflow_engine::ErrorKind;
use upiflow_engine::backfill::Request;
use upiflow_engine::timetable::{self, Missed};

use super::backfill::start;
use super::dag_header::{Tab, header, load};
use super::format::ts;
use super::links::{backfill_url, dag_url};
use super::{Nav, Permitted, UiError, UiUser, csrf_field, page};
use crate::AppState;
use crate::roles::may;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/dags/{dag_id}/missed", get(missed_page))
        .route("/dags/{dag_id}/missed/backfill", post(backfill_missed))
}

async fn open(s: &AppState, dag_id: &str) -> Result<Vec<Missed>, UiError> {
    let mut conn = s.pool.acquire().await?;
    Ok(timetable::open_missed(&mut conn, dag_id).await?)
}

async fn missed_page(
    State(s): State<AppState>,
    user: UiUser,
    Path(dag_id): Path<String>,
) -> Result<Markup, UiError> {
    let (row, dag) = load(&s, &dag_id).await?;
    let missed = open(&s, &dag_id).await?;
    let here = format!("{}/missed", dag_url(&dag_id));
    Ok(page(
        &format!("{dag_id} · missed"),
        &user,
        Nav::Dags,
        html! {
            (header(&user, &row, &dag, Tab::Missed, &here))
            h2 { "Missed intervals" }
            p.muted {
                "Intervals the scheduler skipped (catch-up off, or the DAG paused) that have no run. "
                "Nothing is lost: backfill them when you want their data."
            }
            @if missed.is_empty() {
                p.notice id="no-missed" { "No missed interval without a run." }
            } @else {
                form.toolbar method="post" action={ (here) "/backfill" } id="backfill-missed"
                    data-confirm={ "Backfill the " (missed.len()) " missed interval(s)?" } {
                    (csrf_field(&user))
                    button type="submit" disabled[!user.may(crate::roles::Action::Backfill)] {
                        "Backfill " (missed.len()) " missed interval(s)"
                    }
                    @if !user.may(crate::roles::Action::Backfill) { span.muted { "your role may not start backfills" } }
                }
                table id="missed-list" {
                    thead { tr { th { "Interval start" } th { "Interval end" } th { "Reason" } th { "Recorded" } } }
                    tbody {
                        @for m in &missed {
                            tr data-interval=(m.data_interval_start.to_rfc3339()) data-reason=(m.reason) {
                                td { (ts(m.data_interval_start)) }
                                td { (ts(m.data_interval_end)) }
                                td { (m.reason.label()) }
                                td { (ts(m.recorded_at)) }
                            }
                        }
                    }
                }
            }
        },
    ))
}

async fn backfill_missed(
    State(s): State<AppState>,
    Path(dag_id): Path<String>,
    Permitted(user, _, _): Permitted<may::Backfill, serde::de::IgnoredAny>,
) -> Result<Response, UiError> {
    let (_, dag) = load(&s, &dag_id).await?;
    let mut conn = s.pool.acquire().await?;
    let span = timetable::missed_span(&mut conn, &dag_id).await?;
    drop(conn);
    let Some((from, to)) = span else {
        return Err(UiError::Conflict(format!(
            "`{dag_id}` has no missed interval without a run"
        )));
    };
    let req = Request {
        from,
        to,
        rerun_failed: false,
        reset: false,
        created_by: user.username.clone(),
        max_active_runs: None,
        yield_to_scheduled: true,
    };
    match start(&s, &dag, &req).await {
        Ok(b) => Ok(Redirect::to(&backfill_url(b.id)).into_response()),
        Err(e) if e.kind() == ErrorKind::Invalid => Err(UiError::BadRequest(e.client_message())),
        Err(e) => Err(e.into()),
    }
}
