//! The seam through which a product built on upiflow (the UPI payments pipeline in
//! `upiflow-tasks`) plugs into the web UI and `/metrics` without the orchestrator naming its
//! tables.
//!
//! A product runs its own tasks through the task-kind registry ([`crate::kind::Registry`]);
//! for the web it implements [`Product`]: a dashboard (a fixed [`Dashboard`] description,
//! then [`Panel`]s per region for a requested [`Window`]) and its Prometheus metric families
//! ([`MetricFamily`]), read at scrape time. Everything here is plain data: no HTTP, no
//! markup. The web renders panels generically and encodes the families next to its own;
//! the binary registers the product with the web's `AppState` (no product, no dashboard
//! and no product metrics).
//!
//! Dependencies stay inward: `tasks` implements this trait, `web` consumes it, neither sees
//! the other.

pub mod metrics;
pub mod panels;
pub mod unit;
pub mod window;

use std::future::Future;
use std::pin::Pin;

use sqlx::PgPool;

pub use metrics::{MetricFamily, MetricKind, MetricValue, Sample};
pub use panels::{Axis, Block, Chart, Heatmap, Panel, Row, Series, Slice, Stat, Tone};
pub use unit::Unit;
pub use window::{Range, Window};

/// What a product's queries return: boxed so [`Product`] stays object safe.
pub type ProductFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, ProductError>> + Send + 'a>>;

/// Why a product could not answer.
#[derive(Debug, thiserror::Error)]
pub enum ProductError {
    /// The dashboard has no region with this index.
    #[error("the dashboard has no region {0}")]
    NoRegion(usize),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// A product's part of the web: its dashboard and its metrics.
pub trait Product: Send + Sync + 'static {
    /// The dashboard's fixed description (where it lives, its regions, its time zone).
    fn dashboard(&self) -> &Dashboard;

    /// The panels of `dashboard().regions[region]` for window `w`, in display order.
    fn panels<'a>(
        &'a self,
        pool: &'a PgPool,
        region: usize,
        w: &'a Window,
    ) -> ProductFuture<'a, Vec<Panel>>;

    /// The product's metric families as of now, in exposition order.
    fn metrics<'a>(&'a self, pool: &'a PgPool) -> ProductFuture<'a, Vec<MetricFamily>>;
}

/// A dashboard page: `/{path}`, each region refreshing itself from `/{path}/panels/{key}`.
#[derive(Clone, Debug)]
pub struct Dashboard {
    /// The page's path segment (`payments` -> `/payments`).
    pub path: &'static str,
    /// The page's title and heading.
    pub title: &'static str,
    /// The note beside the range selector.
    pub note: &'static str,
    /// The fixed UTC offset (seconds east) windows align to and times are shown in.
    pub utc_offset_secs: i32,
    /// The zone's short name appended to times shown (`IST`).
    pub zone: &'static str,
    /// The range shown when the request names none.
    pub default_range: Range,
    /// The regions, top to bottom.
    pub regions: Vec<Region>,
}

/// A part of the dashboard that refreshes on its own.
#[derive(Clone, Debug)]
pub struct Region {
    /// Its path segment and element id suffix (`live` -> `/payments/panels/live`).
    pub key: &'static str,
    /// The heading above it, if any.
    pub heading: Option<&'static str>,
    /// How often it refreshes, in seconds.
    pub every_secs: u32,
}

impl Dashboard {
    /// The index of the region named `key`.
    pub fn region(&self, key: &str) -> Option<usize> {
        self.regions.iter().position(|r| r.key == key)
    }

    /// The window of `range` at `now`, aligned in the dashboard's zone.
    pub fn window(&self, range: Range, now: chrono::DateTime<chrono::Utc>) -> Window {
        Window::new(range, now, self.utc_offset_secs)
    }
}
