//! The `noop` kind: does nothing and succeeds, for grouping and joining branches of a DAG
//! (Airflow's EmptyOperator).

use futures::future::BoxFuture;
use serde_json::Value;
use upiflow_engine::{PrepareCtx, PrepareError, TaskContext, TaskError, TaskKind};

/// `kind = "noop"`: no keys; its config is `null`.
pub struct NoopKind;

impl TaskKind for NoopKind {
    fn name(&self) -> &'static str {
        "noop"
    }

    fn keys(&self) -> &'static [&'static str] {
        &[]
    }

    fn prepare(
        &self,
        _ctx: &PrepareCtx<'_>,
        keys: toml::Table,
    ) -> Result<Value, Vec<PrepareError>> {
        // The engine passes only the kind's keys; this keeps the kind correct on its own.
        let problems: Vec<PrepareError> = keys
            .keys()
            .map(|key| {
                PrepareError::at(
                    key,
                    format!("unknown key `{key}`: the noop kind takes no keys"),
                )
            })
            .collect();
        if problems.is_empty() {
            Ok(Value::Null)
        } else {
            Err(problems)
        }
    }

    fn run<'a>(
        &'a self,
        _ctx: &'a TaskContext,
        _config: &'a Value,
    ) -> BoxFuture<'a, Result<(), TaskError>> {
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{prepare_ctx, table, task_context};

    #[test]
    fn prepare_accepts_no_keys_and_gives_null() {
        let dir = std::env::temp_dir();
        let config = NoopKind.prepare(&prepare_ctx(&dir), toml::Table::new());
        assert_eq!(config, Ok(Value::Null));
    }

    #[test]
    fn prepare_rejects_any_key_at_that_key() {
        let dir = std::env::temp_dir();
        let err = NoopKind
            .prepare(&prepare_ctx(&dir), table("sql = \"x.sql\""))
            .expect_err("rejected");
        assert_eq!(err.len(), 1, "{err:?}");
        assert_eq!(err[0].key.as_deref(), Some("sql"));
    }

    #[tokio::test]
    async fn run_succeeds_at_once() {
        let ctx = task_context(Value::Null);
        assert_eq!(NoopKind.run(&ctx, &Value::Null).await, Ok(()));
    }
}
