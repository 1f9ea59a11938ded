//! Log lines shaped like the original daemon's, through `tracing`, written by a thread of their
//! own.
//!
//! In: `tracing` events from every module. Out: one line per event on standard output, or in
//! the `-f` file.
//!
//! `2026-11-27T08:00:00Z [Info] message`: RFC 3339 local time to the second (`Z` in UTC, a
//! `+01:00`-style offset elsewhere), then the level word in brackets. Levels take the original's
//! words: `dev` (trace), `debug`, `info`, `warn`, `error`, and `prod` (info, the default).
//! With `--log-format json` (ours) each line is instead one JSON object:
//! `{"time":"…","level":"Info","message":"…"}` plus any other fields of the event.
//!
//! Writing never blocks the thread that logs (the runtime's only thread, the UDP receive
//! thread): each event is formatted whole on that thread, then handed over a bounded queue of
//! [`QUEUE_LINES`] lines (`tracing-appender`'s non-blocking writer, lossy) to one writer thread,
//! which writes it. A stalled standard output or a slow disk holds back only that thread.
//! Policy when full: the new line is dropped. Each line is written whole or not at all: to the
//! file, a failed or short write is cut off again (`set_len`), so no partial line stays and the
//! next one starts clean; to standard output, which cannot be rewound, each line is one
//! `write_all` and a failed one counts as lost. Lines lost (dropped on a full queue, or that
//! failed to write: a full disk, a closed pipe) are counted ([`lines_lost`], `log_lines_lost` in
//! `/daemon/stats`) and reported by a Warn line, at most once per
//! [`WARN_INTERVAL`](crate::ratelimit::WARN_INTERVAL), once lines can be written again. The
//! [`LogGuard`] that [`init`] returns writes what is still queued when it is dropped at exit,
//! waiting at most [`FLUSH_TIMEOUT`].
//!
//! A log file is appended to (parent directories are created) and, unless rotation is off
//! (`Logging.LogRotation: false`), rotated by size ([`Rotation`]): when the next line would
//! take the file past [`DEFAULT_ROTATE_BYTES`] (50 MiB, as the original; `--log-rotate-bytes`
//! changes it), the file is renamed `NAME.1` (older ones shift to `NAME.2` …) and a new one is
//! started. At most [`KEEP_OLD_FILES`] old files are kept (the original keeps one); a line is
//! never split across files.

use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tracing::{Event, Level, Subscriber};
use tracing_appender::non_blocking::{ErrorCounter, NonBlocking, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::ratelimit::RateLimit;

/// Lines the queue to the writer thread holds (a line is dropped, and counted, when it is
/// full). Nothing at Info or above scales with traffic, so this is room for bursts at Debug and
/// Trace: about 1 MB of typical lines, and 128 KiB of slots allocated up front.
pub const QUEUE_LINES: usize = 4096;

/// How long the exit waits at most for the writer thread to write what is still queued
/// (2 s): a stalled standard output must not hold the exit.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// The original's log level words.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogLevel {
    /// Everything (`dev`).
    Dev,
    /// Debug and above.
    Debug,
    /// Info and above.
    Info,
    /// Warnings and errors.
    Warn,
    /// Errors only.
    Error,
    /// Info and above: the default, as in the original.
    #[default]
    Prod,
}

impl std::str::FromStr for LogLevel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "dev" => LogLevel::Dev,
            "debug" => LogLevel::Debug,
            "info" => LogLevel::Info,
            "warn" => LogLevel::Warn,
            "error" => LogLevel::Error,
            "prod" => LogLevel::Prod,
            _ => return Err("use one of dev, debug, info, warn, error, prod".into()),
        })
    }
}

impl LogLevel {
    /// The most verbose `tracing` level shown.
    pub fn max_level(self) -> Level {
        match self {
            LogLevel::Dev => Level::TRACE,
            LogLevel::Debug => Level::DEBUG,
            LogLevel::Info | LogLevel::Prod => Level::INFO,
            LogLevel::Warn => Level::WARN,
            LogLevel::Error => Level::ERROR,
        }
    }
}

/// Formats events as the original daemon's lines.
#[derive(Debug, Default)]
pub struct OriginalFormat;

impl<S, N> FormatEvent<S, N> for OriginalFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let word = level_word(*event.metadata().level());
        let mut message = String::new();
        ctx.field_format()
            .format_fields(Writer::new(&mut message), event)?;
        writeln!(w, "{} [{word}] {}", timestamp(), escape_controls(&message))
    }
}

/// The original's word for a level.
fn level_word(level: Level) -> &'static str {
    match level {
        Level::TRACE => "Trace",
        Level::DEBUG => "Debug",
        Level::INFO => "Info",
        Level::WARN => "Warn",
        Level::ERROR => "Error",
    }
}

/// `text` with its control characters escaped (newline as `\n`, carriage return as `\r`, tab
/// as `\t`, others as `\u{0}`-style): the message of a line may hold text from outside (a
/// segment id from any local UDP sender, X-Ray's answer), and a newline in it must not start a
/// forged line, nor a NUL or an escape sequence reach the file or terminal. Our own messages are
/// one line and hold none, so the whole message is escaped; borrowed when there is nothing to
/// escape.
pub fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Now, as the original writes it: RFC 3339, local time, to the second.
fn timestamp() -> String {
    chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// One line in the original's format, for messages written before logging starts (config
/// errors): `TIME [Error] message`, without the newline.
pub fn text_line(level: Level, message: &str) -> String {
    format!(
        "{} [{}] {}",
        timestamp(),
        level_word(level),
        escape_controls(message)
    )
}

/// One line in `format`, for messages written before logging starts; see [`text_line`].
pub fn line_in(format: LogFormat, level: Level, message: &str) -> String {
    match format {
        LogFormat::Text => text_line(level, message),
        LogFormat::Json => serde_json::json!({
            "time": timestamp(),
            "level": level_word(level),
            "message": message,
        })
        .to_string(),
    }
}

/// How lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// The original's lines: `TIME [Level] message`.
    #[default]
    Text,
    /// One JSON object per line: `time`, `level`, `message` and the event's other fields.
    Json,
}

/// Formats events as JSON objects, one a line.
#[derive(Debug, Default)]
pub struct JsonFormat;

impl<S, N> FormatEvent<S, N> for JsonFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = JsonFields(serde_json::Map::new());
        fields.0.insert("time".into(), timestamp().into());
        fields
            .0
            .insert("level".into(), level_word(*event.metadata().level()).into());
        event.record(&mut fields);
        let text = serde_json::to_string(&fields.0).map_err(|_| fmt::Error)?;
        writeln!(w, "{text}")
    }
}

struct JsonFields(serde_json::Map<String, serde_json::Value>);

impl tracing::field::Visit for JsonFields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
}

/// The original's rotation size: 50 MiB.
pub const DEFAULT_ROTATE_BYTES: u64 = 50 * 1024 * 1024;
/// How many rotated files are kept (`NAME.1` newest … `NAME.3` oldest).
pub const KEEP_OLD_FILES: usize = 3;

/// Size-based rotation of the log file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rotation {
    /// A file is rotated before it would grow past this many bytes. Default
    /// [`DEFAULT_ROTATE_BYTES`].
    pub max_bytes: u64,
    /// Old files kept. Default [`KEEP_OLD_FILES`].
    pub keep: usize,
}

impl Default for Rotation {
    fn default() -> Self {
        Rotation {
            max_bytes: DEFAULT_ROTATE_BYTES,
            keep: KEEP_OLD_FILES,
        }
    }
}

/// Where and how to log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogSettings {
    /// The level. Default `prod` (info).
    pub level: LogLevel,
    /// Line format. Default text.
    pub format: LogFormat,
    /// Log file; standard output if `None`.
    pub file: Option<PathBuf>,
    /// Rotation of the file; `None` appends forever.
    pub rotation: Option<Rotation>,
}

/// Log lines lost, by why; shared by the loggers' side of the queue and the writer thread.
#[derive(Debug, Default)]
struct LostLines {
    /// The queue's count of lines dropped because it was full (set once the queue exists).
    dropped: OnceLock<ErrorCounter>,
    /// Lines that failed to write.
    failed: AtomicU64,
}

impl LostLines {
    fn dropped(&self) -> u64 {
        self.dropped
            .get()
            .map_or(0, |c| u64::try_from(c.dropped_lines()).unwrap_or(u64::MAX))
    }

    fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    fn total(&self) -> u64 {
        self.dropped().saturating_add(self.failed())
    }
}

/// The counts of the writer [`init`] started.
static LOST: OnceLock<Arc<LostLines>> = OnceLock::new();

/// Log lines lost since [`init`]: dropped because the queue to the writer thread was full, or
/// failed to write (full disk, closed pipe). 0 before `init`, and in a process that never calls
/// it (an in-process daemon logs through its host's subscriber).
pub fn lines_lost() -> u64 {
    LOST.get().map_or(0, |lost| lost.total())
}

/// The writer's reopen flag and its file, once [`init`] started a writer to a file.
static REOPEN: OnceLock<(Arc<AtomicBool>, PathBuf)> = OnceLock::new();

/// On SIGHUP: asks the writer thread to reopen the `-f` log file before its next line (after
/// logrotate moved it away, the daemon writes to a new file at the same path), and logs that
/// line, the first in the new file. With logging to standard output there is nothing to reopen:
/// only the line.
pub fn reopen() {
    match REOPEN.get() {
        Some((flag, path)) => {
            flag.store(true, Ordering::Release);
            tracing::info!("Got SIGHUP: reopened the log file {}", path.display());
        }
        None => tracing::info!("Got SIGHUP: logging to standard output, nothing to reopen"),
    }
}

/// Where the writer thread puts lines: each call writes one line whole, or leaves nothing of it
/// behind that it can take back.
trait Target: Send + 'static {
    fn write_line(&mut self, line: &[u8]) -> io::Result<()>;
    fn flush(&mut self) -> io::Result<()>;
}

/// Standard output. It cannot be rewound: each line is one `write_all` under stdout's lock (so
/// it never lands inside a batch of the stdout sink), and a failed one is a lost line.
#[derive(Debug)]
struct Stdout;

impl Target for Stdout {
    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        io::stdout().lock().write_all(line)
    }
    fn flush(&mut self) -> io::Result<()> {
        io::stdout().lock().flush()
    }
}

/// Storage that can cut off the end of what was written to it: a file.
trait Rewind: Write {
    /// Cuts the last `n` bytes written off the end.
    fn rewind(&mut self, n: u64) -> io::Result<()>;
}

impl Rewind for std::fs::File {
    /// Back to the length before the line: the length now less the bytes of the line that went
    /// in (rather than a length remembered before, which an outside truncation would make
    /// wrong, and then `set_len` would pad the file with zeros).
    fn rewind(&mut self, n: u64) -> io::Result<()> {
        let len = self.metadata()?.len();
        self.set_len(len.saturating_sub(n))
    }
}

/// Appends lines to a [`Rewind`] whole or not at all.
#[derive(Debug)]
struct WholeLines<W> {
    inner: W,
    /// Part of a failed line could not be cut off: the next line first ends it, so that line
    /// at least is whole.
    torn: bool,
}

impl<W: Rewind> WholeLines<W> {
    fn new(inner: W) -> Self {
        WholeLines { inner, torn: false }
    }

    /// Appends `line`; on a failed or short write, cuts off what of it went in and returns the
    /// error. Returns the bytes appended.
    fn append(&mut self, line: &[u8]) -> io::Result<u64> {
        let mut added = 0;
        if self.torn {
            self.append_once(b"\n")?;
            self.torn = false;
            added += 1;
        }
        self.append_once(line)?;
        Ok(added + line.len() as u64)
    }

    fn append_once(&mut self, line: &[u8]) -> io::Result<()> {
        let mut written = 0;
        let error = loop {
            let Some(rest) = line.get(written..).filter(|r| !r.is_empty()) else {
                return Ok(());
            };
            match self.inner.write(rest) {
                Ok(0) => break io::Error::from(io::ErrorKind::WriteZero),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break e,
            }
        };
        if written > 0 && self.inner.rewind(written as u64).is_err() {
            self.torn = true;
        }
        Err(error)
    }
}

/// The log file, rotated by size; each write is one whole line or nothing.
#[derive(Debug)]
struct RotatingFile {
    path: PathBuf,
    file: WholeLines<std::fs::File>,
    size: u64,
    rotation: Option<Rotation>,
    /// Set after a failed rotation is reported, so it is reported once.
    rotate_failed: bool,
    /// Set by [`reopen`]: the file is opened again (by its path) before the next line.
    reopen: Arc<AtomicBool>,
}

impl RotatingFile {
    fn open(path: &Path, rotation: Option<Rotation>) -> io::Result<Self> {
        let file = create_and_open(path)?;
        let size = file.metadata()?.len();
        Ok(RotatingFile {
            path: path.to_path_buf(),
            file: WholeLines::new(file),
            size,
            rotation,
            rotate_failed: false,
            reopen: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Opens the file at the path again (a new one if it was moved away) and appends to it
    /// from now on; if that fails, says so on standard error and keeps the file it has.
    fn reopen_now(&mut self) {
        let opened = (|| {
            let file = create_and_open(&self.path)?;
            let size = file.metadata()?.len();
            Ok::<_, io::Error>((file, size))
        })();
        match opened {
            Ok((file, size)) => {
                let _ = self.file.inner.flush();
                self.file = WholeLines::new(file);
                self.size = size;
            }
            Err(e) => {
                let _ = writeln!(
                    io::stderr(),
                    "{}",
                    text_line(
                        Level::ERROR,
                        &format!(
                            "cannot reopen the log file {}: {e}; still appending to the file it had open. Fix the directory's permissions",
                            self.path.display()
                        )
                    )
                );
            }
        }
    }

    fn numbered(&self, n: usize) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    /// Shifts `NAME.k` to `NAME.k+1` (dropping the oldest), `NAME` to `NAME.1`, and opens a
    /// new `NAME`.
    fn rotate(&mut self, keep: usize) -> io::Result<()> {
        self.file.inner.flush()?;
        if keep == 0 {
            let _ = std::fs::remove_file(&self.path);
        } else {
            let _ = std::fs::remove_file(self.numbered(keep));
            for n in (1..keep).rev() {
                let from = self.numbered(n);
                if from.exists() {
                    std::fs::rename(&from, self.numbered(n + 1))?;
                }
            }
            std::fs::rename(&self.path, self.numbered(1))?;
        }
        self.file = WholeLines::new(open_append(&self.path)?);
        self.size = 0;
        Ok(())
    }

    fn write_line(&mut self, buf: &[u8]) -> io::Result<()> {
        if self.reopen.swap(false, Ordering::AcqRel) {
            self.reopen_now();
        }
        if let Some(r) = self.rotation
            && self.size > 0
            && self.size.saturating_add(buf.len() as u64) > r.max_bytes
            && let Err(e) = self.rotate(r.keep)
        {
            // Keep writing to the file we have: a line is never dropped for this.
            if !self.rotate_failed {
                self.rotate_failed = true;
                let _ = writeln!(
                    io::stderr(),
                    "{}",
                    text_line(
                        Level::ERROR,
                        &format!(
                            "cannot rotate the log file {}: {e}; still appending to it. Fix the directory's permissions",
                            self.path.display()
                        )
                    )
                );
            }
        }
        let added = self.file.append(buf)?;
        self.size = self.size.saturating_add(added);
        Ok(())
    }
}

impl Target for RotatingFile {
    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        RotatingFile::write_line(self, line)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.inner.flush()
    }
}

fn open_append(path: &Path) -> io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

/// Opens `path` to append, creating it and its missing parent directories.
fn create_and_open(path: &Path) -> io::Result<std::fs::File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    open_append(path)
}

/// Appends one line (a newline is added) to the log file at `path`, creating it and its
/// parent directories as the log itself does: how a config error found before logging starts
/// reaches the `-f` file.
///
/// Errors: the file cannot be created, opened or written ([`LogFileError`] says why).
pub fn append_line(path: &Path, line: &str) -> Result<(), LogFileError> {
    let mut text = String::with_capacity(line.len() + 1);
    text.push_str(line);
    text.push('\n');
    create_and_open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| LogFileError::new(path, e))
}

/// The log file cannot be used, and why in words that point at the fix.
#[derive(Debug, thiserror::Error)]
pub enum LogFileError {
    /// A component of the path above the file exists but is not a directory (a regular file),
    /// so no directory can be made there.
    #[error(
        "cannot write the log file {}: its parent {} is not a directory. Choose another file \
         with -f (or Logging.LogPath), or move {} away",
        path.display(), parent.display(), parent.display()
    )]
    ParentNotDirectory {
        /// The log file.
        path: PathBuf,
        /// The first component above it that exists and is not a directory.
        parent: PathBuf,
    },
    /// The path names a directory.
    #[error(
        "cannot write the log file {}: it is a directory. Give a file name with -f (or \
         Logging.LogPath), for example {}",
        path.display(), path.join("xray.log").display()
    )]
    IsDirectory {
        /// The log file.
        path: PathBuf,
    },
    /// Not allowed to create or write it.
    #[error(
        "cannot write the log file {}: {source}. Fix its directory's permissions or choose \
         another file with -f (or Logging.LogPath)",
        path.display()
    )]
    PermissionDenied {
        /// The log file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Anything else the OS refused (a full disk, a read-only file system).
    #[error(
        "cannot write the log file {}: {source}. Choose another file with -f (or \
         Logging.LogPath)",
        path.display()
    )]
    Io {
        /// The log file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

impl LogFileError {
    /// Works out why opening `path` failed with `error`: the OS says "File exists" when a
    /// directory cannot be made over a regular file, and "Not a directory" further down, so
    /// the path is looked at rather than the error's words.
    pub fn new(path: &Path, error: io::Error) -> Self {
        let path_buf = path.to_path_buf();
        if let Some(parent) = path
            .ancestors()
            .skip(1)
            .filter(|a| !a.as_os_str().is_empty())
            .find(|a| a.symlink_metadata().is_ok())
            .filter(|a| !a.is_dir())
        {
            return LogFileError::ParentNotDirectory {
                path: path_buf,
                parent: parent.to_path_buf(),
            };
        }
        if path.is_dir() {
            return LogFileError::IsDirectory { path: path_buf };
        }
        match error.kind() {
            io::ErrorKind::PermissionDenied => LogFileError::PermissionDenied {
                path: path_buf,
                source: error,
            },
            _ => LogFileError::Io {
                path: path_buf,
                source: error,
            },
        }
    }
}

/// The writer thread's end of the queue: writes each line to its target whole or not at all,
/// counts the lines that failed, and reports lost lines once a line is written again.
#[derive(Debug)]
struct LineWriter<T> {
    target: T,
    lost: Arc<LostLines>,
    /// The queue's size in lines, for the report.
    queue: usize,
    /// The report's line format; `None` when Warn lines are not logged at this level.
    report: Option<LogFormat>,
    /// Dropped and failed lines already reported.
    reported: (u64, u64),
    /// The last write error, for the report.
    last_error: String,
    limit: RateLimit,
}

impl<T: Target> LineWriter<T> {
    fn new(target: T, lost: Arc<LostLines>, queue: usize, report: Option<LogFormat>) -> Self {
        LineWriter {
            target,
            lost,
            queue,
            report,
            reported: (0, 0),
            last_error: String::new(),
            limit: RateLimit::default(),
        }
    }

    fn line(&mut self, line: &[u8]) {
        match self.target.write_line(line) {
            Ok(()) => self.report_lost(),
            Err(e) => {
                self.lost.failed.fetch_add(1, Ordering::Relaxed);
                self.last_error = e.to_string();
            }
        }
    }

    /// After a line went in: one Warn line about the lines lost since the last report, at most
    /// once per interval (what happens in between is in the next report's numbers, so the rate
    /// limiter's own count of suppressed messages is not used).
    fn report_lost(&mut self) {
        let (dropped, failed) = (self.lost.dropped(), self.lost.failed());
        let new_dropped = dropped.saturating_sub(self.reported.0);
        let new_failed = failed.saturating_sub(self.reported.1);
        if new_dropped == 0 && new_failed == 0 {
            return;
        }
        let Some(format) = self.report else {
            return;
        };
        if self.limit.once().is_none() {
            return;
        }
        let mut why = Vec::new();
        if new_dropped > 0 {
            why.push(format!(
                "{new_dropped} dropped because the queue of {} lines to the log writer was full",
                self.queue
            ));
        }
        if new_failed > 0 {
            why.push(format!(
                "{new_failed} failed to write ({})",
                self.last_error
            ));
        }
        let message = format!(
            "{} log lines were lost: {}. Check the log file's disk, or that the reader of standard \
             output keeps up; the total is log_lines_lost in /daemon/stats",
            new_dropped + new_failed,
            why.join(", ")
        );
        let mut text = line_in(format, Level::WARN, &message);
        text.push('\n');
        if self.target.write_line(text.as_bytes()).is_ok() {
            self.reported = (dropped, failed);
        }
    }
}

/// Each call is one line (the formatter writes an event with one `write_all`, and the queue
/// hands each on as one), so a failed line is handled here and never reported as an error to
/// `tracing-appender`'s worker, which would ignore it.
impl<T: Target> Write for LineWriter<T> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.line(buf);
        Ok(buf.len())
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.line(buf);
        Ok(())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.target.flush()
    }
}

/// Starts the writer thread for `target` behind a lossy queue of `queue` lines.
fn spawn_writer<T: Target>(
    target: T,
    queue: usize,
    report: Option<LogFormat>,
) -> (NonBlocking, WorkerGuard, Arc<LostLines>) {
    let lost = Arc::new(LostLines::default());
    let writer = LineWriter::new(target, Arc::clone(&lost), queue, report);
    let (queue, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(queue)
        .thread_name("xray-log")
        .finish(writer);
    let _ = lost.dropped.set(queue.error_counter());
    (queue, guard, lost)
}

/// Keeps the log writer thread until exit. Dropping it writes what is still queued, waiting at
/// most [`FLUSH_TIMEOUT`]: `tracing-appender`'s own guard waits up to 1.1 s, but then prints to
/// standard output, which blocks for good when that is the stalled pipe, so it is dropped on a
/// helper thread that the exit does not wait for past the timeout.
#[derive(Debug)]
#[must_use = "dropping the guard stops the log writer"]
pub struct LogGuard(Option<WorkerGuard>);

impl Drop for LogGuard {
    fn drop(&mut self) {
        let Some(guard) = self.0.take() else {
            return;
        };
        let (done, finished) = std::sync::mpsc::channel::<()>();
        // If the thread cannot be started, the guard is dropped here with the closure.
        let _ = std::thread::Builder::new()
            .name("xray-log-flush".into())
            .spawn(move || {
                drop(guard);
                let _ = done.send(());
            });
        let _ = finished.recv_timeout(FLUSH_TIMEOUT);
    }
}

/// Starts logging as `settings` say. Only the daemon's own crate logs below Warn; the AWS
/// SDK's internals are kept at Warn unless `dev` is asked for. Keep the returned guard until
/// exit: dropping it flushes the queue and stops the writer thread.
///
/// Errors: the log file cannot be created or opened ([`LogFileError`] says why).
pub fn init(settings: &LogSettings) -> Result<LogGuard, LogFileError> {
    let ours = settings.level.max_level();
    let others = if settings.level == LogLevel::Dev {
        Level::DEBUG
    } else {
        Level::WARN.min(ours)
    };
    let filter = tracing_subscriber::filter::Targets::new()
        .with_default(others)
        .with_target("xray_daemon", ours)
        .with_target("xray", ours)
        // aws-config warns about each credential provider that found nothing; the daemon says
        // it once, in its own words (aws::check_credentials).
        .with_target(
            "aws_config",
            if ours >= Level::DEBUG {
                others
            } else {
                Level::ERROR
            },
        );
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    // Reports of lost lines are Warn lines: written only where Warn is shown.
    let report = (ours >= Level::WARN).then_some(settings.format);
    let (writer, guard, lost) = match &settings.file {
        Some(path) => {
            let file = RotatingFile::open(path, settings.rotation)
                .map_err(|e| LogFileError::new(path, e))?;
            let _ = REOPEN.set((Arc::clone(&file.reopen), path.clone()));
            spawn_writer(file, QUEUE_LINES, report)
        }
        None => spawn_writer(Stdout, QUEUE_LINES, report),
    };
    let _ = LOST.set(lost);
    let base = tracing_subscriber::fmt()
        .with_max_level(Level::TRACE)
        // Plain text: log files and journald must not get colour codes in field values.
        .with_ansi(false)
        .with_writer(writer);
    match settings.format {
        LogFormat::Text => base
            .event_format(OriginalFormat)
            .finish()
            .with(filter)
            .init(),
        LogFormat::Json => base.event_format(JsonFormat).finish().with(filter).init(),
    }
    Ok(LogGuard(Some(guard)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Mutex, mpsc};
    use std::time::Instant;

    /// A file that takes `room` more bytes, then fails as a full disk does; with
    /// `rewind_fails`, cutting off fails too.
    #[derive(Debug, Default)]
    struct FlakyFile {
        data: Vec<u8>,
        room: usize,
        rewind_fails: bool,
    }

    impl Write for FlakyFile {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::StorageFull,
                    "no space left on device",
                ));
            }
            let n = buf.len().min(self.room);
            self.data.extend_from_slice(&buf[..n]);
            self.room -= n;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Rewind for FlakyFile {
        fn rewind(&mut self, n: u64) -> io::Result<()> {
            if self.rewind_fails {
                return Err(io::Error::other("cannot truncate"));
            }
            let n = usize::try_from(n).unwrap_or(usize::MAX);
            self.data.truncate(self.data.len().saturating_sub(n));
            Ok(())
        }
    }

    impl Target for WholeLines<FlakyFile> {
        fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
            self.append(line).map(|_| ())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_write_failing_mid_line_leaves_no_partial_line_and_counts_one_lost() {
        let lost = Arc::new(LostLines::default());
        let file = FlakyFile {
            room: 30,
            ..FlakyFile::default()
        };
        let mut w = LineWriter::new(
            WholeLines::new(file),
            Arc::clone(&lost),
            8,
            Some(LogFormat::Text),
        );
        let text = |w: &LineWriter<WholeLines<FlakyFile>>| {
            String::from_utf8_lossy(&w.target.inner.data).into_owned()
        };
        assert!(w.write_all(b"first line, whole\n").is_ok());
        // 12 bytes of room left: the line goes in part way, then the disk is full.
        assert!(w.write_all(b"second line, too long for the disk\n").is_ok());
        assert_eq!(text(&w), "first line, whole\n", "no partial line");
        assert_eq!(lost.total(), 1);

        // Space again: the next line is written whole, then the report.
        w.target.inner.room = usize::MAX;
        assert!(w.write_all(b"third line\n").is_ok());
        let now = text(&w);
        let lines: Vec<&str> = now.lines().collect();
        assert_eq!(lines.len(), 3, "{now}");
        assert_eq!(lines[..2], ["first line, whole", "third line"]);
        assert!(
            lines[2].contains(
                "[Warn] 1 log lines were lost: 1 failed to write (no space left on device)."
            ),
            "{now}"
        );
        assert!(now.ends_with('\n'));
        assert_eq!(lost.total(), 1, "the report itself loses nothing");
        // Reported once: another line brings no second report.
        assert!(w.write_all(b"fourth line\n").is_ok());
        assert_eq!(text(&w).lines().count(), 4);
    }

    #[test]
    fn when_cutting_off_fails_the_next_line_starts_on_a_line_of_its_own() {
        let mut file = WholeLines::new(FlakyFile {
            room: 5,
            rewind_fails: true,
            ..FlakyFile::default()
        });
        assert!(file.append(b"torn line\n").is_err());
        file.inner.room = usize::MAX;
        assert_eq!(file.append(b"next\n").ok(), Some(6));
        assert_eq!(file.inner.data, b"torn \nnext\n");
    }

    /// A target stuck until `gate`'s sender is dropped, keeping the lines it was given.
    #[derive(Debug)]
    struct Stuck {
        gate: mpsc::Receiver<()>,
        written: Arc<Mutex<Vec<String>>>,
    }

    impl Target for Stuck {
        fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
            let _ = self.gate.recv();
            self.written
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(String::from_utf8_lossy(line).into_owned());
            Ok(())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_full_queue_drops_and_counts_lines_without_blocking_the_caller() {
        const QUEUE: usize = 8;
        const EVENTS: u64 = 1000;
        let (release, gate) = mpsc::channel::<()>();
        let written = Arc::new(Mutex::new(Vec::new()));
        let stuck = Stuck {
            gate,
            written: Arc::clone(&written),
        };
        let (queue, guard, lost) = spawn_writer(stuck, QUEUE, Some(LogFormat::Text));
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .event_format(OriginalFormat)
            .with_writer(queue)
            .finish();
        let start = Instant::now();
        tracing::subscriber::with_default(subscriber, || {
            for i in 0..EVENTS {
                tracing::info!("event {i}");
            }
        });
        let took = start.elapsed();
        assert!(took < Duration::from_secs(2), "the caller waited {took:?}");
        let dropped = lost.total();
        // The writer thread holds at most one line and the queue QUEUE more; the rest were
        // dropped.
        assert!(dropped >= EVENTS - QUEUE as u64 - 1, "{dropped} lost");

        drop(release);
        drop(guard); // writes what is queued
        let written = written.lock().unwrap_or_else(|e| e.into_inner()).clone();
        assert_eq!(
            written.len() as u64,
            EVENTS - dropped + 1,
            "every line not dropped, and one report: {written:?}"
        );
        let reports: Vec<&String> = written
            .iter()
            .filter(|l| l.contains("log lines were lost"))
            .collect();
        assert_eq!(reports.len(), 1, "{written:?}");
        assert!(
            reports[0].contains(&format!(
                "[Warn] {dropped} log lines were lost: {dropped} dropped because the queue of \
                 8 lines to the log writer was full."
            )),
            "{reports:?}"
        );
        assert!(written.iter().all(|l| l.ends_with('\n')));
        assert_eq!(lost.total(), dropped);
    }

    #[test]
    fn rotation_keeps_whole_lines_and_a_bounded_set() {
        let dir = own_dir();
        let path = dir.path().join("x.log");
        let mut f = match RotatingFile::open(
            &path,
            Some(Rotation {
                max_bytes: 100,
                keep: 2,
            }),
        ) {
            Ok(f) => f,
            Err(e) => panic!("{e}"),
        };
        let mut written = Vec::new();
        for i in 0..50 {
            let line = format!("line {i:04} ..........\n");
            written.push(line.clone());
            assert!(f.write_line(line.as_bytes()).is_ok());
        }
        let read = |p: PathBuf| std::fs::read_to_string(p).unwrap_or_default();
        let all = [
            path.with_extension("log.2"),
            path.with_extension("log.1"),
            path.clone(),
        ]
        .map(read)
        .concat();
        assert!(all.len() <= 300);
        assert!(!path.with_extension("log.3").exists());
        // The newest lines survive, whole and in order.
        assert!(written.concat().ends_with(&all), "{all}");
    }

    #[test]
    fn a_file_is_cut_back_by_the_bytes_of_the_failed_line() {
        let dir = own_dir();
        let path = dir.path().join("rewind.log");
        let mut file = match open_append(&path) {
            Ok(f) => f,
            Err(e) => panic!("{e}"),
        };
        assert!(file.write_all(b"whole\npart").is_ok());
        assert!(file.rewind(4).is_ok());
        assert!(file.write_all(b"next\n").is_ok());
        assert_eq!(
            std::fs::read_to_string(&path).unwrap_or_default(),
            "whole\nnext\n"
        );
    }

    /// A directory of the test's own, removed when it ends: tests run in parallel, and one
    /// shared directory was removed by one test while another was opening a file in it.
    fn own_dir() -> tempfile::TempDir {
        match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => panic!("cannot make a temporary directory: {e}"),
        }
    }

    /// A target that keeps every line it is given.
    #[derive(Debug)]
    struct Collect(Arc<Mutex<Vec<String>>>);

    impl Target for Collect {
        fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
            self.0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(String::from_utf8_lossy(line).into_owned());
            Ok(())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// The lines `log` writes through the writer thread in `format`.
    fn lines_logged(format: LogFormat, log: impl FnOnce()) -> Vec<String> {
        let written = Arc::new(Mutex::new(Vec::new()));
        let (queue, guard, _) = spawn_writer(Collect(Arc::clone(&written)), 64, None);
        let base = tracing_subscriber::fmt()
            .with_max_level(Level::TRACE)
            .with_ansi(false)
            .with_writer(queue);
        match format {
            LogFormat::Text => {
                tracing::subscriber::with_default(base.event_format(OriginalFormat).finish(), log)
            }
            LogFormat::Json => {
                tracing::subscriber::with_default(base.event_format(JsonFormat).finish(), log)
            }
        }
        drop(guard);
        written.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    #[test]
    fn control_characters_are_escaped_and_plain_text_is_untouched() {
        assert!(matches!(
            escape_controls("plain: é ✓ \\ \"q\""),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(
            escape_controls("a\nb\rc\0d\te\u{1b}[31mf\u{7f}g\u{85}"),
            "a\\nb\\rc\\u{0}d\\te\\u{1b}[31mf\\u{7f}g\\u{85}"
        );
        let line = text_line(Level::ERROR, "bad\n2026-01-01T00:00:00Z [Error] forged");
        assert_eq!(line.lines().count(), 1, "{line}");
    }

    /// Regression: a segment id holding a newline forged a log line; a garbage answer put a
    /// NUL in the log.
    #[test]
    fn text_from_outside_cannot_forge_a_line_in_either_format() {
        let id = "abc\n2026-01-01T00:00:00Z [Error] forged\0\r";
        let text = lines_logged(LogFormat::Text, || {
            tracing::trace!("Segment {id} of trace {}", "1-x\u{7f}");
            tracing::info!(answer = "x\ny", "Refused: {}", "\u{0}body");
        });
        assert_eq!(text.len(), 2, "{text:?}");
        for line in &text {
            assert!(line.ends_with('\n'), "{line:?}");
            let body = &line[..line.len() - 1];
            assert!(!body.chars().any(char::is_control), "{line:?}");
        }
        assert!(
            // (tracing-subscriber itself writes DEL in an argument as `\x7f`.)
            text[0].contains(
                "[Trace] Segment abc\\n2026-01-01T00:00:00Z [Error] forged\\u{0}\\r of trace 1-x\\"
            ),
            "{:?}",
            text[0]
        );
        assert!(
            text[1].ends_with("[Info] Refused: \\u{0}body answer=\"x\\ny\"\n"),
            "{:?}",
            text[1]
        );

        let json = lines_logged(LogFormat::Json, || {
            tracing::trace!("Segment {id}");
            tracing::info!(answer = "x\ny\0", "Refused");
        });
        assert_eq!(json.len(), 2, "{json:?}");
        for line in &json {
            let body = line.strip_suffix('\n').unwrap_or(line);
            assert!(!body.chars().any(char::is_control), "{line:?}");
        }
        let first: serde_json::Value = serde_json::from_str(&json[0]).unwrap_or_default();
        assert_eq!(
            first["message"],
            format!("Segment {id}"),
            "read back exactly"
        );
        let second: serde_json::Value = serde_json::from_str(&json[1]).unwrap_or_default();
        assert_eq!(second["answer"], "x\ny\0");
    }

    #[test]
    fn a_reopen_request_starts_a_new_file_at_the_path_before_the_next_line() {
        let dir = own_dir();
        let path = dir.path().join("reopen.log");
        let moved = dir.path().join("reopen.log.moved");
        let mut f = match RotatingFile::open(&path, None) {
            Ok(f) => f,
            Err(e) => panic!("{e}"),
        };
        assert!(f.write_line(b"before\n").is_ok());
        assert!(std::fs::rename(&path, &moved).is_ok());
        assert!(f.write_line(b"still to the moved file\n").is_ok());
        f.reopen.store(true, Ordering::Release);
        assert!(f.write_line(b"after\n").is_ok());
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        assert_eq!(read(&moved), "before\nstill to the moved file\n");
        assert_eq!(read(&path), "after\n");
        assert!(!f.reopen.load(Ordering::Acquire), "once per request");
    }

    #[test]
    fn a_log_file_under_a_regular_file_names_the_parent_that_is_not_a_directory()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let plain = dir.path().join("plain");
        std::fs::write(&plain, "a file")?;
        for path in [plain.join("x.log"), plain.join("sub/dir/x.log")] {
            let opened = RotatingFile::open(&path, None).map_err(|e| LogFileError::new(&path, e));
            let e = opened.err().map(|e| e.to_string()).unwrap_or_default();
            assert!(
                e.contains(&format!(
                    "its parent {} is not a directory",
                    plain.display()
                )) && !e.contains("File exists")
                    && !e.contains("permissions"),
                "{e}"
            );
        }
        let e = LogFileError::new(dir.path(), io::Error::from(io::ErrorKind::IsADirectory));
        assert!(matches!(e, LogFileError::IsDirectory { .. }), "{e}");
        let e = LogFileError::new(
            &dir.path().join("x.log"),
            io::Error::from(io::ErrorKind::PermissionDenied),
        );
        assert!(e.to_string().contains("permissions"), "{e}");
        Ok(())
    }

    #[test]
    fn a_line_appended_before_logging_starts_makes_the_directories_as_the_log_does()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("not/made/xray.log");
        append_line(&path, "first")?;
        append_line(&path, "second")?;
        assert_eq!(std::fs::read_to_string(&path)?, "first\nsecond\n");
        let plain = dir.path().join("plain");
        std::fs::write(&plain, "")?;
        assert!(matches!(
            append_line(&plain.join("x.log"), "x"),
            Err(LogFileError::ParentNotDirectory { .. })
        ));
        Ok(())
    }

    #[test]
    fn levels_parse_the_original_words() {
        assert_eq!("prod".parse::<LogLevel>(), Ok(LogLevel::Prod));
        assert_eq!(LogLevel::Prod.max_level(), Level::INFO);
        assert_eq!(
            "dev".parse::<LogLevel>().map(LogLevel::max_level),
            Ok(Level::TRACE)
        );
        assert!("Info".parse::<LogLevel>().is_err());
    }
}
