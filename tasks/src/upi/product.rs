//! The UPI pipeline as a web product ([`upiflow_engine::product::Product`]): the live
//! payments dashboard at `/payments` and the ingest metrics. The binary registers
//! [`UpiProduct`] with the web.

use std::sync::Arc;

use sqlx::PgPool;
use upiflow_engine::product::{
    Dashboard, MetricFamily, Panel, Product, ProductError, ProductFuture, Range, Region, Window,
};

use super::dashboard::IST_SECS;
use super::{metrics, panels};

/// The UPI product: its dashboard description and the queries behind it.
pub struct UpiProduct {
    dashboard: Dashboard,
}

/// The dashboard's regions, in order (their index is what [`Product::panels`] receives).
const LIVE: usize = 0;
const DAILY: usize = 1;
const INGEST: usize = 2;

impl UpiProduct {
    pub fn new() -> Self {
        Self {
            dashboard: Dashboard {
                path: "payments",
                title: "Payments",
                note: "Times in IST (Asia/Kolkata) · refreshes every few seconds",
                utc_offset_secs: IST_SECS,
                zone: "IST",
                default_range: Range::Day,
                regions: vec![
                    Region {
                        key: "live",
                        heading: None,
                        every_secs: 5,
                    },
                    Region {
                        key: "daily",
                        heading: Some("Daily (from the daily_upi_aggregation DAG)"),
                        every_secs: 60,
                    },
                    Region {
                        key: "ingest",
                        heading: Some("Ingest health"),
                        every_secs: 5,
                    },
                ],
            },
        }
    }

    /// As the web's `AppState` takes it.
    pub fn shared() -> Arc<dyn Product> {
        Arc::new(Self::new())
    }
}

impl Default for UpiProduct {
    fn default() -> Self {
        Self::new()
    }
}

impl Product for UpiProduct {
    fn dashboard(&self) -> &Dashboard {
        &self.dashboard
    }

    fn panels<'a>(
        &'a self,
        pool: &'a PgPool,
        region: usize,
        w: &'a Window,
    ) -> ProductFuture<'a, Vec<Panel>> {
        Box::pin(async move {
            Ok(match region {
                LIVE => panels::live(pool, w).await?,
                DAILY => panels::daily(pool, w).await?,
                INGEST => panels::ingest(pool, w).await?,
                other => return Err(ProductError::NoRegion(other)),
            })
        })
    }

    fn metrics<'a>(&'a self, pool: &'a PgPool) -> ProductFuture<'a, Vec<MetricFamily>> {
        Box::pin(async move { Ok(metrics::families(pool).await?) })
    }
}
