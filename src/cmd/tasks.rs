//! `upiflow tasks mark DAG_ID RUN_ID TASK_ID --state success|failed|skipped`: set task
//! instances to a state by hand, as Airflow's "mark".

use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use upiflow_engine::lifecycle::mark::{self, MarkTasks, Marked, TiMark};
use upiflow_engine::store::dags::VersionCache;

use super::{connect, table};
use crate::Global;

#[derive(Subcommand, Clone)]
pub enum TasksCommand {
    /// Set a task instance (and, on request, its relatives) to success, failed or skipped;
    /// a running try of it is stopped. Downstream tasks then follow their trigger rules.
    Mark(MarkArgs),
}

#[derive(Args, Clone)]
pub struct MarkArgs {
    pub dag_id: String,
    pub run_id: String,
    pub task_id: String,
    /// success, failed or skipped.
    #[arg(long)]
    pub state: String,
    /// Also every task upstream of it (in the same run, or runs with --past/--future).
    #[arg(long)]
    pub upstream: bool,
    /// Also every task downstream of it.
    #[arg(long)]
    pub downstream: bool,
    /// Also the same tasks in the DAG's runs with earlier logical dates.
    #[arg(long)]
    pub past: bool,
    /// Also the same tasks in the DAG's runs with later logical dates.
    #[arg(long)]
    pub future: bool,
    /// A note to keep on the task instance (Airflow 3's note).
    #[arg(long)]
    pub note: Option<String>,
    /// Only print what would change.
    #[arg(long)]
    pub dry_run: bool,
}

pub async fn run(g: &Global, c: TasksCommand) -> Result<ExitCode> {
    match c {
        TasksCommand::Mark(a) => mark_tasks(g, a).await,
    }
}

/// Who marks, as recorded on the tries a mark stops.
pub fn who() -> String {
    let user = std::env::var("USER").unwrap_or_default();
    if user.is_empty() {
        "the CLI".into()
    } else {
        format!("{user} (CLI)")
    }
}

async fn mark_tasks(g: &Global, a: MarkArgs) -> Result<ExitCode> {
    super::Audit::new("cli_task_mark")
        .dag(&a.dag_id)
        .run(&a.run_id)
        .task(&a.task_id)
        .extra("state", a.state.as_str())
        .extra("upstream", a.upstream)
        .extra("downstream", a.downstream)
        .extra("past", a.past)
        .extra("future", a.future)
        .extra("dry_run", a.dry_run)
        .around(g, do_mark_tasks(g, a.clone()))
        .await
}

async fn do_mark_tasks(g: &Global, a: MarkArgs) -> Result<ExitCode> {
    let Some(state) = TiMark::parse(&a.state) else {
        bail!(
            "--state `{}` is not a state a task instance may be marked with (success, failed, skipped)",
            a.state
        );
    };
    if let Some(n) = &a.note {
        mark::check_note(n)?;
    }
    let pool = connect(g).await?;
    let by = who();
    let req = MarkTasks {
        dag_id: &a.dag_id,
        run_id: &a.run_id,
        task_id: &a.task_id,
        state,
        upstream: a.upstream,
        downstream: a.downstream,
        past: a.past,
        future: a.future,
        dry_run: a.dry_run,
        by: &by,
    };
    let changed = mark::mark_tasks(&pool, &VersionCache::new(), &req).await?;
    if a.dry_run {
        println!(
            "would mark {} task instance(s) {} (dry run, nothing changed):",
            changed.len(),
            state.state()
        );
    } else {
        if let Some(n) = &a.note {
            mark::set_task_note(&pool, &a.dag_id, &a.run_id, &a.task_id, Some(n), &by).await?;
        }
        println!(
            "marked {} task instance(s) {}:",
            changed.len(),
            state.state()
        );
    }
    print_marked(&changed);
    Ok(ExitCode::SUCCESS)
}

/// A table of what a mark changed.
pub fn print_marked(rows: &[Marked]) {
    let mut t = table(&["run_id", "task_id", "from", "to", "try"]);
    for m in rows {
        t.add_row(vec![
            m.run_id.clone(),
            m.task_id.clone(),
            m.from.map_or_else(|| "none".into(), |s| s.to_string()),
            m.to.to_string(),
            if m.stopped {
                format!("try {} stopped", m.try_number)
            } else {
                String::new()
            },
        ]);
    }
    println!("{t}");
}
