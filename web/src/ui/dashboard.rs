//! A product's live dashboard (the UPI product's is `/payments`, the seed's Grafana panels
//! as server-rendered SVG): the page at `/{path}` with a time-range selector, and one
//! fragment per region at `/{path}/panels/{region}` that the page's `data-refresh` regions
//! re-fetch on their own (`app.js`).
//!
//! The product ([`upiflow_engine::product::Product`], registered in [`crate::AppState`])
//! gives the regions and their panels as data; this module builds the window from the
//! `range` parameter and draws them ([`super::panels`]). Without a product there are no
//! routes here.

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use chrono::Utc;
use maud::{Markup, html};
use serde::Deserialize;
use upiflow_engine::product::{Dashboard, Product, ProductError, Range, Window};

use super::{Nav, UiError, UiUser, page, panels};
use crate::AppState;

/// The routes of dashboard `d` (served by the product registered in the state).
pub fn router(d: &Dashboard) -> Router<AppState> {
    Router::new()
        .route(&format!("/{}", d.path), get(dashboard))
        .route(&format!("/{}/panels/{{part}}", d.path), get(fragment))
}

#[derive(Deserialize)]
struct RangeParams {
    range: Option<Range>,
}

fn parse_range(
    d: &Dashboard,
    q: Result<Query<RangeParams>, QueryRejection>,
) -> Result<Range, UiError> {
    match q {
        Ok(Query(p)) => Ok(p.range.unwrap_or(d.default_range)),
        Err(_) => Err(UiError::BadRequest(format!(
            "unknown time range; choose one of {}",
            Range::ALL.map(Range::key).join(", ")
        ))),
    }
}

/// The registered product (the routes exist only when there is one).
fn product(s: &AppState) -> Result<&dyn Product, UiError> {
    s.product
        .as_deref()
        .ok_or_else(|| UiError::NotFound("no dashboard is registered".into()))
}

/// A product's failure as a page: a database error as any other, a missing region a 404.
fn product_error(e: ProductError) -> UiError {
    match e {
        ProductError::Db(e) => e.into(),
        e @ ProductError::NoRegion(_) => UiError::NotFound(e.to_string()),
    }
}

/// Region `region`'s panels for window `w`, drawn.
async fn render(
    s: &AppState,
    p: &dyn Product,
    region: usize,
    w: &Window,
) -> Result<Markup, UiError> {
    let panels = p.panels(&s.pool, region, w).await.map_err(product_error)?;
    Ok(panels::region(&panels, w, p.dashboard().zone))
}

async fn dashboard(
    State(s): State<AppState>,
    user: UiUser,
    q: Result<Query<RangeParams>, QueryRejection>,
) -> Result<Markup, UiError> {
    let p = product(&s)?;
    let d = p.dashboard();
    let range = parse_range(d, q)?;
    let w = d.window(range, Utc::now());
    let mut regions = Vec::with_capacity(d.regions.len());
    for (i, region) in d.regions.iter().enumerate() {
        regions.push((region, render(&s, p, i, &w).await?));
    }
    Ok(page(
        d.title,
        &user,
        Nav::Payments,
        html! {
            div.dash-head {
                h1 { (d.title) }
                form.range-form method="get" action={ "/" (d.path) } {
                    label for="range" { "Time range" }
                    select #range name="range" data-autosubmit {
                        @for r in Range::ALL {
                            option value=(r.key()) selected[r == range] { (r.label()) }
                        }
                    }
                    noscript { button type="submit" { "Show" } }
                }
                span.muted.tz { (d.note) }
            }
            @for (region, body) in &regions {
                @if let Some(h) = region.heading { h2.dash-section { (h) } }
                div.panel-grid id={ "panels-" (region.key) }
                    data-refresh={ "/" (d.path) "/panels/" (region.key) "?range=" (range.key()) }
                    data-every=(region.every_secs) {
                    (body)
                }
            }
        },
    ))
}

async fn fragment(
    State(s): State<AppState>,
    _user: UiUser,
    Path(part): Path<String>,
    q: Result<Query<RangeParams>, QueryRejection>,
) -> Result<Markup, UiError> {
    let p = product(&s)?;
    let d = p.dashboard();
    let Some(region) = d.region(&part) else {
        return Err(UiError::NotFound(format!("no panels named `{part}`")));
    };
    let range = parse_range(d, q)?;
    render(&s, p, region, &d.window(range, Utc::now())).await
}
