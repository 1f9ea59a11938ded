//! Log lines shaped like the original daemon's, through `tracing`.
//!
//! `2026-11-27T08:00:00Z [Info] message`: RFC 3339 local time to the second (`Z` in UTC, a
//! `+01:00`-style offset elsewhere), then the level word in brackets. Levels take the original's
//! words: `dev` (trace), `debug`, `info`, `warn`, `error`, and `prod` (info, the default).
//! Lines go to standard output, or to the `-f` file (appended).

use std::fmt;
use std::io::Write;
use std::path::Path;
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
        let word = match *event.metadata().level() {
            Level::TRACE => "Trace",
            Level::DEBUG => "Debug",
            Level::INFO => "Info",
            Level::WARN => "Warn",
            Level::ERROR => "Error",
        };
        write!(
            w,
            "{} [{word}] ",
            now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )?;
        ctx.field_format().format_fields(w.by_ref(), event)?;
        writeln!(w)
    }
}

/// Appends to a log file; each line written whole.
#[derive(Debug)]
struct FileWriter(Mutex<std::fs::File>);

impl<'a> MakeWriter<'a> for FileWriter {
    type Writer = FileLine<'a>;
    fn make_writer(&'a self) -> Self::Writer {
        FileLine(&self.0)
    }
}

struct FileLine<'a>(&'a Mutex<std::fs::File>);

impl Write for FileLine<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut f = self.0.lock().unwrap_or_else(|e| e.into_inner());
        f.write_all(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Starts logging at `level`, to `file` if given (appending; parent directories are created),
/// else to standard output. Only the daemon's own crate logs below Warn; the AWS SDK's
/// internals are kept at Warn unless `dev` is asked for.
pub fn init(level: LogLevel, file: Option<&Path>) -> std::io::Result<()> {
    let ours = level.max_level();
    let others = if level == LogLevel::Dev {
        Level::DEBUG
    } else {
        Level::WARN.min(ours)
    };
    let filter = tracing_subscriber::filter::Targets::new()
        .with_default(others)
        .with_target("xray_daemon", ours);
    let builder = tracing_subscriber::fmt()
        .event_format(OriginalFormat)
        .with_max_level(Level::TRACE);
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    match file {
        Some(path) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?;
            builder
                .with_writer(FileWriter(Mutex::new(f)))
                .finish()
                .with(filter)
                .init();
        }
        None => builder
            .with_writer(std::io::stdout)
            .finish()
            .with(filter)
            .init(),
    }
    Ok(())
}
