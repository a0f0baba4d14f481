//! `/events`: the audit log (`upiflow_engine::audit`), newest first, filtered by DAG, event,
//! owner and outcome, a page at a time. Every user may read it, as in Airflow.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use maud::{Markup, html};
use serde::Deserialize;
use upiflow_engine::store::event_log::{self, EventFilter, EventOrder, EventRow};

use super::extract::UiQuery;
use super::format::ts;
use super::links::{dag_url, run_url, ti_url, with_query};
use super::{Nav, UiError, UiUser, page};
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/events", get(list))
}

/// Events on one page.
const PER_PAGE: i64 = 50;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    #[serde(default)]
    dag_id: String,
    #[serde(default)]
    event: String,
    #[serde(default)]
    owner: String,
    #[serde(default)]
    outcome: String,
    /// 1-based.
    page: Option<i64>,
}

fn non_empty(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

impl EventsQuery {
    fn filter(&self) -> Result<EventFilter, UiError> {
        let outcome = non_empty(&self.outcome);
        if let Some(o) = &outcome
            && !matches!(o.as_str(), "success" | "refused" | "failed")
        {
            return Err(UiError::BadRequest(format!(
                "outcome `{o}` is not one of success, refused, failed"
            )));
        }
        Ok(EventFilter {
            dag_id: non_empty(&self.dag_id),
            event: non_empty(&self.event),
            owner: non_empty(&self.owner),
            outcome,
            ..EventFilter::default()
        })
    }

    /// This query at another page.
    fn at(&self, page: i64) -> String {
        let mut pairs = Vec::new();
        for (k, v) in [
            ("dag_id", &self.dag_id),
            ("event", &self.event),
            ("owner", &self.owner),
            ("outcome", &self.outcome),
        ] {
            if !v.trim().is_empty() {
                pairs.push((k, v.trim().to_string()));
            }
        }
        pairs.push(("page", page.to_string()));
        with_query("/events", &pairs)
    }
}

fn target(r: &EventRow) -> Markup {
    html! {
        @match (&r.dag_id, &r.run_id, &r.task_id) {
            (Some(d), Some(run), Some(t)) => a href=(ti_url(d, run, t)) { (d) " / " (run) " / " (t) },
            (Some(d), Some(run), None) => a href=(run_url(d, run)) { (d) " / " (run) },
            (Some(d), None, _) => a href=(dag_url(d)) { (d) },
            _ => "",
        }
    }
}

fn table(rows: &[EventRow]) -> Markup {
    html! {
        table id="event-list" {
            thead { tr {
                th { "When (UTC)" } th { "Event" } th { "Owner" } th { "Source" }
                th { "Outcome" } th { "Target" } th { "From" } th { "Extra" }
            } }
            tbody {
                @for r in rows {
                    tr data-event-id=(r.id) data-outcome=(r.outcome) {
                        td { (ts(r.dttm)) }
                        td { code { (r.event) } }
                        td data-col="owner" { (r.owner.as_deref().unwrap_or("")) }
                        td { (r.source) }
                        td { span class={ "outcome outcome-" (r.outcome) } { (r.outcome) } }
                        td { (target(r)) }
                        td { (r.remote_addr.as_deref().unwrap_or("")) }
                        td { code.extra { (r.extra.as_ref().map(|e| e.to_string()).unwrap_or_default()) } }
                    }
                }
            }
        }
    }
}

fn filters(q: &EventsQuery) -> Markup {
    html! {
        form.card.form.inline-form id="event-filter" method="get" action="/events" {
            label { "DAG" input type="text" name="dag_id" value=(q.dag_id); }
            label { "Event" input type="text" name="event" value=(q.event) placeholder="trigger_dag_run"; }
            label { "Owner" input type="text" name="owner" value=(q.owner); }
            label { "Outcome"
                select name="outcome" {
                    @for o in ["", "success", "refused", "failed"] {
                        option value=(o) selected[q.outcome == o] { (if o.is_empty() { "any" } else { o }) }
                    }
                }
            }
            button type="submit" { "Filter" }
        }
    }
}

async fn list(
    State(s): State<AppState>,
    user: UiUser,
    UiQuery(q): UiQuery<EventsQuery>,
) -> Result<Markup, UiError> {
    let f = q.filter()?;
    let page_no = q.page.unwrap_or(1);
    if page_no < 1 {
        return Err(UiError::BadRequest(format!(
            "page `{page_no}` is not a page number (1 or more)"
        )));
    }
    let offset = (page_no - 1).saturating_mul(PER_PAGE);
    let (rows, total) = {
        let mut conn = s.pool.acquire().await?;
        event_log::search(&mut conn, &f, &[(EventOrder::Id, true)], PER_PAGE, offset).await?
    };
    let pages = ((total + PER_PAGE - 1) / PER_PAGE).max(1);
    let body = html! {
        h1 { "Audit log" }
        p.muted { "Every change through the CLI, the API and the UI, and every sign-in: who, what, which DAG, run and task, and from where. Newest first." }
        (filters(&q))
        p id="event-count" { (total) " event(s) · page " (page_no) " of " (pages) }
        (table(&rows))
        nav.pager {
            @if page_no > 1 { a rel="prev" href=(q.at(page_no - 1)) { "← Newer" } }
            @if page_no < pages { a rel="next" href=(q.at(page_no + 1)) { "Older →" } }
        }
    };
    Ok(page("Audit log", &user, Nav::Events, body))
}
