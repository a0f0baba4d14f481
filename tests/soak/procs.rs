//! The `upiflow` processes of the soak. Each runs in its own process group, so a kill
//! reaches everything it started in that group; every one is killed when dropped, whatever
//! happened to the test.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// How to start `upiflow`: the binary, its environment, where logs go.
#[derive(Clone)]
pub struct Env {
    pub bin: PathBuf,
    pub vars: Vec<(String, String)>,
    pub logs: PathBuf,
}

impl Env {
    /// `upiflow ARGS` in a new process group, stdout and stderr appended to `logs/NAME.log`.
    pub fn spawn(&self, log_name: &str, args: &[String]) -> Child {
        let path = self.logs.join(format!("{log_name}.log"));
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        let mut c = Command::new(&self.bin);
        c.args(args)
            .env_remove("DATABASE_URL")
            .envs(self.vars.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        std::os::unix::process::CommandExt::process_group(&mut c, 0);
        c.spawn().expect("start upiflow")
    }

    /// Runs `upiflow ARGS` to the end (bounded): exit status and combined output.
    pub fn run(&self, args: &[&str], limit: Duration) -> (Option<ExitStatus>, String) {
        let name = format!("cli-{}", uuid::Uuid::new_v4().simple());
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let mut once = OneShot::start(self, &name, &args);
        let started = Instant::now();
        loop {
            if let Some(s) = once.poll() {
                let out = std::fs::read_to_string(self.logs.join(format!("{name}.log")))
                    .unwrap_or_default();
                let _ = std::fs::remove_file(self.logs.join(format!("{name}.log")));
                return (Some(s), out);
            }
            if started.elapsed() > limit {
                return (
                    None,
                    super::tail(&self.logs.join(format!("{name}.log")), 20),
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn kill_group(child: &mut Child) {
    let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
    let _ = child.wait();
}

/// A long-running part (scheduler, worker, ingest, web) that the soak kills and restarts.
pub struct Component {
    pub name: String,
    args: Vec<String>,
    child: Option<Child>,
    pub started_at: Instant,
    pub kills: u32,
    /// Exits nobody asked for: (when, status, the end of its log).
    pub unexpected_exits: Vec<String>,
    /// (pid, when it was killed), to bound the end of tries a killed process was running.
    pub killed_pids: Vec<(u32, std::time::SystemTime)>,
}

impl Component {
    pub fn start(env: &Env, name: &str, args: &[&str]) -> Self {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        Self {
            child: Some(env.spawn(name, &args)),
            name: name.to_string(),
            args,
            started_at: Instant::now(),
            kills: 0,
            unexpected_exits: Vec::new(),
            killed_pids: Vec::new(),
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// SIGKILL to the process group, then start it again.
    pub fn kill_and_restart(&mut self, env: &Env) {
        if let Some(mut c) = self.child.take() {
            self.killed_pids
                .push((c.id(), std::time::SystemTime::now()));
            kill_group(&mut c);
        }
        self.kills += 1;
        self.log_marker(env, "SIGKILLed by the soak; restarting");
        self.child = Some(env.spawn(&self.name, &self.args));
        self.started_at = Instant::now();
    }

    /// If it exited on its own, records that and starts it again. True if it had exited.
    pub fn check_alive(&mut self, env: &Env, elapsed: Duration) -> bool {
        let Some(c) = self.child.as_mut() else {
            return false;
        };
        match c.try_wait() {
            Ok(Some(status)) => {
                let log = env.logs.join(format!("{}.log", self.name));
                self.unexpected_exits.push(format!(
                    "{} exited by itself at t={:.1}s ({status}); its log ends:\n{}",
                    self.name,
                    elapsed.as_secs_f64(),
                    super::tail(&log, 12)
                ));
                self.log_marker(env, "exited by itself; the soak restarts it");
                self.child = Some(env.spawn(&self.name, &self.args));
                self.started_at = Instant::now();
                true
            }
            _ => false,
        }
    }

    fn log_marker(&self, env: &Env, what: &str) {
        use std::io::Write;
        let path = env.logs.join(format!("{}.log", self.name));
        if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(path) {
            let _ = writeln!(f, "==== soak: {} {what} ====", self.name);
        }
    }

    pub fn log_path(&self, env: &Env) -> PathBuf {
        env.logs.join(format!("{}.log", self.name))
    }
}

impl Drop for Component {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill_group(&mut c);
        }
    }
}

/// A command the soak runs to its end (generator, backfill, CLI probes); killed if dropped
/// while still running.
pub struct OneShot {
    child: Option<Child>,
    status: Option<ExitStatus>,
    pub log: PathBuf,
    pub started: Instant,
}

impl OneShot {
    pub fn start(env: &Env, name: &str, args: &[String]) -> Self {
        Self {
            child: Some(env.spawn(name, args)),
            status: None,
            log: env.logs.join(format!("{name}.log")),
            started: Instant::now(),
        }
    }

    /// The exit status once it has ended.
    pub fn poll(&mut self) -> Option<ExitStatus> {
        if self.status.is_none()
            && let Some(c) = self.child.as_mut()
            && let Ok(Some(s)) = c.try_wait()
        {
            self.status = Some(s);
            self.child = None;
        }
        self.status
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for OneShot {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill_group(&mut c);
        }
    }
}

/// One HTTP/1.0 GET on loopback: the status code, or None if nothing answered in time.
pub fn http_status(port: u16, path: &str, timeout: Duration) -> Option<u16> {
    use std::io::{Read, Write};
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = std::net::TcpStream::connect_timeout(&addr, timeout).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    s.set_write_timeout(Some(timeout)).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).ok()?;
    let head = std::str::from_utf8(&buf[..n]).ok()?;
    head.split_whitespace().nth(1)?.parse().ok()
}

pub fn path_str(p: &Path) -> String {
    p.display().to_string()
}
