//! Log lines of tries: tasks write through a `TaskLog`, one writer per process stores them
//! in batches, and a flush before a try is recorded as finished keeps logs and outcome in step.

use std::borrow::Cow;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};

use crate::secrets::mask::Masker;
pub use crate::state::LogStream;

enum Msg {
    Line {
        try_id: i64,
        at: DateTime<Utc>,
        stream: LogStream,
        text: String,
    },
    Flush(oneshot::Sender<()>),
}

/// A try's log: cheap to clone, lines are stored asynchronously in order. Every secret
/// the try was given ([`TaskLog::hide`]) is replaced by `***` in each line before it is
/// stored, whoever wrote it (the kind, or a program's stdout/stderr).
#[derive(Clone)]
pub struct TaskLog {
    try_id: i64,
    tx: mpsc::Sender<Msg>,
    /// Shared by the clones of one try's log, so a secret a kind looks up is masked in
    /// lines written through any of them.
    masker: Arc<RwLock<Masker>>,
}

impl TaskLog {
    pub async fn line(&self, stream: LogStream, text: impl Into<String>) {
        let msg = Msg::Line {
            try_id: self.try_id,
            at: Utc::now(),
            stream,
            text: self.mask(text.into()),
        };
        // The writer only goes away at shutdown; a line lost then has nowhere to go anyway.
        let _ = self.tx.send(msg).await;
    }

    pub async fn info(&self, text: impl Into<String>) {
        self.line(LogStream::System, text).await;
    }

    pub fn try_id(&self) -> i64 {
        self.try_id
    }

    /// Masks `secret` in every line written from now on (values shorter than 3 characters
    /// are not masked, as Airflow).
    pub fn hide(&self, secret: &str) {
        self.masker
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .add(secret);
    }

    /// `text` with every hidden secret replaced by `***` (for texts stored beside the log,
    /// such as the try's error).
    pub fn mask(&self, text: String) -> String {
        let masker = self.masker.read().unwrap_or_else(|p| p.into_inner());
        let masked = match masker.mask(&text) {
            Cow::Owned(masked) => Some(masked),
            Cow::Borrowed(_) => None,
        };
        masked.unwrap_or(text)
    }
}

/// Handle to the process's log writer.
#[derive(Clone)]
pub struct LogWriter {
    tx: mpsc::Sender<Msg>,
}

const BATCH: usize = 2_000;

impl LogWriter {
    /// Starts the writer task on `pool`.
    pub fn start(pool: PgPool) -> Self {
        let (tx, rx) = mpsc::channel(8_192);
        tokio::spawn(run(pool, rx));
        Self { tx }
    }

    pub fn for_try(&self, try_id: i64) -> TaskLog {
        TaskLog {
            try_id,
            tx: self.tx.clone(),
            masker: Arc::default(),
        }
    }

    /// Returns once every line sent before this call is stored.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Msg::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

async fn run(pool: PgPool, mut rx: mpsc::Receiver<Msg>) {
    let mut buf = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut buf, BATCH).await > 0 {
        let mut waiting = Vec::new();
        let mut ids = Vec::new();
        let mut ats = Vec::new();
        let mut streams = Vec::new();
        let mut texts = Vec::new();
        for msg in buf.drain(..) {
            match msg {
                Msg::Line {
                    try_id,
                    at,
                    stream,
                    text,
                } => {
                    ids.push(try_id);
                    ats.push(at);
                    streams.push(stream);
                    // Postgres text cannot hold NUL bytes.
                    texts.push(text.replace('\0', "\u{FFFD}"));
                }
                Msg::Flush(done) => waiting.push(done),
            }
        }
        if !ids.is_empty() {
            store_lines(&pool, &ids, &ats, &streams, &texts).await;
        }
        for done in waiting {
            let _ = done.send(());
        }
    }
}

/// Stores a batch of lines. A transient failure (a lost connection, Postgres restarting) is
/// retried until it succeeds, holding the batch (and, through the bounded channel, the
/// tasks that write more); a lasting one, which would fail again, falls back to one line
/// at a time so only a line that cannot be stored is not, and that one goes to this
/// process's own log with its text instead of vanishing.
async fn store_lines(
    pool: &PgPool,
    ids: &[i64],
    ats: &[DateTime<Utc>],
    streams: &[LogStream],
    texts: &[String],
) {
    let insert =
        async |ids: &[i64], ats: &[DateTime<Utc>], streams: &[LogStream], texts: &[String]| {
            crate::transient::retry_for("store task log lines", Duration::MAX, || async {
                crate::store::logs::insert(pool, ids, ats, streams, texts).await
            })
            .await
        };
    let Err(error) = insert(ids, ats, streams, texts).await else {
        return;
    };
    tracing::warn!(%error, lines = ids.len(), "could not store a batch of task log lines; storing them one by one");
    for i in 0..ids.len() {
        let one = i..i + 1;
        if let Err(error) = insert(
            &ids[one.clone()],
            &ats[one.clone()],
            &streams[one.clone()],
            &texts[one],
        )
        .await
        {
            tracing::error!(%error, try_id = ids[i], at = %ats[i], stream = streams[i].as_str(), line = %texts[i], "could not store a task log line");
        }
    }
}

#[cfg(test)]
mod tests {
    use sqlx::postgres::PgPoolOptions;

    use super::*;

    #[tokio::test]
    async fn a_secret_hidden_through_one_clone_is_masked_in_every_clone_of_that_try_only() {
        let pool = PgPoolOptions::new()
            .connect_lazy("postgres://nobody@127.0.0.1:1/nothing")
            .expect("a lazy pool needs no server");
        let writer = LogWriter::start(pool);
        let log = writer.for_try(1);
        let clone = log.clone();
        log.hide("hunter22");
        log.hide("ab"); // too short to mask, as Airflow
        assert_eq!(clone.mask("pw=hunter22; ab".into()), "pw=***; ab");
        let other_try = writer.for_try(2);
        assert_eq!(other_try.mask("pw=hunter22".into()), "pw=hunter22");
    }
}
