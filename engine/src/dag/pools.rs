//! Checking a DAG's pools against the pools that exist (they live in the database, so this
//! runs after the file is read: in `dags validate`, the scheduler's DAG-file sync and the
//! CLI's trigger and backfill). A problem names the line of the `pool` or `pool_slots` key.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::fields::closest;
use super::{Dag, DagError, Folder, Problem};

/// The problems of `dag`'s tasks with `pools` (name -> slots): a pool that does not exist,
/// or `pool_slots` larger than the pool (such a try could never start).
pub fn check_pools(dag: &Dag, pools: &BTreeMap<String, i64>) -> Vec<DagError> {
    let known: Vec<&str> = pools.keys().map(String::as_str).collect();
    let file = PathBuf::from(&dag.fileloc);
    let mut out = Vec::new();
    for t in &dag.tasks {
        let lines = dag.pool_lines.get(&t.id).copied().unwrap_or_default();
        match pools.get(&t.pool) {
            None => out.push(DagError::new(
                file.clone(),
                lines.pool.max(1),
                Problem::UnknownPool {
                    task: t.id.clone(),
                    pool: t.pool.clone(),
                    suggestion: closest(&t.pool, &known).map(str::to_string),
                    known: known.iter().map(|k| k.to_string()).collect(),
                },
            )),
            Some(&slots) if i64::from(t.pool_slots) > slots && slots > 0 => {
                out.push(DagError::new(
                    file.clone(),
                    lines.pool_slots.max(1),
                    Problem::PoolTooSmall {
                        task: t.id.clone(),
                        pool: t.pool.clone(),
                        pool_slots: t.pool_slots,
                        slots,
                    },
                ))
            }
            Some(_) => {}
        }
    }
    out.sort_by_key(|e| e.line);
    out
}

impl Folder {
    /// Moves every DAG whose pools do not check out ([`check_pools`]) to the errors, as a
    /// file that does not parse: its DAG keeps its last good version.
    pub fn check_pools(&mut self, pools: &BTreeMap<String, i64>) {
        let mut kept = Vec::with_capacity(self.dags.len());
        for dag in std::mem::take(&mut self.dags) {
            let problems = check_pools(&dag, pools);
            if problems.is_empty() {
                kept.push(dag);
            } else {
                self.errors.extend(problems);
            }
        }
        self.dags = kept;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kind::Registry;

    fn pools(list: &[(&str, i64)]) -> BTreeMap<String, i64> {
        list.iter().map(|(n, s)| (n.to_string(), *s)).collect()
    }

    #[test]
    fn unknown_pools_and_oversized_slots_name_their_lines() {
        let text = "dag_id = \"p\"\n\
                    [[tasks]]\nid = \"a\"\nkind = \"noop\"\npool = \"apl\"\n\
                    [[tasks]]\nid = \"b\"\nkind = \"noop\"\npool = \"db\"\npool_slots = 4\n\
                    [[tasks]]\nid = \"c\"\nkind = \"noop\"\n";
        let dag = crate::dag::load_dag_str(std::path::Path::new("p.toml"), text, &noop())
            .expect("valid file");
        let errs = check_pools(
            &dag,
            &pools(&[("default_pool", 128), ("api", 3), ("db", 3)]),
        );
        let got: Vec<(usize, String)> = errs.iter().map(|e| (e.line, e.message.clone())).collect();
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].0, 5);
        assert!(
            got[0]
                .1
                .contains("pool `apl`, which does not exist (did you mean `api`?"),
            "{}",
            got[0].1
        );
        assert_eq!(got[1].0, 10);
        assert!(
            got[1]
                .1
                .contains("takes 4 slots of pool `db`, which has only 3"),
            "{}",
            got[1].1
        );
        assert!(
            check_pools(&dag, &pools(&[("default_pool", 1), ("apl", 1), ("db", 4)])).is_empty()
        );
    }

    #[test]
    fn a_pool_from_defaults_is_reported_at_the_defaults_line() {
        let text =
            "dag_id = \"p\"\n[defaults]\npool = \"nope\"\n[[tasks]]\nid = \"a\"\nkind = \"noop\"\n";
        let dag = crate::dag::load_dag_str(std::path::Path::new("p.toml"), text, &noop())
            .expect("valid file");
        let errs = check_pools(&dag, &pools(&[("default_pool", 128)]));
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].line, 3);
    }

    struct Noop;
    impl crate::kind::TaskKind for Noop {
        fn name(&self) -> &'static str {
            "noop"
        }
        fn keys(&self) -> &'static [&'static str] {
            &[]
        }
        fn prepare(
            &self,
            _: &crate::kind::PrepareCtx<'_>,
            _: toml::Table,
        ) -> Result<serde_json::Value, Vec<crate::kind::PrepareError>> {
            Ok(serde_json::Value::Null)
        }
        fn run<'a>(
            &'a self,
            _: &'a crate::kind::TaskContext,
            _: &'a serde_json::Value,
        ) -> futures::future::BoxFuture<'a, Result<(), crate::kind::TaskError>> {
            Box::pin(async { Ok(()) })
        }
    }

    fn noop() -> Registry {
        Registry::new().with(Noop)
    }
}
