//! Log lines shaped like the original daemon's, through `tracing`.
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
//! Writing is synchronous: each event is formatted whole, then written with one `write_all`
//! under a lock, so no line is lost, torn or interleaved with another.
//!
//! A log file is appended to (parent directories are created) and, unless rotation is off
//! (`Logging.LogRotation: false`), rotated by size ([`Rotation`]): when the next line would
//! take the file past [`DEFAULT_ROTATE_BYTES`] (50 MiB, as the original; `--log-rotate-bytes`
//! changes it), the file is renamed `NAME.1` (older ones shift to `NAME.2` …) and a new one is
//! started. At most [`KEEP_OLD_FILES`] old files are kept (the original keeps one); a line is
//! never split across files.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

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
        let now = chrono::Local::now();
        let word = level_word(*event.metadata().level());
        write!(
            w,
            "{} [{word}] ",
            now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )?;
        ctx.field_format().format_fields(w.by_ref(), event)?;
        writeln!(w)
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

/// Now, as the original writes it: RFC 3339, local time, to the second.
fn timestamp() -> String {
    chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// One line in the original's format, for messages written before logging starts (config
/// errors): `TIME [Error] message`, without the newline.
pub fn text_line(level: Level, message: &str) -> String {
    format!("{} [{}] {message}", timestamp(), level_word(level))
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

/// The log file, rotated by size; each write is one whole line.
#[derive(Debug)]
struct RotatingFile {
    path: PathBuf,
    file: std::fs::File,
    size: u64,
    rotation: Option<Rotation>,
    /// Set after a failed rotation is reported, so it is reported once.
    rotate_failed: bool,
}

impl RotatingFile {
    fn open(path: &Path, rotation: Option<Rotation>) -> std::io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = open_append(path)?;
        let size = file.metadata()?.len();
        Ok(RotatingFile {
            path: path.to_path_buf(),
            file,
            size,
            rotation,
            rotate_failed: false,
        })
    }

    fn numbered(&self, n: usize) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    /// Shifts `NAME.k` to `NAME.k+1` (dropping the oldest), `NAME` to `NAME.1`, and opens a
    /// new `NAME`.
    fn rotate(&mut self, keep: usize) -> std::io::Result<()> {
        self.file.flush()?;
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
        self.file = open_append(&self.path)?;
        self.size = 0;
        Ok(())
    }

    fn write_line(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if let Some(r) = self.rotation
            && self.size > 0
            && self.size.saturating_add(buf.len() as u64) > r.max_bytes
            && let Err(e) = self.rotate(r.keep)
        {
            // Keep writing to the file we have: a line is never dropped for this.
            if !self.rotate_failed {
                self.rotate_failed = true;
                let _ = writeln!(
                    std::io::stderr(),
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
        self.file.write_all(buf)?;
        self.size = self.size.saturating_add(buf.len() as u64);
        Ok(())
    }
}

fn open_append(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

/// Hands the formatter a writer that writes each event whole under the file's lock.
#[derive(Debug)]
struct FileWriter(Mutex<RotatingFile>);

impl<'a> MakeWriter<'a> for FileWriter {
    type Writer = FileLine<'a>;
    fn make_writer(&'a self) -> Self::Writer {
        FileLine(&self.0)
    }
}

struct FileLine<'a>(&'a Mutex<RotatingFile>);

impl Write for FileLine<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        let mut f = self.0.lock().unwrap_or_else(|e| e.into_inner());
        f.write_line(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Starts logging as `settings` say. Only the daemon's own crate logs below Warn; the AWS
/// SDK's internals are kept at Warn unless `dev` is asked for.
///
/// Errors: the log file cannot be created or opened.
pub fn init(settings: &LogSettings) -> std::io::Result<()> {
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
    let file = match &settings.file {
        Some(path) => Some(FileWriter(Mutex::new(RotatingFile::open(
            path,
            settings.rotation,
        )?))),
        None => None,
    };
    let base = tracing_subscriber::fmt()
        .with_max_level(Level::TRACE)
        // Plain text: log files and journald must not get colour codes in field values.
        .with_ansi(false);
    match (settings.format, file) {
        (LogFormat::Text, Some(f)) => base
            .event_format(OriginalFormat)
            .with_writer(f)
            .finish()
            .with(filter)
            .init(),
        (LogFormat::Text, None) => base
            .event_format(OriginalFormat)
            .with_writer(std::io::stdout)
            .finish()
            .with(filter)
            .init(),
        (LogFormat::Json, Some(f)) => base
            .event_format(JsonFormat)
            .with_writer(f)
            .finish()
            .with(filter)
            .init(),
        (LogFormat::Json, None) => base
            .event_format(JsonFormat)
            .with_writer(std::io::stdout)
            .finish()
            .with(filter)
            .init(),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_keeps_whole_lines_and_a_bounded_set() {
        let dir = match tempfile_dir() {
            Some(d) => d,
            None => return,
        };
        let path = dir.join("x.log");
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
        let _ = std::fs::remove_dir_all(dir);
    }

    fn tempfile_dir() -> Option<PathBuf> {
        let d = std::env::temp_dir().join(format!("xray-logging-test-{}", std::process::id()));
        std::fs::create_dir_all(&d).ok()?;
        Some(d)
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
