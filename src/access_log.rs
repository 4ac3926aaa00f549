//! The access log (`access_log:`): one line per request, written from the
//! `logging` phase, plus one line per finished write-back under the same
//! request id.
//!
//! Workers never block on it: a record goes through a bounded channel to
//! a writer thread that formats and writes it; when the channel is full
//! the line is dropped and counted (`origin_pull_access_log_dropped_total`).
//! The writer is never woken per line: while the log is on it wakes every
//! [`BATCH`], drains the channel and writes the batch at once; while it is
//! off it sleeps until a message (a reload, a flush) arrives. Woken per line (a futex wake
//! in the worker, a context switch and a write(2) per request) the log
//! cost a third of the 4 KiB hit throughput on 2 cores; batched, a send
//! is a few atomics and the time is formatted off the worker.
//! The file is reopened on SIGUSR1 (logrotate's `postrotate`) and when a
//! reload changes `access_log`. A file that cannot be opened (its folder
//! gone after a rotation, a full or read-only disk) or written drops its
//! lines, counted like the others, and is opened again every
//! [`RETRY_OPEN`] until it works: the log comes back by itself.
//!
//! What is never written: query strings, `Authorization`, signed URLs,
//! header values set by rules. The key is the decoded path only.

use crate::config::{AccessLogConfig, LogFormat, LogTarget};
use crate::errors::RequestId;
use crate::metrics::{WriteBackResult, METRICS};
use serde::Serialize;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::OnceLock;

/// How often a file that could not be opened is tried again.
const RETRY_OPEN: std::time::Duration = std::time::Duration::from_secs(5);

/// Lines waiting for the writer; beyond this they are dropped.
const QUEUE: usize = 64 * 1024;
/// How often the writer drains the channel: at most this late on disk.
const BATCH: std::time::Duration = std::time::Duration::from_millis(50);

/// One request, as logged.
#[derive(Debug, Serialize)]
pub struct Record {
    /// When the request ended; formatted (`time`) by the writer.
    #[serde(skip)]
    pub at: std::time::SystemTime,
    pub time: String,
    pub request_id: String,
    pub client: String,
    pub method: String,
    pub host: String,
    pub key: String,
    pub status: u16,
    pub bytes_sent: u64,
    pub duration_ms: f64,
    pub ttfb_ms: Option<f64>,
    pub site: Option<String>,
    pub rule: Option<usize>,
    pub outcome: &'static str,
    pub bucket_status: Option<u16>,
    pub origin_host: Option<String>,
    pub origin_status: Option<u16>,
    pub origin_bytes: Option<u64>,
    pub write_back: Option<&'static str>,
    pub user_agent: Option<String>,
    pub referer: Option<String>,
}

/// A write-back's end, logged under its request's id.
#[derive(Debug, Serialize)]
struct WriteBackRecord {
    #[serde(skip)]
    at: std::time::SystemTime,
    time: String,
    request_id: String,
    event: &'static str,
    site: String,
    key: String,
    write_back: &'static str,
    bytes: u64,
}

enum Msg {
    Line(Box<Record>),
    WriteBack(Box<WriteBackRecord>),
    Configure(Option<AccessLogConfig>),
    Reopen,
    Flush(SyncSender<()>),
}

static SINK: OnceLock<SyncSender<Msg>> = OnceLock::new();
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether records are wanted (lets the logging phase skip building one).
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Starts the writer (once) and points it at `cfg` (none: off).
pub fn configure(cfg: Option<AccessLogConfig>) {
    ENABLED.store(cfg.is_some(), Ordering::Relaxed);
    let sink = SINK.get_or_init(|| {
        let (tx, rx) = sync_channel(QUEUE);
        if let Err(e) = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || writer(rx))
        {
            log::error!("access log writer not started: {e}");
        }
        tx
    });
    // Configuration changes must not be dropped: this one may wait.
    let _ = sink.send(Msg::Configure(cfg));
}

/// Reopens the file (logrotate moved it away).
pub fn reopen() {
    send(Msg::Reopen);
}

/// Waits until every line queued so far is written (shutdown).
pub fn flush() {
    if let Some(sink) = SINK.get() {
        let (tx, rx) = sync_channel(1);
        if sink.send(Msg::Flush(tx)).is_ok() {
            let _ = rx.recv_timeout(std::time::Duration::from_secs(2));
        }
    }
}

pub fn request(r: Record) {
    send(Msg::Line(Box::new(r)));
}

/// Logs a write-back's final result (nothing when the log is off).
pub fn writeback(
    id: Option<RequestId>,
    site: &str,
    key: &str,
    result: WriteBackResult,
    bytes: u64,
) {
    if !enabled() {
        return;
    }
    send(Msg::WriteBack(Box::new(WriteBackRecord {
        at: std::time::SystemTime::now(),
        time: String::new(),
        request_id: id.map(|i| i.to_string()).unwrap_or_default(),
        event: "write_back",
        site: site.to_string(),
        key: key.to_string(),
        write_back: result.as_str(),
        bytes,
    })));
}

fn send(m: Msg) {
    let Some(sink) = SINK.get() else { return };
    match sink.try_send(m) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => METRICS.access_log_dropped.inc(),
        Err(TrySendError::Disconnected(_)) => {}
    }
}

/// RFC 3339 UTC with milliseconds.
fn rfc3339(at: std::time::SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(at)
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

enum Out {
    Off,
    Stdout(std::io::Stdout),
    File(std::io::BufWriter<std::fs::File>),
    /// Configured, but the file could not be opened at this time.
    Unopened(std::time::Instant),
}

/// Opens the configured target. `retry`: the file failed before; a new
/// failure is then a debug line (the first was an ERROR).
fn open(cfg: &Option<AccessLogConfig>, retry: bool) -> Out {
    match cfg.as_ref().map(|c| &c.target) {
        None => Out::Off,
        Some(LogTarget::Stdout) => Out::Stdout(std::io::stdout()),
        Some(LogTarget::File(p)) => match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
        {
            Ok(f) => Out::File(std::io::BufWriter::new(f)),
            Err(e) if retry => {
                log::debug!("access log {}: still {e}", p.display());
                Out::Unopened(std::time::Instant::now())
            }
            Err(e) => {
                log::error!(
                    "access log {}: {e}; lines are dropped (counted in \
                     access_log_dropped_total) and the file is tried again every {} s",
                    p.display(),
                    RETRY_OPEN.as_secs()
                );
                Out::Unopened(std::time::Instant::now())
            }
        },
    }
}

fn writer(rx: Receiver<Msg>) {
    let mut cfg: Option<AccessLogConfig> = None;
    let mut out = Out::Off;
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut first: Option<Msg> = None;
    loop {
        // Everything queued since the last round, written at once.
        loop {
            let m = match first.take().map_or_else(|| rx.try_recv(), Ok) {
                Ok(m) => m,
                Err(std::sync::mpsc::TryRecvError::Empty) => break,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => return,
            };
            match m {
                Msg::Line(mut r) => {
                    r.time = rfc3339(r.at);
                    format_record(&mut buf, &r, cfg.as_ref().map(|c| c.format));
                }
                Msg::WriteBack(mut w) => {
                    w.time = rfc3339(w.at);
                    let _ = serde_json::to_writer(&mut buf, &w);
                    buf.push(b'\n');
                }
                Msg::Configure(c) => {
                    write_out(&mut out, &mut buf);
                    if c != cfg {
                        cfg = c;
                        out = open(&cfg, false);
                    }
                }
                Msg::Reopen => {
                    write_out(&mut out, &mut buf);
                    out = open(&cfg, false);
                }
                Msg::Flush(done) => {
                    write_out(&mut out, &mut buf);
                    let _ = done.send(());
                }
            }
            if buf.len() >= 60 * 1024 {
                write_out(&mut out, &mut buf);
            }
        }
        write_out(&mut out, &mut buf);
        if matches!(out, Out::Unopened(t) if t.elapsed() >= RETRY_OPEN) {
            out = open(&cfg, true);
            if matches!(out, Out::File(_)) {
                log::info!("access log: writing again");
            }
        }
        if cfg.is_none() {
            // Off: nothing to batch, so no waking every 50 ms; the next
            // message (a reload turning it on, a flush) ends the wait.
            match rx.recv() {
                Ok(m) => first = Some(m),
                Err(_) => return,
            }
        } else {
            std::thread::sleep(BATCH);
        }
    }
}

/// Writes and flushes what `buf` holds, then empties it.
fn write_out(out: &mut Out, buf: &mut Vec<u8>) {
    if !buf.is_empty() {
        let r = match out {
            Out::Off => Ok(()),
            Out::Stdout(s) => s.write_all(buf),
            Out::File(f) => f.write_all(buf),
            Out::Unopened(_) => Err(std::io::Error::other("not open")),
        };
        if let Err(e) = r {
            let lines = buf.iter().filter(|b| **b == b'\n').count() as u64;
            METRICS.access_log_dropped.inc_by(lines);
            if let Out::File(_) = out {
                // A full or read-only disk: the file is dropped and opened
                // again later, like one that could not be opened.
                log::error!(
                    "access log: {e}; {lines} lines dropped, the file is opened again in {} s",
                    RETRY_OPEN.as_secs()
                );
                *out = Out::Unopened(std::time::Instant::now());
            } else if !matches!(out, Out::Unopened(_)) {
                log::warn!("access log: {e}; {lines} lines dropped");
            }
        }
        buf.clear();
    }
    flush_out(out);
}

fn flush_out(out: &mut Out) {
    let r = match out {
        Out::Off | Out::Unopened(_) => Ok(()),
        Out::Stdout(s) => s.flush(),
        Out::File(f) => f.flush(),
    };
    if let Err(e) = r {
        log::warn!("access log: {e}");
    }
}

/// A value as nginx's log escaping writes it: `"`, `\\`, control bytes and
/// bytes over 0x7e as `\xHH`, so no value can end its quoted field early
/// or fake the fields after it.
fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for &b in v.as_bytes() {
        if b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b) {
            out.push_str(&format!("\\x{b:02X}"));
        } else {
            out.push(b as char);
        }
    }
    out
}

fn format_record(buf: &mut Vec<u8>, r: &Record, format: Option<LogFormat>) {
    match format {
        None => {}
        Some(LogFormat::Json) => {
            let _ = serde_json::to_writer(&mut *buf, r);
            buf.push(b'\n');
        }
        Some(LogFormat::Combined) => {
            // nginx's "combined", then request id, seconds, outcome.
            let time = chrono::DateTime::<chrono::Utc>::from(r.at)
                .format("%d/%b/%Y:%H:%M:%S %z")
                .to_string();
            let q = |s: &Option<String>| s.as_deref().map_or_else(|| "-".into(), escape);
            let _ = writeln!(
                buf,
                "{} - - [{}] \"{} /{} HTTP/1.1\" {} {} \"{}\" \"{}\" {} {:.3} {}",
                r.client,
                time,
                r.method,
                // As a request line carries it: percent-encoded, so a key
                // with `"` or spaces can't shift the fields after it.
                crate::key::encode_key(&r.key),
                r.status,
                r.bytes_sent,
                q(&r.referer),
                q(&r.user_agent),
                r.request_id,
                r.duration_ms / 1000.0,
                r.outcome
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key or user agent with quotes, backslashes or non-ASCII can't
    /// shift the fields of a combined line (the key is percent-encoded,
    /// the quoted fields escaped as nginx does).
    #[test]
    fn combined_lines_keep_their_fields() {
        let r = Record {
            at: std::time::UNIX_EPOCH,
            time: String::new(),
            request_id: "rid".into(),
            client: "10.0.0.1".into(),
            method: "GET".into(),
            host: "h".into(),
            key: "a\" 200 1 \"x/é".into(),
            status: 404,
            bytes_sent: 7,
            duration_ms: 1500.0,
            ttfb_ms: None,
            site: None,
            rule: None,
            outcome: "hit",
            bucket_status: None,
            origin_host: None,
            origin_status: None,
            origin_bytes: None,
            write_back: None,
            user_agent: Some("ua\" \\ 日".into()),
            referer: None,
        };
        let mut buf = Vec::new();
        format_record(&mut buf, &r, Some(LogFormat::Combined));
        let line = String::from_utf8(buf).unwrap();
        assert_eq!(
            line,
            "10.0.0.1 - - [01/Jan/1970:00:00:00 +0000] \"GET /a%22%20200%201%20%22x/%C3%A9 HTTP/1.1\" \
             404 7 \"-\" \"ua\\x22 \\x5C \\xE6\\x97\\xA5\" rid 1.500 hit\n"
        );
    }
}
