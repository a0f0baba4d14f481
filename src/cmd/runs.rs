//! `upiflow trigger | runs | runs mark | history | logs | clear`

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use upiflow_engine::dag::parse_datetime_in;
use upiflow_engine::ops::{self, Trigger};
use upiflow_engine::state::RunState;
use upiflow_engine::store::dags::VersionCache;
use upiflow_engine::store::runs as store_runs;

use super::{connect, find_dag, fmt_duration, fmt_time, table};
use crate::Global;

#[derive(Args, Clone)]
pub struct TriggerArgs {
    pub dag_id: String,
    /// A date (YYYY-MM-DD, midnight in the DAG's time zone) or an RFC 3339 timestamp; the run
    /// covers the schedule interval containing it. Default: now.
    #[arg(long)]
    pub logical_date: Option<String>,
    /// JSON object overriding the DAG's params, e.g. '{"min_amount": 10}'.
    #[arg(long)]
    pub conf: Option<String>,
    /// Wait for the run to finish; exit 0 only if it succeeds.
    #[arg(long)]
    pub wait: bool,
}

pub async fn trigger(g: &Global, a: TriggerArgs) -> Result<ExitCode> {
    let audit = super::Audit::new("cli_dag_trigger").dag(&a.dag_id);
    let audit = match &a.logical_date {
        Some(d) => audit.extra("logical_date", d.as_str()),
        None => audit,
    };
    audit.around(g, do_trigger(g, a, &audit)).await
}

async fn do_trigger(g: &Global, a: TriggerArgs, audit: &super::Audit) -> Result<ExitCode> {
    let dag = find_dag(g, &a.dag_id)?;
    let conf = match &a.conf {
        None => serde_json::json!({}),
        Some(text) => serde_json::from_str(text).context("--conf is not valid JSON")?,
    };
    let logical_date = a
        .logical_date
        .as_deref()
        .map(|s| parse_datetime_in(s, dag.tz()))
        .transpose()
        .map_err(|e| anyhow::anyhow!("--logical-date: {e}"))?;
    let pool = connect(g).await?;
    super::check_dag_pools(&pool, &dag).await?;
    // The OS user, as the audit log names a CLI change's actor.
    let req = Trigger {
        logical_date,
        conf,
        triggered_by: Some(super::os_user()),
        ..Trigger::default()
    };
    let run = ops::trigger(&pool, &VersionCache::new(), &dag, &req).await?;
    audit.note_run(&run.run_id, Some(run.logical_date));
    super::warn_if_not_current(&dag, &run.dag_hash);
    println!(
        "created run {} of {} (data interval {} .. {}), {}",
        run.run_id,
        run.dag_id,
        run.data_interval_start.to_rfc3339(),
        run.data_interval_end.to_rfc3339(),
        run.state
    );
    if !a.wait {
        return Ok(ExitCode::SUCCESS);
    }
    let state = ops::wait_for_run(&pool, run.id, |r| {
        eprintln!("run {}: {}", r.run_id, r.state)
    })
    .await?;
    let mut conn = pool.acquire().await?;
    print_tis(&upiflow_engine::store::task_views::for_run(&mut conn, run.id).await?);
    Ok(if state == RunState::Success {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `upiflow runs DAG_ID [RUN_ID]` lists; `upiflow runs mark ...` marks. A DAG named `mark`
/// is listed with `upiflow runs -- mark`.
#[derive(Args, Clone)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct RunsArgs {
    #[command(subcommand)]
    pub command: Option<RunsCommand>,
    #[arg(required = true)]
    pub dag_id: Option<String>,
    /// Show the task instances of this run instead.
    pub run_id: Option<String>,
    #[arg(long, default_value_t = 25)]
    pub limit: i64,
}

#[derive(Subcommand, Clone)]
pub enum RunsCommand {
    /// Set a run to success (every task instance not in success becomes success), failed
    /// (running ones fail, unfinished ones are skipped) or queued (it starts again within the
    /// DAG's limits), as Airflow 3's "mark". Running tries it changes are stopped.
    Mark(RunMarkArgs),
}

#[derive(Args, Clone)]
pub struct RunMarkArgs {
    pub dag_id: String,
    pub run_id: String,
    /// success, failed or queued.
    #[arg(long)]
    pub state: String,
    /// A note to keep on the run (Airflow 3's note).
    #[arg(long)]
    pub note: Option<String>,
}

async fn mark_run(g: &Global, a: RunMarkArgs) -> Result<ExitCode> {
    super::Audit::new("cli_dag_run_mark")
        .dag(&a.dag_id)
        .run(&a.run_id)
        .extra("state", a.state.as_str())
        .around(g, do_mark_run(g, a.clone()))
        .await
}

async fn do_mark_run(g: &Global, a: RunMarkArgs) -> Result<ExitCode> {
    use upiflow_engine::lifecycle::mark::{self, RunMark};
    let Some(state) = RunMark::parse(&a.state) else {
        bail!(
            "--state `{}` is not a state a run may be marked with (success, failed, queued)",
            a.state
        );
    };
    if let Some(n) = &a.note {
        mark::check_note(n)?;
    }
    let pool = connect(g).await?;
    let by = super::tasks::who();
    let changed = mark::mark_run(
        &pool,
        &VersionCache::new(),
        &a.dag_id,
        &a.run_id,
        state,
        &by,
    )
    .await?;
    if let Some(n) = &a.note {
        mark::set_run_note(&pool, &a.dag_id, &a.run_id, Some(n), &by).await?;
    }
    let mut conn = pool.acquire().await?;
    let run = store_runs::get(&mut conn, &a.dag_id, &a.run_id).await?;
    println!(
        "marked run {} of {} {}: it is {} now; {} task instance(s) changed",
        run.run_id,
        run.dag_id,
        state.state(),
        run.state,
        changed.len()
    );
    if !changed.is_empty() {
        super::tasks::print_marked(&changed);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn runs(g: &Global, a: RunsArgs) -> Result<ExitCode> {
    if let Some(RunsCommand::Mark(m)) = a.command {
        return mark_run(g, m).await;
    }
    let Some(dag_id) = a.dag_id else {
        bail!("name a DAG: upiflow runs DAG_ID [RUN_ID]");
    };
    let pool = connect(g).await?;
    let mut conn = pool.acquire().await?;
    if let Some(run_id) = a.run_id {
        let run = store_runs::get(&mut conn, &dag_id, &run_id).await?;
        println!(
            "{} {} {} {}",
            run.run_id,
            run.run_type,
            run.state,
            run.logical_date.to_rfc3339()
        );
        print_tis(&upiflow_engine::store::task_views::for_run(&mut conn, run.id).await?);
        return Ok(ExitCode::SUCCESS);
    }
    let rows = store_runs::list(&mut conn, &dag_id, a.limit, 0).await?;
    let mut t = table(&[
        "run_id",
        "type",
        "state",
        "logical_date",
        "started",
        "ended",
        "duration",
    ]);
    for r in rows {
        t.add_row(vec![
            r.run_id,
            r.run_type.to_string(),
            r.state.to_string(),
            r.logical_date.to_rfc3339(),
            fmt_time(r.start_date),
            fmt_time(r.end_date),
            fmt_duration(r.start_date, r.end_date),
        ]);
    }
    println!("{t}");
    Ok(ExitCode::SUCCESS)
}

fn print_tis(rows: &[upiflow_engine::store::task_views::TiRow]) {
    let mut t = table(&[
        "task_id", "state", "tries", "started", "ended", "duration", "worker",
    ]);
    for ti in rows {
        t.add_row(vec![
            ti.task_id.clone(),
            ti.state
                .map(|s| s.to_string())
                .unwrap_or_else(|| "none".into()),
            format!("{}/{}", ti.try_number, ti.max_tries),
            fmt_time(ti.start_date),
            fmt_time(ti.end_date),
            fmt_duration(ti.start_date, ti.end_date),
            ti.worker.clone().unwrap_or_default(),
        ]);
    }
    println!("{t}");
}

#[derive(Args, Clone)]
pub struct HistoryArgs {
    pub dag_id: String,
    pub task_id: String,
    #[arg(long, default_value_t = 50)]
    pub limit: i64,
}

pub async fn history(g: &Global, a: HistoryArgs) -> Result<ExitCode> {
    let pool = connect(g).await?;
    let mut conn = pool.acquire().await?;
    let rows =
        upiflow_engine::store::task_views::history(&mut conn, &a.dag_id, &a.task_id, a.limit)
            .await?;
    let mut t = table(&[
        "run_id", "try", "outcome", "worker", "started", "duration", "error",
    ]);
    for r in rows {
        t.add_row(vec![
            r.run_id,
            r.try_number.to_string(),
            r.outcome
                .map(|o| o.to_string())
                .unwrap_or_else(|| "running".into()),
            r.worker,
            fmt_time(Some(r.started_at)),
            fmt_duration(Some(r.started_at), r.ended_at),
            r.error.unwrap_or_default(),
        ]);
    }
    println!("{t}");
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Clone)]
pub struct LogsArgs {
    pub dag_id: String,
    pub run_id: String,
    pub task_id: String,
    /// Which try (default: the latest).
    #[arg(long = "try")]
    pub try_number: Option<i32>,
}

pub async fn logs(g: &Global, a: LogsArgs) -> Result<ExitCode> {
    let pool = connect(g).await?;
    let mut conn = pool.acquire().await?;
    store_runs::get(&mut conn, &a.dag_id, &a.run_id).await?;
    let Some(ti) =
        upiflow_engine::store::task_views::detail(&mut conn, &a.dag_id, &a.run_id, &a.task_id)
            .await?
    else {
        bail!("run `{}` has no task `{}`", a.run_id, a.task_id);
    };
    let chosen = match a.try_number {
        Some(n) => upiflow_engine::store::task_views::find_try(&mut conn, ti.id, n).await?,
        None => upiflow_engine::store::task_views::tries(&mut conn, ti.id)
            .await?
            .pop(),
    };
    let Some(chosen) = chosen else {
        bail!("task `{}` of run `{}` has no such try", a.task_id, a.run_id);
    };
    for l in upiflow_engine::store::logs::log_page(&mut conn, chosen.id, 0, i64::MAX).await? {
        println!(
            "{} {:<6} {}",
            l.at.format("%H:%M:%S%.3f"),
            l.stream.as_str(),
            l.line
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Clone)]
pub struct ClearArgs {
    pub dag_id: String,
    pub run_id: String,
    pub task_id: String,
    /// Also clear every task downstream of it.
    #[arg(long)]
    pub downstream: bool,
}

pub async fn clear(g: &Global, a: ClearArgs) -> Result<ExitCode> {
    super::Audit::new("cli_task_clear")
        .dag(&a.dag_id)
        .run(&a.run_id)
        .task(&a.task_id)
        .extra("downstream", a.downstream)
        .around(g, async {
            let pool = connect(g).await?;
            let cleared = upiflow_engine::lifecycle::clear::clear(
                &pool,
                &VersionCache::new(),
                &a.dag_id,
                &a.run_id,
                &a.task_id,
                a.downstream,
            )
            .await?;
            println!("cleared {}: {}", cleared.len(), cleared.join(", "));
            Ok(ExitCode::SUCCESS)
        })
        .await
}
