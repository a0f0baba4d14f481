//! Chaos soak: the whole system as separate processes (2 schedulers, 2 workers, 2 ingest
//! processes, the web server) on a private Postgres and a private Tansu, while the demo
//! generator sends 500 events/s. Every 5-20 s a random one of the seven is SIGKILLed and
//! restarted; Postgres is restarted (`pg_ctl restart -m fast`) twice. An hourly DAG with
//! catch-up works through its backlog meanwhile, and the shipped UPI DAG runs its scheduled
//! day and then a backfill (`--reset`) of every finished day. At the end: raw rows = events
//! sent, clean and dead-letter counts exact, one run per interval, every run a success, no
//! two tries of one task instance overlapping in time, and each finished day's summaries
//! equal to an independent computation from the raw payloads.
//!
//! Short form (scripts/test.sh): ~100 s of chaos. Long form:
//!   UPIFLOW_SOAK_SECONDS=600 cargo test --release --test chaos_soak -- --nocapture
//! Replay a kill schedule with UPIFLOW_SOAK_SEED=N (printed at the start). The work folder
//! (component logs, Postgres' log) is kept when the soak fails, or with UPIFLOW_SOAK_KEEP=1.

mod soak;

/// Prints a figure of the soak where `cargo test` shows it even when the test passes (the
/// test harness captures `println!`, not writes to the process's stdout itself), so
/// `scripts/test.sh` and CI print the soak's figures.
macro_rules! figure {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, DurationRound, NaiveDate, TimeZone, Utc};
use soak::cluster::{PrivatePostgres, Tansu};
use soak::procs::{Component, Env, OneShot, http_status, path_str};
use soak::rng::Rng;
use soak::verify::{self, ist_date};

const TOPIC: &str = "upi_transactions";
const RATE: f64 = 500.0;
/// Event times spread over this many past days: all but today are finished days.
const DAYS: u32 = 3;
const INVALID_FRACTION: f64 = 0.02;
const UPI_DAG: &str = "daily_upi_aggregation";
const HOURLY_DAG: &str = "soak_hourly";
/// The hourly DAG's last task takes longer than a killed worker's tries take to be reaped
/// and retried (zombie threshold 5 s + retry delay 1 s), as long commands do in real DAGs:
/// a command that outlived its killed worker would then still be running when its retry
/// starts, and the commands' own begin/end lines show it.
const REPORT_SECS: &str = "12";

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a whole number, not `{v}`"))
    })
}

/// The hourly DAG: catch-up from `start`, a 3-task chain (command, sql, command). The
/// commands record their real begin and end, so overlapping executions show even if the
/// tries' records looked fine.
fn hourly_dag(start: DateTime<Utc>, exec_log: &Path) -> String {
    let cmd = |task_secs: &str| {
        let log = path_str(exec_log);
        format!(
            "echo \"begin $UPIFLOW_RUN_ID $UPIFLOW_TASK_ID $UPIFLOW_TRY_NUMBER $(date +%s%N)\" >> {log}; \
             sleep {task_secs}; \
             echo \"end $UPIFLOW_RUN_ID $UPIFLOW_TASK_ID $UPIFLOW_TRY_NUMBER $(date +%s%N)\" >> {log}"
        )
    };
    format!(
        r#"dag_id = "{HOURLY_DAG}"
description = "Chaos soak: an hourly backlog worked through while processes die"
schedule = "@hourly"
timezone = "UTC"
start_date = "{start}"
catchup = true
max_active_runs = 10

[defaults]
retries = 8
retry_delay = "1s"
retry_exponential_backoff = false
timeout = "2m"

[[tasks]]
id = "extract"
kind = "command"
command = ["sh", "-c", '{extract}']

[[tasks]]
id = "load"
kind = "sql"
upstream = ["extract"]
sql = "sql/soak_load.sql"

[[tasks]]
id = "report"
kind = "command"
upstream = ["load"]
command = ["sh", "-c", '{report}']
"#,
        start = start.to_rfc3339(),
        extract = cmd("0.5"),
        report = cmd(REPORT_SECS),
    )
}

const SOAK_LOAD_SQL: &str = "INSERT INTO soak_hourly_loads AS l (logical_date, run_id, loads)
VALUES (:logical_date, :run_id, 1)
ON CONFLICT (logical_date) DO UPDATE SET loads = l.loads + 1;
";

/// The shipped UPI DAG, copied as it is except for its retry settings: a SIGKILLed worker's
/// try is failed as a zombie, and the shipped `retries = 0` of quality_checks (right for a
/// failing check) would fail the run for good; a 30 s retry delay would outlast the soak.
fn upi_dag(repo: &Path) -> String {
    let text = std::fs::read_to_string(repo.join("dags/daily_upi_aggregation.toml")).unwrap();
    let mut out = text.clone();
    for (from, to) in [
        ("retries = 2\n", "retries = 6\n"),
        ("retry_delay = \"30s\"\n", "retry_delay = \"1s\"\n"),
        ("max_retry_delay = \"10m\"\n", "max_retry_delay = \"5s\"\n"),
        ("retries = 0\n", "retries = 6\n"),
    ] {
        assert!(
            out.contains(from),
            "dags/daily_upi_aggregation.toml no longer has `{}`; update the soak's copy",
            from.trim()
        );
        out = out.replacen(from, to, 1);
    }
    out
}

fn write_dags(repo: &Path, dir: &Path, hourly_start: DateTime<Utc>, exec_log: &Path) {
    std::fs::create_dir_all(dir.join("sql")).unwrap();
    std::fs::write(
        dir.join("soak_hourly.toml"),
        hourly_dag(hourly_start, exec_log),
    )
    .unwrap();
    std::fs::write(dir.join("sql/soak_load.sql"), SOAK_LOAD_SQL).unwrap();
    std::fs::write(dir.join("daily_upi_aggregation.toml"), upi_dag(repo)).unwrap();
    for e in std::fs::read_dir(repo.join("dags/sql")).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().into_string().unwrap();
        if name.starts_with("upi_") {
            std::fs::copy(e.path(), dir.join("sql").join(name)).unwrap();
        }
    }
}

fn ist_midnight(d: NaiveDate) -> DateTime<Utc> {
    chrono_tz::Asia::Kolkata
        .from_local_datetime(&d.and_hms_opt(0, 0, 0).unwrap())
        .single()
        .unwrap()
        .with_timezone(&Utc)
}

/// Counts of interesting lines in Postgres' log.
fn postgres_log_figures(log: &Path) -> BTreeMap<&'static str, usize> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut m = BTreeMap::new();
    for (name, needle) in [
        ("deadlocks", "deadlock detected"),
        ("serialization failures", "could not serialize"),
        ("unique violations", "duplicate key value"),
        (
            "connections cut by shutdown",
            "terminating connection due to administrator command",
        ),
        ("ERROR lines", "ERROR:"),
    ] {
        m.insert(name, text.matches(needle).count());
    }
    m
}

struct Probe {
    runs: u32,
    failures: Vec<String>,
    running: Option<OneShot>,
    next_at: Instant,
}

#[test]
fn chaos_soak_loses_nothing_doubles_nothing_and_every_run_succeeds() {
    let secs = env_u64("UPIFLOW_SOAK_SECONDS").unwrap_or(100).max(30);
    let seed = env_u64("UPIFLOW_SOAK_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            % 1_000_000_007
    });
    println!(
        "chaos soak: {secs} s of chaos, seed {seed} (replay: UPIFLOW_SOAK_SEED={seed} UPIFLOW_SOAK_SECONDS={secs})"
    );
    let mut rng = Rng::new(seed);
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let work = std::env::temp_dir().join(format!("upiflow-soak-{seed}-{}", std::process::id()));
    std::fs::create_dir_all(work.join("logs")).unwrap();
    let keep = KeepOnFailure(work.clone());
    let _ = &keep;

    // Servers of our own: Postgres is restarted, so never the shared one.
    let pg = PrivatePostgres::start(&work);
    let tansu = Tansu::start(&work);
    tansu.create_topic(TOPIC, 3);
    println!(
        "  work folder {} (Postgres :{}, Kafka {})",
        work.display(),
        pg.port,
        tansu.bootstrap
    );

    let now = Utc::now();
    let hours = (secs * 6 / 10).max(24) as i64;
    let hourly_start =
        now.duration_trunc(chrono::Duration::hours(1)).unwrap() - chrono::Duration::hours(hours);
    let dags = work.join("dags");
    let exec_log = work.join("executions.log");
    write_dags(&repo, &dags, hourly_start, &exec_log);

    let web_port = soak::free_port();
    let env = Env {
        bin: PathBuf::from(env!("CARGO_BIN_EXE_upiflow")),
        vars: vec![
            ("DATABASE_URL".into(), pg.url.clone()),
            ("KAFKA_BOOTSTRAP_SERVERS".into(), tansu.bootstrap.clone()),
            ("UPIFLOW_DAGS_FOLDER".into(), path_str(&dags)),
            ("UPIFLOW_HOME".into(), path_str(&work.join("home"))),
            ("RUST_LOG".into(), "info,sqlx=warn".into()),
        ],
        logs: work.join("logs"),
    };
    let (status, out) = env.run(&["db", "migrate"], Duration::from_secs(120));
    assert!(
        status.is_some_and(|s| s.success()),
        "db migrate failed: {out}"
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    let pool = rt
        .block_on(
            sqlx::postgres::PgPoolOptions::new()
                .max_connections(4)
                .acquire_timeout(Duration::from_secs(5))
                .connect(&pg.url),
        )
        .unwrap();
    rt.block_on(
        sqlx::query(
            "CREATE TABLE soak_hourly_loads (logical_date timestamptz PRIMARY KEY,
                                             run_id text NOT NULL, loads integer NOT NULL)",
        )
        .execute(&pool),
    )
    .unwrap();

    // The seven parts.
    let web_bind = format!("127.0.0.1:{web_port}");
    let worker_args = [
        "worker",
        "--concurrency",
        "8",
        "--zombie-threshold",
        "5s",
        "--heartbeat",
        "1s",
    ];
    let mut parts = vec![
        Component::start(&env, "scheduler-1", &["scheduler"]),
        Component::start(&env, "scheduler-2", &["scheduler"]),
        Component::start(&env, "worker-1", &worker_args),
        Component::start(&env, "worker-2", &worker_args),
        Component::start(&env, "ingest-1", &["ingest", "--lease-ttl", "3s"]),
        Component::start(&env, "ingest-2", &["ingest", "--lease-ttl", "3s"]),
        Component::start(&env, "web", &["web", "--bind", &web_bind]),
    ];

    // The generator: never killed, so what it sent is exact.
    let gen_secs = secs as f64 * 0.55;
    let count = (RATE * gen_secs) as u64;
    let gen_seed = seed % 1_000_000;
    let chaos_start = Instant::now();
    let gen_started_at = Utc::now();
    let mut generator = OneShot::start(
        &env,
        "generate",
        &[
            "generate".into(),
            "--count".into(),
            count.to_string(),
            "--rate".into(),
            RATE.to_string(),
            "--invalid-fraction".into(),
            INVALID_FRACTION.to_string(),
            "--days".into(),
            DAYS.to_string(),
            "--seed".into(),
            gen_seed.to_string(),
            "--topic".into(),
            TOPIC.into(),
        ],
    );
    let mut gen_ended_at: Option<DateTime<Utc>> = None;
    let mut failures: Vec<String> = Vec::new();

    // Finished days: every Asia/Kolkata day from the earliest possible event time to the
    // last day that ended before the generator stopped (fixed once it has).
    let first_day = ist_date(gen_started_at - chrono::Duration::days(DAYS as i64));
    let mut last_day: Option<NaiveDate> = None;

    let pg_restart_at = [
        secs as f64 * rng.between(0.2, 0.4),
        secs as f64 * rng.between(0.65, 0.85),
    ];
    let mut pg_restarts: Vec<(f64, Duration)> = Vec::new();
    let mut next_kill = rng.between(5.0, 20.0);
    let mut backfill: Option<OneShot> = None;
    let mut backfill_runs = 0u32;
    let mut backfill_ok = false;
    let mut waiting_for_upi_since: Option<Instant> = None;
    let mut probe = Probe {
        runs: 0,
        failures: Vec::new(),
        running: None,
        next_at: Instant::now() + Duration::from_secs(3),
    };
    let (mut web_probes, mut web_misses) = (0u32, 0u32);
    let mut next_web_probe = Instant::now() + Duration::from_secs(5);
    let chaos = Duration::from_secs(secs);
    let recovery_limit = Duration::from_secs(300.max(secs / 2));
    let mut recovered_at: Option<Duration> = None;
    let mut last_wait_report = Instant::now();

    loop {
        let t = chaos_start.elapsed();
        let in_chaos = t < chaos;
        for p in parts.iter_mut() {
            p.check_alive(&env, t);
        }
        if in_chaos && t.as_secs_f64() >= next_kill {
            let i = rng.below(parts.len() as u64) as usize;
            let pid = parts[i].pid();
            parts[i].kill_and_restart(&env);
            println!(
                "  t={:6.1}s SIGKILL {} (pid {pid:?}), restarted",
                t.as_secs_f64(),
                parts[i].name
            );
            next_kill = t.as_secs_f64() + rng.between(5.0, 20.0);
        }
        if in_chaos && pg_restarts.len() < 2 && t.as_secs_f64() >= pg_restart_at[pg_restarts.len()]
        {
            let took = pg.restart();
            println!(
                "  t={:6.1}s Postgres restarted (-m fast) in {took:.2?}",
                t.as_secs_f64()
            );
            pg_restarts.push((t.as_secs_f64(), took));
        }
        if gen_ended_at.is_none()
            && let Some(s) = generator.poll()
        {
            let end = Utc::now();
            gen_ended_at = Some(end);
            last_day = Some(ist_date(end).pred_opt().unwrap());
            println!(
                "  t={:6.1}s generator done ({s}): {}",
                t.as_secs_f64(),
                generator.output().lines().last().unwrap_or("")
            );
            if !s.success() {
                failures.push(format!("the generator failed: {}", generator.output()));
            }
        }
        // The backfill of the finished days, once the generator is done and the UPI runs
        // begun before that are over (a running run is not reset).
        if backfill.is_none()
            && !backfill_ok
            && let Some(last) = last_day
        {
            let active = rt
                .block_on(verify::active_runs(&pool, UPI_DAG))
                .unwrap_or(1);
            let since = *waiting_for_upi_since.get_or_insert_with(Instant::now);
            if active == 0 || since.elapsed() > Duration::from_secs(90) {
                if active > 0 {
                    failures.push(format!(
                        "{active} UPI run(s) still active 90 s after the generator ended"
                    ));
                }
                backfill_runs += 1;
                backfill = Some(OneShot::start(
                    &env,
                    &format!("backfill-{backfill_runs}"),
                    &[
                        "backfill".into(),
                        UPI_DAG.into(),
                        "--from".into(),
                        first_day.to_string(),
                        "--to".into(),
                        last.to_string(),
                        "--reset".into(),
                        "--wait".into(),
                    ],
                ));
                println!(
                    "  t={:6.1}s backfill {UPI_DAG} --from {first_day} --to {last} --reset --wait",
                    t.as_secs_f64()
                );
            }
        }
        if let Some(b) = backfill.as_mut()
            && let Some(s) = b.poll()
        {
            let out = b.output();
            let last_line = out
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            println!(
                "  t={:6.1}s backfill ended ({s}): {last_line}",
                t.as_secs_f64()
            );
            if s.success() {
                backfill_ok = true;
            } else {
                failures.push(format!(
                    "`upiflow backfill` failed ({s}):\n{}",
                    soak::tail(&b.log, 15)
                ));
            }
            backfill = None; // a failed one is run again: the same request resumes it
        }
        // A CLI command every few seconds: none may fail on a transient database error.
        if let Some(r) = probe.running.as_mut()
            && let Some(s) = r.poll()
        {
            probe.runs += 1;
            if !s.success() {
                probe.failures.push(format!(
                    "t={:.1}s `upiflow runs {HOURLY_DAG}` failed ({s}): {}",
                    t.as_secs_f64(),
                    soak::tail(&r.log, 3)
                ));
            }
            let _ = std::fs::remove_file(&r.log);
            probe.running = None;
        }
        if probe.running.is_none() && Instant::now() >= probe.next_at {
            probe.running = Some(OneShot::start(
                &env,
                &format!("probe-{}", probe.runs),
                &["runs".into(), HOURLY_DAG.into()],
            ));
            probe.next_at = Instant::now() + Duration::from_secs(3);
        }
        if Instant::now() >= next_web_probe {
            let web = parts.iter().find(|p| p.name == "web").unwrap();
            if web.started_at.elapsed() > Duration::from_secs(5) {
                web_probes += 1;
                if http_status(web_port, "/api/v2/monitor/health", Duration::from_secs(2)).is_none()
                {
                    web_misses += 1;
                }
            }
            next_web_probe = Instant::now() + Duration::from_secs(1);
        }

        if !in_chaos {
            // Recovery: everything caught up?
            let sent_all = gen_ended_at.is_some();
            let raw = rt
                .block_on(verify::ingested(&pool, TOPIC))
                .map(|i| i.raw)
                .unwrap_or(-1);
            let expected_hours = (Utc::now()
                .duration_trunc(chrono::Duration::hours(1))
                .unwrap()
                - hourly_start)
                .num_hours();
            let hourly = rt.block_on(verify::runs(&pool, HOURLY_DAG)).ok();
            let hourly_done = hourly.as_ref().is_some_and(|r| {
                r.total == expected_hours
                    && !r.by_state.contains_key("queued")
                    && !r.by_state.contains_key("running")
            });
            let upi_active = rt
                .block_on(verify::active_runs(&pool, UPI_DAG))
                .unwrap_or(1);
            let done = sent_all
                && raw == count as i64
                && hourly_done
                && backfill_ok
                && upi_active == 0
                && probe.running.is_none();
            if done {
                recovered_at = Some(t - chaos);
                break;
            }
            if t - chaos > recovery_limit {
                failures.push(format!(
                    "not recovered {recovery_limit:?} after the chaos: generator done {sent_all}, raw {raw}/{count}, hourly runs {:?}/{expected_hours} ({:?}), backfill ok {backfill_ok}, UPI runs active {upi_active}",
                    hourly.as_ref().map(|r| r.total),
                    hourly.as_ref().map(|r| &r.by_state)
                ));
                break;
            }
            if last_wait_report.elapsed() > Duration::from_secs(15) {
                println!(
                    "  t={:6.1}s recovering: raw {raw}/{count}, hourly runs {:?}/{expected_hours}, backfill ok {backfill_ok}, UPI active {upi_active}",
                    t.as_secs_f64(),
                    hourly.as_ref().map(|r| r.total)
                );
                last_wait_report = Instant::now();
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }

    // ---- The figures. ----
    let sent = soak::expect::replay(gen_seed, DAYS, INVALID_FRACTION, count);
    let printed = soak::expect::parse_generate_output(&generator.output());
    if printed
        != Some((
            sent.messages,
            sent.valid,
            sent.pending,
            sent.resolutions,
            sent.invalid,
        ))
    {
        failures.push(format!(
            "the generator's own summary {printed:?} differs from its replayed sequence {sent:?}"
        ));
    }
    let ing = rt.block_on(verify::ingested(&pool, TOPIC)).unwrap();
    let ind = rt.block_on(verify::independent(&pool, TOPIC)).unwrap();
    let hourly = rt.block_on(verify::runs(&pool, HOURLY_DAG)).unwrap();
    let upi = rt.block_on(verify::runs(&pool, UPI_DAG)).unwrap();
    let tries = rt.block_on(verify::tries(&pool)).unwrap();
    // Tries that never wrote their end: bounded by when the soak killed their worker.
    let kill_ns: std::collections::HashMap<u32, u128> = parts
        .iter()
        .flat_map(|p| &p.killed_pids)
        .map(|(pid, at)| {
            (
                *pid,
                at.duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos(),
            )
        })
        .collect();
    let killed_by = rt
        .block_on(verify::try_workers(&pool, HOURLY_DAG))
        .unwrap()
        .into_iter()
        .filter_map(|(k, pid)| Some((k, *kill_ns.get(&pid)?)))
        .collect();
    let execs = verify::executions(
        &std::fs::read_to_string(&exec_log).unwrap_or_default(),
        &killed_by,
    );
    let loads: Vec<(DateTime<Utc>, i32)> = rt
        .block_on(
            sqlx::query_as("SELECT logical_date, loads FROM soak_hourly_loads").fetch_all(&pool),
        )
        .unwrap();
    let end_now = Utc::now();
    let expected_hourly: Vec<DateTime<Utc>> =
        (0..(end_now.duration_trunc(chrono::Duration::hours(1)).unwrap() - hourly_start)
            .num_hours())
            .map(|h| hourly_start + chrono::Duration::hours(h))
            .collect();
    let yesterday = ist_date(end_now).pred_opt().unwrap();
    let expected_upi: Vec<DateTime<Utc>> = first_day
        .iter_days()
        .take_while(|d| *d <= yesterday)
        .map(ist_midnight)
        .collect();
    let last = last_day.unwrap_or(first_day);
    let days_range: Vec<NaiveDate> = first_day.iter_days().take_while(|d| *d <= last).collect();
    let summary = rt
        .block_on(verify::summary_days(&pool, first_day, last))
        .unwrap();
    let merchants = rt
        .block_on(verify::summary_merchants(&pool, first_day, last))
        .unwrap();
    let mut mismatches = Vec::new();
    for d in &days_range {
        let want = ind.days.get(d).cloned().unwrap_or_default();
        match summary.get(d) {
            Some(got) if *got == want => {}
            got => mismatches.push(format!(
                "daily_upi_summary {d}: pipeline {got:?}, raw payloads {want:?}"
            )),
        }
    }
    let want_merchants: verify::Merchants = ind
        .merchants
        .iter()
        .filter(|((_, d), _)| *d >= first_day && *d <= last)
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    let mut merchant_mismatches = 0usize;
    for k in want_merchants.keys().chain(
        merchants
            .keys()
            .filter(|k| !want_merchants.contains_key(*k)),
    ) {
        if want_merchants.get(k) != merchants.get(k) {
            merchant_mismatches += 1;
            if merchant_mismatches <= 5 {
                mismatches.push(format!(
                    "merchant_upi_summary {k:?}: pipeline {:?}, raw payloads {:?}",
                    merchants.get(k),
                    want_merchants.get(k)
                ));
            }
        }
    }
    let compared_txns: i64 = days_range
        .iter()
        .filter_map(|d| ind.days.get(d))
        .map(|d| d.total)
        .sum();
    let pg_log = postgres_log_figures(&pg.log());
    let unexpected: Vec<&String> = parts.iter().flat_map(|p| &p.unexpected_exits).collect();

    figure!("\n== chaos soak figures (seed {seed}, {secs} s of chaos) ==");
    figure!(
        "kills: {} ({})",
        parts.iter().map(|p| p.kills).sum::<u32>(),
        parts
            .iter()
            .map(|p| format!("{} {}", p.name, p.kills))
            .collect::<Vec<_>>()
            .join(", ")
    );
    figure!(
        "Postgres restarts: {} (at {})",
        pg_restarts.len(),
        pg_restarts
            .iter()
            .map(|(t, d)| format!("t={t:.0}s took {d:.1?}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    figure!("unexpected exits of a part: {}", unexpected.len());
    figure!(
        "events sent: {} = {} valid ({} PENDING) + {} resolutions + {} invalid {:?}",
        sent.messages,
        sent.valid,
        sent.pending,
        sent.resolutions,
        sent.invalid,
        sent.invalid_by_kind
    );
    figure!(
        "raw rows: {} (expected {}), partitions {:?}, offsets without holes: {}",
        ing.raw,
        sent.messages,
        ing.partitions,
        ing.contiguous()
    );
    figure!(
        "clean rows: {} (expected {} distinct txn_ids)",
        ing.clean,
        sent.clean_txns
    );
    figure!("dead letters: {} (expected {})", ing.dead, sent.invalid);
    figure!(
        "raw payloads by the documented rules: {} valid, {} invalid, {} transactions",
        ind.valid_messages,
        ind.invalid_messages,
        ind.txns
    );
    figure!(
        "runs {HOURLY_DAG}: {} {:?} {:?}; intervals expected {}; task instances not success {}; loads rows {} (max loads of one interval {})",
        hourly.total,
        hourly.by_state,
        hourly.by_type,
        expected_hourly.len(),
        hourly.tis_not_success,
        loads.len(),
        loads.iter().map(|l| l.1).max().unwrap_or(0)
    );
    figure!(
        "runs {UPI_DAG}: {} {:?} {:?}; intervals expected {} ({first_day}..={yesterday}); task instances not success {}",
        upi.total,
        upi.by_state,
        upi.by_type,
        expected_upi.len(),
        upi.tis_not_success
    );
    let failed_runs = hourly.by_state.get("failed").copied().unwrap_or(0)
        + upi.by_state.get("failed").copied().unwrap_or(0);
    figure!("failed runs: {failed_runs}");
    figure!(
        "tries: {} {:?}; zombie tries {}; still open {}; misnumbered task instances {}",
        tries.total,
        tries.by_outcome,
        tries.by_outcome.get("zombie").copied().unwrap_or(0),
        tries.open,
        tries.misnumbered
    );
    figure!(
        "overlapping tries: {} by the tries' records, {} by the commands' own begin/end ({} executions, {} without an end, {} of them not explained by a kill)",
        tries.overlaps,
        execs.overlaps,
        execs.tries,
        execs.unfinished,
        execs.unexplained
    );
    figure!(
        "days compared: {} ({first_day}..={last}, {compared_txns} transactions, {} merchant-days); mismatches: {}",
        days_range.len(),
        want_merchants.len(),
        mismatches.len()
    );
    figure!(
        "CLI: backfill runs {backfill_runs} (ok {backfill_ok}), `upiflow runs` probes {} with {} failures; web probes {web_probes}, unanswered {web_misses}",
        probe.runs,
        probe.failures.len()
    );
    figure!("Postgres log: {pg_log:?}");
    match recovered_at {
        Some(d) => figure!("caught up {:.1}s after the chaos stopped", d.as_secs_f64()),
        None => figure!("did not catch up"),
    }

    // ---- The verdict. ----
    let mut check = |ok: bool, what: String| {
        if !ok {
            failures.push(what);
        }
    };
    check(
        unexpected.is_empty(),
        format!(
            "parts exited by themselves:\n{}",
            unexpected
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        ),
    );
    check(
        pg_restarts.len() == 2,
        format!("Postgres was restarted {} times, not 2", pg_restarts.len()),
    );
    check(
        ing.raw == sent.messages as i64,
        format!("raw rows {} != events sent {}", ing.raw, sent.messages),
    );
    check(
        ing.contiguous(),
        format!("raw offsets have holes: {:?}", ing.partitions),
    );
    check(
        ing.clean == sent.clean_txns as i64,
        format!("clean rows {} != {}", ing.clean, sent.clean_txns),
    );
    check(
        ing.dead == sent.invalid as i64,
        format!("dead letters {} != {}", ing.dead, sent.invalid),
    );
    check(
        ind.valid_messages == sent.valid + sent.resolutions && ind.invalid_messages == sent.invalid,
        format!(
            "the raw payloads validate as {} valid / {} invalid, the generator sent {} / {}",
            ind.valid_messages,
            ind.invalid_messages,
            sent.valid + sent.resolutions,
            sent.invalid
        ),
    );
    check(
        hourly.logical_dates == expected_hourly,
        format!(
            "{HOURLY_DAG}: runs at {} logical dates, expected {} (one per interval)",
            hourly.logical_dates.len(),
            expected_hourly.len()
        ),
    );
    check(
        upi.logical_dates == expected_upi,
        format!(
            "{UPI_DAG}: runs at {:?}, expected {:?}",
            upi.logical_dates, expected_upi
        ),
    );
    check(
        failed_runs == 0 && hourly.by_state.len() == 1 && upi.by_state.len() == 1,
        format!(
            "runs not all success: {:?} {:?}",
            hourly.by_state, upi.by_state
        ),
    );
    check(
        hourly.tis_not_success == 0 && upi.tis_not_success == 0,
        "task instances not in success".into(),
    );
    check(
        loads.len() == expected_hourly.len(),
        format!(
            "the load task wrote {} intervals, expected {}",
            loads.len(),
            expected_hourly.len()
        ),
    );
    check(tries.open == 0, format!("{} tries never ended", tries.open));
    check(
        tries.overlaps == 0,
        format!("overlapping tries:\n{}", tries.overlap_examples.join("\n")),
    );
    check(
        execs.overlaps == 0,
        format!(
            "tries that really ran at once:\n{}",
            execs.overlap_examples.join("\n")
        ),
    );
    check(
        execs.unexplained == 0,
        format!(
            "{} command tries never ended although their worker was not killed",
            execs.unexplained
        ),
    );
    check(
        tries.misnumbered == 0,
        format!(
            "{} task instances with misnumbered tries",
            tries.misnumbered
        ),
    );
    check(
        mismatches.is_empty(),
        format!(
            "summaries differ from the raw payloads:\n{}",
            mismatches.join("\n")
        ),
    );
    check(
        !days_range.is_empty() && compared_txns > 0,
        "no finished day with transactions was compared".into(),
    );
    check(
        probe.failures.is_empty(),
        format!("CLI probes failed:\n{}", probe.failures.join("\n")),
    );
    check(
        http_status(web_port, "/api/v2/monitor/health", Duration::from_secs(5)) == Some(200),
        "the web server does not answer health with 200 after the soak".into(),
    );
    drop(rt);
    if !failures.is_empty() {
        panic!(
            "chaos soak found {} problem(s) (logs kept in {}):\n- {}",
            failures.len(),
            work.display(),
            failures.join("\n- ")
        );
    }
    drop(parts);
}

/// Removes the work folder when the soak passes (unless UPIFLOW_SOAK_KEEP is set); keeps it,
/// with every component's log and Postgres' log, when it fails.
struct KeepOnFailure(PathBuf);

impl Drop for KeepOnFailure {
    fn drop(&mut self) {
        if !std::thread::panicking() && std::env::var_os("UPIFLOW_SOAK_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
