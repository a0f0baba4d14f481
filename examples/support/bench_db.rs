//! A throw-away database for one benchmark, created on the server `DATABASE_URL` points at
//! (a superuser connection) and dropped at the end.

// Each benchmark uses its own part of this.
#![allow(dead_code)]

use sqlx::PgPool;
use upiflow_engine::store;

pub struct BenchDb {
    admin: PgPool,
    pub name: String,
    pub url: String,
    pub pool: PgPool,
}

impl BenchDb {
    /// Creates and migrates a fresh database.
    pub async fn create(max_connections: u32) -> anyhow::Result<Self> {
        let admin_url = std::env::var("DATABASE_URL").map_err(|_| {
            anyhow::anyhow!("set DATABASE_URL to a Postgres superuser (scripts/bench.sh does)")
        })?;
        let admin = store::connect(&admin_url, 1).await?;
        let (name, url) = store::create_scratch_database(&admin_url, "bench").await?;
        let pool = store::connect(&url, max_connections).await?;
        store::migrate(&pool).await?;
        Ok(Self {
            admin,
            name,
            url,
            pool,
        })
    }

    pub async fn drop(self) -> anyhow::Result<()> {
        self.pool.close().await;
        sqlx::query(&format!("DROP DATABASE {} WITH (FORCE)", self.name))
            .execute(&self.admin)
            .await?;
        Ok(())
    }
}
