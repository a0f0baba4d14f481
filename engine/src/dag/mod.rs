//! The DAG model: a validated, serialisable definition (what a DAG file means) with its
//! dependency graph resolved by petgraph.

mod fields;
mod load;
mod locate;
mod notifiers;
mod pools;
mod problem;
mod references;

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use petgraph::graph::{DiGraph, NodeIndex};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

pub(crate) use load::valid_pool_name;
pub use load::{DagError, Folder, load_dag_file, load_dag_str, load_folder, parse_datetime_in};
pub use notifiers::{
    Deadline, DeadlineReference, EmailTls, HEADER_CONN_FIELDS, HeaderPart, NOTIFIERS_FILE,
    Notifier, NotifierSpec, SharedNotifiers, header_parts, load_notifiers_file,
};
pub use pools::check_pools;
pub use problem::{DateError, DurationError, IndexError, KeyPlace, Problem};
pub use references::{TaskReference, check_references};

use crate::schedule::Schedule;
use crate::state::{TriggerRule, WeightRule};

/// The pool a task runs in when it names none (Airflow's `default_pool`).
pub const DEFAULT_POOL: &str = "default_pool";
/// Airflow's `max_active_tasks_per_dag` default.
pub const DEFAULT_MAX_ACTIVE_TASKS: u32 = 16;

/// Retry behaviour of a task (DESIGN.md: `delay(n) = min(retry_delay * 2^(n-1), max_retry_delay)`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    pub retries: u32,
    pub retry_delay: Duration,
    pub exponential_backoff: bool,
    pub max_retry_delay: Option<Duration>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            retries: 0,
            retry_delay: Duration::from_secs(300),
            exponential_backoff: false,
            max_retry_delay: None,
        }
    }
}

/// One task of a DAG.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskDef {
    pub id: String,
    pub kind: String,
    pub upstream: Vec<String>,
    pub trigger_rule: TriggerRule,
    pub retry: RetryPolicy,
    pub timeout: Option<Duration>,
    /// Kind-specific configuration, as resolved by the kind's `prepare`.
    pub config: Value,
    /// The pool its tries take slots of (the keys below keep their defaults out of the
    /// serialised form, so DAGs that do not use them keep their version hash).
    #[serde(default = "default_pool", skip_serializing_if = "is_default_pool")]
    pub pool: String,
    /// Slots of the pool one try takes.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub pool_slots: u32,
    /// Its own weight; the claim orders by the effective weight ([`Dag::priority_weight`]).
    #[serde(default = "one_i32", skip_serializing_if = "is_one_i32")]
    pub priority_weight: i32,
    #[serde(default, skip_serializing_if = "WeightRule::is_default")]
    pub weight_rule: WeightRule,
    /// At most this many of its task instances run at once, across all runs of the DAG.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_active_tis_per_dag: Option<u32>,
    /// Notifiers told when a try fails with no retries left (Airflow's `on_failure_callback`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_failure: Vec<String>,
    /// Notifiers told when a try fails and the task will be retried.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_retry: Vec<String>,
    /// Notifiers told when a try succeeds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_success: Vec<String>,
}

fn default_pool() -> String {
    DEFAULT_POOL.to_string()
}
fn is_default_pool(p: &str) -> bool {
    p == DEFAULT_POOL
}
fn one() -> u32 {
    1
}
fn is_one(n: &u32) -> bool {
    *n == 1
}
fn one_i32() -> i32 {
    1
}
fn is_one_i32(n: &i32) -> bool {
    *n == 1
}
fn default_max_active_tasks() -> u32 {
    DEFAULT_MAX_ACTIVE_TASKS
}
fn is_default_max_active_tasks(n: &u32) -> bool {
    *n == DEFAULT_MAX_ACTIVE_TASKS
}

/// A validated DAG.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Dag {
    pub dag_id: String,
    pub description: Option<String>,
    /// As written: a 5-field cron expression, a preset or `none`.
    pub schedule: String,
    pub timezone: String,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    pub catchup: bool,
    pub max_active_runs: u32,
    /// Task instances of one run running at once (Airflow 3's per-run `max_active_tasks`).
    #[serde(
        default = "default_max_active_tasks",
        skip_serializing_if = "is_default_max_active_tasks"
    )]
    pub max_active_tasks: u32,
    pub tags: Vec<String>,
    pub params: Map<String, Value>,
    pub tasks: Vec<TaskDef>,
    /// The notifiers its `on_*` keys name (its own `[[notifiers]]` and the shared ones of
    /// `notifiers.toml`), resolved when the file is read so a run's stored version carries
    /// the definitions it delivers with. Left out of the serialised form when empty, so DAGs
    /// without notifiers keep their version hash (as are the keys below).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notifiers: Vec<Notifier>,
    /// Notifiers told when a run finishes failed (Airflow's DAG `on_failure_callback`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_failure: Vec<String>,
    /// Notifiers told when a run finishes successfully.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_success: Vec<String>,
    /// Notifiers told when a run is not finished by its [`Dag::deadline`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_deadline_miss: Vec<String>,
    /// When a run must be finished by (Airflow 3.1's deadline alerts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<Deadline>,
    /// How long after its data interval's end a run still waits for events of the interval
    /// (Flink's allowed lateness): an `ingest_supervisor` waits until the event-time
    /// watermark passes `data_interval_end` plus this. Absent means no extra wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_lateness: Option<Duration>,
    /// The file it was read from.
    pub fileloc: String,
    /// The file's text as it was read (known only for a DAG just read from its file; not part
    /// of the version hash), stored with a new version for `GET /api/v2/dagSources`.
    #[serde(skip)]
    pub source: Option<String>,
    /// Where in its file each task's `pool` and `pool_slots` are written (known only for a
    /// DAG just read from its file), so checks against the database's pools name the line.
    #[serde(skip)]
    pub(crate) pool_lines: HashMap<String, PoolLines>,
    /// The connections and variables its tasks name, at their lines (known only for a DAG
    /// just read from its file), for [`Folder::check_references`].
    #[serde(skip)]
    pub(crate) references: Vec<references::TaskReference>,
    #[serde(skip)]
    index: Index,
}

/// The lines of a task's `pool` and `pool_slots` keys (or of the `[defaults]` giving them,
/// or of the task's id when neither is written).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PoolLines {
    pub pool: usize,
    pub pool_slots: usize,
}

#[derive(Debug, Clone, Default)]
struct Index {
    by_id: HashMap<String, usize>,
    downstream: Vec<Vec<usize>>,
    /// Task positions, every task after its upstreams.
    topo: Vec<usize>,
    parsed_schedule: Option<Schedule>,
    tz: Option<Tz>,
}

impl Dag {
    /// The time a run must be finished by: its deadline's reference time plus the interval
    /// (`None` for a DAG without a deadline).
    pub fn deadline_at(
        &self,
        logical_date: DateTime<Utc>,
        data_interval_end: DateTime<Utc>,
        queued_at: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let d = self.deadline.as_ref()?;
        let base = match d.reference {
            DeadlineReference::DataIntervalEnd => data_interval_end,
            DeadlineReference::LogicalDate => logical_date,
            DeadlineReference::QueuedAt => queued_at,
        };
        let interval = chrono::Duration::from_std(d.interval).ok()?;
        base.checked_add_signed(interval)
    }

    /// The notifier named `name` of those its keys name.
    pub fn notifier(&self, name: &str) -> Option<&Notifier> {
        self.notifiers.iter().find(|n| n.name == name)
    }

    /// Rebuilds the derived lookups; called after loading or deserialising.
    pub(crate) fn indexed(mut self) -> Result<Self, IndexError> {
        let by_id: HashMap<String, usize> = self
            .tasks
            .iter()
            .enumerate()
            .map(|(i, t)| (t.id.clone(), i))
            .collect();
        let mut downstream = vec![Vec::new(); self.tasks.len()];
        for (i, t) in self.tasks.iter().enumerate() {
            for up in &t.upstream {
                let u = *by_id.get(up).ok_or_else(|| IndexError::UnknownUpstream {
                    task: t.id.clone(),
                    upstream: up.clone(),
                })?;
                downstream[u].push(i);
            }
        }
        let graph = self.graph();
        let topo = petgraph::algo::toposort(&graph, None)
            .map_err(|c| IndexError::Cycle {
                task: graph[c.node_id()].to_string(),
            })?
            .into_iter()
            .map(|n| by_id[graph[n]])
            .collect();
        self.index = Index {
            by_id,
            downstream,
            topo,
            parsed_schedule: Some(Schedule::parse(&self.schedule)?),
            tz: Some(crate::schedule::parse_timezone(&self.timezone)?),
        };
        Ok(self)
    }

    /// Reads a DAG stored as JSON (a `dag_versions.spec`).
    pub fn from_json(spec: Value) -> Result<Self, IndexError> {
        let dag: Dag = serde_json::from_value(spec).map_err(|e| IndexError::Json {
            error: e.to_string(),
        })?;
        dag.indexed()
    }

    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("a DAG always serialises")
    }

    /// Content hash of the definition: equal hashes mean equal behaviour.
    pub fn version_hash(&self) -> String {
        let bytes = serde_json::to_vec(self).expect("a DAG always serialises");
        hex::encode(&Sha256::digest(&bytes)[..16])
    }

    /// Tasks in an order where each comes after all of its upstreams.
    pub fn topological(&self) -> impl Iterator<Item = &TaskDef> {
        self.index.topo.iter().map(|&i| &self.tasks[i])
    }

    pub fn task(&self, id: &str) -> Option<&TaskDef> {
        self.index.by_id.get(id).map(|&i| &self.tasks[i])
    }

    pub fn downstream_of(&self, id: &str) -> impl Iterator<Item = &TaskDef> {
        let idx = self.index.by_id.get(id).copied();
        idx.into_iter()
            .flat_map(move |i| self.index.downstream[i].iter().map(|&d| &self.tasks[d]))
    }

    /// Every task downstream of `id`, transitively, in definition order.
    pub fn all_downstream(&self, id: &str) -> Vec<&TaskDef> {
        self.reachable(id, |i| self.index.downstream[i].clone())
    }

    /// Every task upstream of `id`, transitively, in definition order.
    pub fn all_upstream(&self, id: &str) -> Vec<&TaskDef> {
        self.reachable(id, |i| {
            self.tasks[i]
                .upstream
                .iter()
                .map(|u| self.index.by_id[u])
                .collect()
        })
    }

    /// The tasks reachable from `id` (itself excluded) through `next`, in definition order.
    fn reachable(&self, id: &str, next: impl Fn(usize) -> Vec<usize>) -> Vec<&TaskDef> {
        let Some(&start) = self.index.by_id.get(id) else {
            return Vec::new();
        };
        let mut seen = vec![false; self.tasks.len()];
        let mut stack = vec![start];
        while let Some(i) = stack.pop() {
            for d in next(i) {
                if !seen[d] {
                    seen[d] = true;
                    stack.push(d);
                }
            }
        }
        self.tasks
            .iter()
            .enumerate()
            .filter(|(i, _)| seen[*i])
            .map(|(_, t)| t)
            .collect()
    }

    /// A task's effective priority: its `priority_weight` plus, by its weight rule, the
    /// weights of every task downstream (`downstream`, the default) or upstream (`upstream`)
    /// of it, or alone (`absolute`); held within a 32-bit integer as Airflow does.
    pub fn priority_weight(&self, id: &str) -> i32 {
        let Some(task) = self.task(id) else { return 1 };
        let others = match task.weight_rule {
            WeightRule::Absolute => Vec::new(),
            WeightRule::Downstream => self.all_downstream(id),
            WeightRule::Upstream => self.all_upstream(id),
        };
        let total = others
            .iter()
            .fold(i64::from(task.priority_weight), |acc, t| {
                acc + i64::from(t.priority_weight)
            });
        total.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
    }

    /// Every pool its tasks use, with the most slots one of its tries takes there.
    pub fn pools(&self) -> std::collections::BTreeMap<&str, u32> {
        let mut out = std::collections::BTreeMap::new();
        for t in &self.tasks {
            let e = out.entry(t.pool.as_str()).or_insert(0);
            *e = (*e).max(t.pool_slots);
        }
        out
    }

    /// Tasks nothing depends on; a run's outcome is theirs (as in Airflow).
    pub fn is_leaf(&self, id: &str) -> bool {
        self.index
            .by_id
            .get(id)
            .is_some_and(|&i| self.index.downstream[i].is_empty())
    }

    pub fn schedule(&self) -> &Schedule {
        self.index
            .parsed_schedule
            .as_ref()
            .expect("an indexed DAG has a parsed schedule")
    }

    pub fn tz(&self) -> Tz {
        self.index.tz.expect("an indexed DAG has a time zone")
    }

    /// The dependency graph (edges point downstream), for layouts and topological orders.
    pub fn graph(&self) -> DiGraph<&str, ()> {
        build_graph(
            self.tasks
                .iter()
                .map(|t| (t.id.as_str(), t.upstream.iter().map(String::as_str))),
        )
        .0
    }
}

/// Builds a graph from `(task, upstreams)`; unknown upstreams are left out.
fn build_graph<'a, U>(
    tasks: impl Iterator<Item = (&'a str, U)> + Clone,
) -> (DiGraph<&'a str, ()>, HashMap<&'a str, NodeIndex>)
where
    U: Iterator<Item = &'a str>,
{
    let mut g = DiGraph::new();
    let mut nodes = HashMap::new();
    for (id, _) in tasks.clone() {
        nodes.entry(id).or_insert_with(|| g.add_node(id));
    }
    for (id, ups) in tasks {
        for up in ups {
            if let Some(&u) = nodes.get(up) {
                g.update_edge(u, nodes[id], ());
            }
        }
    }
    (g, nodes)
}

/// Cycles in the graph, each as the list of its tasks with the first repeated at the end.
fn find_cycles<'a>(g: &DiGraph<&'a str, ()>) -> Vec<Vec<&'a str>> {
    let mut cycles = Vec::new();
    for scc in petgraph::algo::tarjan_scc(g) {
        let start = *scc.iter().min().expect("an SCC is never empty");
        let self_loop = g.contains_edge(start, start);
        if scc.len() == 1 && !self_loop {
            continue;
        }
        if self_loop {
            cycles.push(vec![g[start], g[start]]);
            continue;
        }
        // Shortest way back to `start` inside the component: a breadth-first search.
        let members: std::collections::HashSet<_> = scc.iter().copied().collect();
        let mut prev: HashMap<NodeIndex, NodeIndex> = HashMap::new();
        let mut queue = std::collections::VecDeque::from([start]);
        'bfs: while let Some(n) = queue.pop_front() {
            for next in g.neighbors(n) {
                if !members.contains(&next) {
                    continue;
                }
                if next == start {
                    prev.insert(start, n);
                    break 'bfs;
                }
                if let std::collections::hash_map::Entry::Vacant(e) = prev.entry(next) {
                    e.insert(n);
                    queue.push_back(next);
                }
            }
        }
        let mut path = vec![g[start]];
        let mut n = prev[&start];
        while n != start {
            path.push(g[n]);
            n = prev[&n];
        }
        path.push(g[start]);
        path.reverse();
        cycles.push(path);
    }
    cycles
}
