//! Checking the connections and variables a DAG's tasks name (`conn = "ID"`, `{{ var.x }}`)
//! against the ones that exist. They live in the database and the environment and may be
//! created after a DAG is deployed (as in Airflow), so this runs only where asked (`dags
//! validate`), never when the scheduler reads a file. A problem names the line of the key.

use std::path::PathBuf;

use super::{Dag, DagError, Folder, Problem};
use crate::kind::Reference;

/// A connection or variable a task names, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskReference {
    /// The task naming it (empty when a notifier does).
    pub task: String,
    /// The notifier naming it, if a notifier does.
    pub notifier: Option<String>,
    /// The file of the naming key when it is not the DAG's own (a shared notifier's).
    pub file: Option<PathBuf>,
    /// The line of the key naming it.
    pub line: usize,
    pub reference: Reference,
}

impl Dag {
    /// The connections and variables its tasks name (for a DAG just read from its file;
    /// empty for one loaded from the database).
    pub fn references(&self) -> &[TaskReference] {
        &self.references
    }
}

/// The references of `dag` that do not exist, by `exists`.
pub fn check_references(dag: &Dag, exists: impl Fn(&Reference) -> bool) -> Vec<DagError> {
    let file = PathBuf::from(&dag.fileloc);
    let mut out: Vec<DagError> = Vec::new();
    for r in &dag.references {
        if exists(&r.reference) {
            continue;
        }
        let problem = match &r.reference {
            Reference::Connection(conn_id) if r.notifier.is_some() => {
                Problem::NotifierUnknownConnection {
                    notifier: r.notifier.clone().unwrap_or_default(),
                    conn_id: conn_id.clone(),
                }
            }
            Reference::Connection(conn_id) => Problem::UnknownConnection {
                task: r.task.clone(),
                conn_id: conn_id.clone(),
            },
            Reference::Variable(key) => Problem::UnknownVariable {
                task: r.task.clone(),
                key: key.clone(),
            },
        };
        let file = r.file.clone().unwrap_or_else(|| file.clone());
        let error = DagError::new(file, r.line.max(1), problem);
        if !out.contains(&error) {
            out.push(error);
        }
    }
    out.sort_by_key(|e| e.line);
    out
}

impl Folder {
    /// Moves every DAG naming a connection or variable that does not exist
    /// ([`check_references`]) to the errors.
    pub fn check_references(&mut self, exists: impl Fn(&Reference) -> bool) {
        let mut kept = Vec::with_capacity(self.dags.len());
        for dag in std::mem::take(&mut self.dags) {
            let problems = check_references(&dag, &exists);
            if problems.is_empty() {
                kept.push(dag);
            } else {
                self.errors.extend(problems);
            }
        }
        self.dags = kept;
    }
}
