//! Copies a command's stdout and stderr into the try's log, one log line per output line.

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use upiflow_engine::logs::{LogStream, TaskLog};

/// Longer output lines are logged in pieces, so one runaway line cannot exhaust memory.
pub(super) const MAX_LINE_BYTES: u64 = 64 * 1024;

/// Copies `pipe` into the log, one line per log line, until end of file.
pub(super) async fn pump(pipe: Option<impl AsyncRead + Unpin>, stream: LogStream, log: &TaskLog) {
    let Some(pipe) = pipe else { return };
    let mut reader = BufReader::new(pipe);
    let mut buf = Vec::new();
    loop {
        match next_line(&mut reader, &mut buf).await {
            Ok(Some(line)) => log.line(stream, line).await,
            Ok(None) => return,
            Err(e) => {
                log.info(format!("could not read the command's {stream:?}: {e}"))
                    .await;
                return;
            }
        }
    }
}

/// The next line without its line ending, decoded lossily; `None` at end of file.
pub(super) async fn next_line(
    reader: &mut (impl AsyncBufRead + Unpin),
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<String>> {
    buf.clear();
    let n = reader.take(MAX_LINE_BYTES).read_until(b'\n', buf).await?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
    }
    Ok(Some(String::from_utf8_lossy(buf).into_owned()))
}
