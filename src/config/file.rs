//! The YAML config file (`cfg.yaml`), versions 1 and 2, with the original daemon's keys.
//!
//! In: a path (from `-c/--config`, or the first of [`DEFAULT_LOCATIONS`] that exists) and its
//! text. Out: a [`FileConfig`] whose settings name their key, file and line, and are `None`
//! where the file leaves a key out, empty or zero (the original's merge treats those as "use
//! the default"); or a [`FileError`] that names the file, the key, the line where it is known,
//! and what is allowed.
//!
//! Two levels of checking, as in the original:
//! - a `-c` file is checked strictly: an unknown, misspelled or retired key stops startup;
//! - a file found at a default location ignores unknown keys, but we report each ignored key
//!   as a warning ([`Loaded::notes`]) instead of staying silent.
//!
//! In both, a value of the wrong type and a `Version` other than 1 or 2 stop startup. Versions
//! 1 and 2 are read the same way (2 only documented `Socket.TCPAddress`).
//!
//! The `proxyserver.*` keys (lower case only, as the original accepts them) are accepted and
//! have no effect, as in the original, which always resets them to its defaults; a note says so.
//!
//! YAML is read with `serde-saphyr` (pure Rust, panic-free on any input, maintained), once,
//! into a tree of values that keeps each key's and value's position ([`Spanned`]). The checks
//! then run on that tree in the original's order: YAML syntax first (the read fails), then the
//! keys, then `Version` being there, then the values' types, then `Version`'s value; the first
//! problem in file order wins within each step. A value's type is taken as YAML resolves it
//! (so `yes` and `on` are booleans, as in the original's YAML library), except that text
//! holding a whole number or `true`/`false` is accepted for a number or a boolean (`"8"`).

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{MessageFormatter, Spanned, UserMessageFormatter};

use super::{Setting, Source};

/// Where the config file is looked for when `-c` is not given, first match wins.
pub const DEFAULT_LOCATIONS: [&str; 2] = ["/etc/amazon/xray/cfg.yaml", "cfg.yaml"];

/// The largest config file read, in bytes (a guard against pointing `-c` at a huge file).
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// The file's settings, each with its key, file and line. `None` means the key is absent or
/// holds the zero value (`""`, `0`), which the original treats as "use the default"; booleans
/// keep an explicit `false`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileConfig {
    /// `TotalBufferSizeMB`: buffer memory in MB; zero or negative means 1% of the memory.
    pub total_buffer_size_mb: Option<Setting<i64>>,
    /// `Concurrency`: upload calls at once (default 8).
    pub concurrency: Option<Setting<i64>>,
    /// `Endpoint`: the X-Ray endpoint URL.
    pub endpoint: Option<Setting<String>>,
    /// `Region`.
    pub region: Option<Setting<String>>,
    /// `Socket.UDPAddress`.
    pub udp_address: Option<Setting<String>>,
    /// `Socket.TCPAddress`.
    pub tcp_address: Option<Setting<String>>,
    /// `Logging.LogRotation` (default true).
    pub log_rotation: Option<Setting<bool>>,
    /// `Logging.LogLevel`.
    pub log_level: Option<Setting<String>>,
    /// `Logging.LogPath`.
    pub log_path: Option<Setting<String>>,
    /// `LocalMode`.
    pub local_mode: Option<Setting<bool>>,
    /// `ResourceARN`.
    pub resource_arn: Option<Setting<String>>,
    /// `RoleARN`.
    pub role_arn: Option<Setting<String>>,
    /// `NoVerifySSL`.
    pub no_verify_ssl: Option<Setting<bool>>,
    /// `ProxyAddress`.
    pub proxy_address: Option<Setting<String>>,
    /// `UploadTimeout` (ours): seconds one call to X-Ray may take.
    pub upload_timeout: Option<Setting<i64>>,
    /// `OTLP.HTTPAddress` (ours): where the OTLP/HTTP receiver listens.
    pub otlp_http_address: Option<Setting<String>>,
    /// `OTLP.GRPCAddress` (ours): where the OTLP/gRPC receiver listens.
    pub otlp_grpc_address: Option<Setting<String>>,
    /// `OTLP.MaxRequestBytes` (ours): the largest OTLP request body, after decompression.
    pub otlp_max_request_bytes: Option<Setting<i64>>,
    /// `OTLP.IndexedAttributes` (ours): span attributes that become X-Ray annotations.
    pub otlp_indexed_attributes: Option<Setting<Vec<String>>>,
    /// `OTLP.IndexAllAttributes` (ours): every span attribute becomes an annotation.
    pub otlp_index_all_attributes: Option<Setting<bool>>,
    /// `OTLP.ToXRay` (ours): how spans go to X-Ray, `segments` or `otlp`.
    pub otlp_to_xray: Option<Setting<String>>,
    /// `Viewer.Enabled` (ours): serve the trace viewer.
    pub viewer_enabled: Option<Setting<bool>>,
    /// `Viewer.MemoryMB` (ours): the viewer store's budget in MB.
    pub viewer_memory_mb: Option<Setting<i64>>,
    /// `Viewer.AllowRemote` (ours): other hosts may open the viewer, with its token.
    pub viewer_allow_remote: Option<Setting<bool>>,
    /// `Sinks` (ours): where documents go, each sink with its own settings (the place for an
    /// OTLP backend's API key: a command line shows in `ps`).
    pub sinks: Option<Setting<Vec<FileSink>>>,
}

/// One item of `Sinks`, as the file writes it (checked when the configuration is resolved).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct FileSink {
    /// `Type`: `xray`, `stdout`, `file` or `otlp`.
    pub kind: String,
    /// `Endpoint` (otlp): the backend's URL.
    pub endpoint: Option<String>,
    /// `Headers` (otlp): names and values, in file order. Values are secrets.
    pub headers: Vec<(String, String)>,
    /// `Compression` (otlp): `gzip` or `none`.
    pub compression: Option<String>,
    /// `Path` (file).
    pub path: Option<String>,
    /// The item's line.
    pub line: Option<u64>,
}

impl fmt::Debug for FileSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("FileSink")
            .field("kind", &self.kind)
            .field("endpoint", &self.endpoint)
            .field("headers", &names)
            .field("compression", &self.compression)
            .field("path", &self.path)
            .field("line", &self.line)
            .finish()
    }
}

/// A config file read and checked.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The file.
    pub path: PathBuf,
    /// Its settings.
    pub config: FileConfig,
    /// Warnings to log once logging is up (ignored keys, keys without effect).
    pub notes: Vec<String>,
}

/// What is wrong with a config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileErrorKind {
    /// It cannot be read.
    Read,
    /// It is not YAML, or not a mapping of keys.
    Syntax,
    /// A key the daemon does not know (strict check).
    UnknownKey,
    /// A key that older daemons used and this one does not (strict check).
    RetiredKey,
    /// A value of the wrong type.
    Type,
    /// `Version` missing or not 1 or 2.
    Version,
}

/// A config file that cannot be used; the message names the file, the key, the line where
/// known, and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    /// What kind of problem.
    pub kind: FileErrorKind,
    /// The file.
    pub path: PathBuf,
    /// The line (1-based), where known.
    pub line: Option<u64>,
    /// The key (dotted name), where known.
    pub key: Option<String>,
    /// The problem and the fix.
    pub message: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config file {}", self.path.display())?;
        if let Some(line) = self.line {
            write!(f, ", line {line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ", key {key}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for FileError {}

/// The type a key's value must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A whole number.
    Number,
    /// true or false.
    Boolean,
    /// Text (a number or boolean there is taken as written).
    Text,
    /// A mapping of keys one level down (`Socket`, `Logging`, `proxyserver`).
    Mapping,
    /// A list of texts, or one text of comma-separated items.
    TextList,
    /// A list of mappings, each a sink (`Sinks`; read by [`sink_list`]).
    SinkList,
}

/// Every key the file may hold, with the type of its value and what it allows.
const KEYS: &[(&str, Kind, &str)] = &[
    (
        "TotalBufferSizeMB",
        Kind::Number,
        "a whole number of MB: 0 for 1% of the memory, otherwise at least 3",
    ),
    (
        "Concurrency",
        Kind::Number,
        "a whole number of uploads at once, at least 1 (0 means the default, 8)",
    ),
    (
        "Endpoint",
        Kind::Text,
        "an http:// or https:// URL, or \"\" for the region's X-Ray endpoint",
    ),
    (
        "Region",
        Kind::Text,
        "an AWS region name such as us-east-1, or \"\"",
    ),
    (
        "Socket",
        Kind::Mapping,
        "a mapping with the keys UDPAddress and TCPAddress",
    ),
    (
        "Socket.UDPAddress",
        Kind::Text,
        "HOST:PORT, for example 127.0.0.1:2000",
    ),
    (
        "Socket.TCPAddress",
        Kind::Text,
        "HOST:PORT, for example 127.0.0.1:2000",
    ),
    (
        "proxyserver",
        Kind::Mapping,
        "a mapping with the keys idleconntimeout, maxidleconnsperhost and maxidleconns (no effect)",
    ),
    (
        "proxyserver.idleconntimeout",
        Kind::Number,
        "a whole number (no effect)",
    ),
    (
        "proxyserver.maxidleconnsperhost",
        Kind::Number,
        "a whole number (no effect)",
    ),
    (
        "proxyserver.maxidleconns",
        Kind::Number,
        "a whole number (no effect)",
    ),
    (
        "Logging",
        Kind::Mapping,
        "a mapping with the keys LogRotation, LogLevel and LogPath",
    ),
    ("Logging.LogRotation", Kind::Boolean, "true or false"),
    (
        "Logging.LogLevel",
        Kind::Text,
        "one of dev, debug, info, warn, error, prod",
    ),
    (
        "Logging.LogPath",
        Kind::Text,
        "a file path, or \"\" for standard output",
    ),
    ("LocalMode", Kind::Boolean, "true or false"),
    ("ResourceARN", Kind::Text, "an ARN, or \"\""),
    ("RoleARN", Kind::Text, "an IAM role ARN, or \"\""),
    ("NoVerifySSL", Kind::Boolean, "true or false"),
    (
        "ProxyAddress",
        Kind::Text,
        "a proxy URL such as http://proxy.example:3128, or \"\"",
    ),
    (
        "UploadTimeout",
        Kind::Number,
        "a whole number of seconds one call to X-Ray may take, from 1 to 600 (0 means the default, 10)",
    ),
    (
        "Sinks",
        Kind::SinkList,
        "a list of sinks, each a mapping: `- Type: xray`, `- Type: stdout`, `- Type: file` with \
         Path, or `- Type: otlp` with Endpoint, Headers (a mapping of names to values) and \
         Compression (gzip or none)",
    ),
    (
        "Viewer",
        Kind::Mapping,
        "a mapping with the keys Enabled, MemoryMB and AllowRemote",
    ),
    (
        "Viewer.Enabled",
        Kind::Boolean,
        "true or false: serve the trace viewer on the TCP address",
    ),
    (
        "Viewer.MemoryMB",
        Kind::Number,
        "a whole number of MB for the viewer's store, from 1 to 1024 (0 means the default, 16)",
    ),
    (
        "Viewer.AllowRemote",
        Kind::Boolean,
        "true or false: let other hosts open the viewer, with the token the daemon prints",
    ),
    (
        "OTLP",
        Kind::Mapping,
        "a mapping with the keys HTTPAddress, GRPCAddress, MaxRequestBytes, IndexedAttributes, IndexAllAttributes and ToXRay",
    ),
    (
        "OTLP.HTTPAddress",
        Kind::Text,
        "HOST:PORT for the OTLP/HTTP receiver, for example 127.0.0.1:4318, or \"\" for none",
    ),
    (
        "OTLP.GRPCAddress",
        Kind::Text,
        "HOST:PORT for the OTLP/gRPC receiver, for example 127.0.0.1:4317, or \"\" for none",
    ),
    (
        "OTLP.MaxRequestBytes",
        Kind::Number,
        "a whole number of bytes, the largest OTLP request body after decompression (0 means the default, 20 MiB)",
    ),
    (
        "OTLP.IndexedAttributes",
        Kind::TextList,
        "a list of span attribute names, such as [app.user, app.tier], or one text of names separated by commas",
    ),
    ("OTLP.IndexAllAttributes", Kind::Boolean, "true or false"),
    (
        "OTLP.ToXRay",
        Kind::Text,
        "segments (spans converted to segment documents, PutTraceSegments) or otlp (spans unchanged to X-Ray's OTLP endpoint), or \"\" for segments",
    ),
    ("Version", Kind::Number, "1 or 2"),
];

/// Keys of older daemons, each with what to do instead.
const RETIRED: &[(&str, &str)] = &[
    ("Profile.CPU", "it is no longer supported; remove it"),
    ("Profile.Memory", "it is no longer supported; remove it"),
    (
        "Socket.BufferSizeKB",
        "it is no longer supported; remove it",
    ),
    ("Logging.LogFormat", "it is no longer supported; remove it"),
    (
        "Processor.BatchProcessorQueueSize",
        "it is no longer supported; remove it",
    ),
    (
        "LogRotation",
        "it moved: write it as LogRotation under Logging",
    ),
    (
        "Processor.Region",
        "it moved: write it as the top-level Region",
    ),
    (
        "Processor.Endpoint",
        "it moved: write it as the top-level Endpoint",
    ),
    (
        "Processor.Routine",
        "it moved: write it as the top-level Concurrency",
    ),
    (
        "MemoryLimit",
        "it moved: write it as TotalBufferSizeMB (in MB)",
    ),
];

/// The type of `key`'s value and what it allows, if the key is known.
fn known(key: &str) -> Option<(Kind, &'static str)> {
    KEYS.iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, kind, allowed)| (*kind, *allowed))
}

/// Picks the file to read: the `-c` path if given, else the first default location that
/// exists (relative ones against `cwd`). `None`: no file, built-in defaults only.
pub fn locate(flag: Option<&Path>, cwd: &Path) -> Option<(PathBuf, bool)> {
    if let Some(path) = flag {
        return Some((path.to_path_buf(), true));
    }
    DEFAULT_LOCATIONS
        .iter()
        .map(|p| cwd.join(p))
        .find(|p| p.is_file())
        .map(|p| (p, false))
}

/// Reads and checks the file at `path` (strictly when it came from `-c`).
pub fn load(path: &Path, from_flag: bool) -> Result<Loaded, FileError> {
    let err = |kind, message: String| FileError {
        kind,
        path: path.to_path_buf(),
        line: None,
        key: None,
        message,
    };
    let how = if from_flag {
        "check the path given to -c/--config and the file's permissions"
    } else {
        "fix its permissions, or remove it to use the built-in defaults"
    };
    let meta = std::fs::metadata(path)
        .map_err(|e| err(FileErrorKind::Read, format!("cannot read it: {e}; {how}")))?;
    if !meta.is_file() {
        return Err(err(
            FileErrorKind::Read,
            format!("it is not a regular file; {how}"),
        ));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(err(
            FileErrorKind::Read,
            format!(
                "it is {} bytes, more than a config file can be ({MAX_FILE_BYTES}); {how}",
                meta.len()
            ),
        ));
    }
    let bytes = std::fs::read(path)
        .map_err(|e| err(FileErrorKind::Read, format!("cannot read it: {e}; {how}")))?;
    let text = String::from_utf8(bytes).map_err(|_| {
        err(
            FileErrorKind::Syntax,
            "it is not UTF-8 text; save it as UTF-8".into(),
        )
    })?;
    parse(&text, path, from_flag)
}

/// Parses and checks `text` as the file at `path`; see [`load`].
pub fn parse(text: &str, path: &Path, strict: bool) -> Result<Loaded, FileError> {
    let at = |kind, line: Option<u64>, key: Option<&str>, message: String| FileError {
        kind,
        path: path.to_path_buf(),
        line,
        key: key.map(str::to_owned),
        message,
    };
    let doc = read_yaml(text)
        .map_err(|(line, message)| at(FileErrorKind::Syntax, line, None, message))?;
    let keys = keys(&doc);
    let mut notes = Vec::new();

    // Keys: strictly for -c; otherwise unknown keys become notes. A mapping's own key is
    // checked through its keys, as the original lists them.
    for key in keys.iter().filter(|k| !k.has_children()) {
        let (name, line) = (&key.name, key.line);
        match check_key(name) {
            None => {}
            Some((kind, why)) if strict => return Err(at(kind, line, Some(name), why)),
            Some((_, why)) => notes.push(format!(
                "{} line {}: ignored the key {name}: {why}",
                path.display(),
                shown(line)
            )),
        }
        if name.starts_with("proxyserver.") {
            notes.push(format!(
                "{} line {}: {name} has no effect (as in the original daemon)",
                path.display(),
                shown(line)
            ));
        }
    }
    let Some(version) = keys.iter().find(|k| k.name == "Version") else {
        return Err(at(
            FileErrorKind::Version,
            None,
            Some("Version"),
            "the Version key is missing; add the line `Version: 2` (versions 1 and 2 are read the same way)".into(),
        ));
    };

    // Types, of the keys the daemon knows.
    for key in &keys {
        if let Some((kind, allowed)) = known(&key.name)
            && !accepts(kind, key.value, text)
        {
            return Err(at(
                FileErrorKind::Type,
                line_of(key.value).or(key.line),
                Some(&key.name),
                format!(
                    "the value {} has the wrong type; it must be {allowed}",
                    found(key.value, text)
                ),
            ));
        }
    }
    // Versions 1 and 2 are read the same way: the number only has to be one of them.
    let number = version.value.value.number();
    if !matches!(number, Some(1 | 2)) {
        return Err(at(
            FileErrorKind::Version,
            version.line,
            Some("Version"),
            format!(
                "Version is {}, but it must be 1 or 2; write `Version: 2` (files for daemons older than 3.0 need converting first)",
                number.map_or_else(|| "empty".to_owned(), |v| v.to_string())
            ),
        ));
    }

    // The settings, each with where it is; zero and "" mean the default.
    let get = |key: &'static str| {
        keys.iter().find(|k| k.name == key).map(|k| {
            (
                k.value,
                Source::File {
                    key,
                    path: path.to_path_buf(),
                    line: line_of(k.value).or(k.line),
                },
            )
        })
    };
    let number = |key| setting(get(key), |v| v.value.number().filter(|n| *n != 0));
    let boolean = |key| setting(get(key), |v| v.value.boolean());
    let string = |key| setting(get(key), |v| as_text(v, text).filter(|s| !s.is_empty()));
    let config = FileConfig {
        total_buffer_size_mb: number("TotalBufferSizeMB"),
        concurrency: number("Concurrency"),
        endpoint: string("Endpoint"),
        region: string("Region"),
        udp_address: string("Socket.UDPAddress"),
        tcp_address: string("Socket.TCPAddress"),
        log_rotation: boolean("Logging.LogRotation"),
        log_level: string("Logging.LogLevel"),
        log_path: string("Logging.LogPath"),
        local_mode: boolean("LocalMode"),
        resource_arn: string("ResourceARN"),
        role_arn: string("RoleARN"),
        no_verify_ssl: boolean("NoVerifySSL"),
        proxy_address: string("ProxyAddress"),
        upload_timeout: number("UploadTimeout"),
        otlp_http_address: string("OTLP.HTTPAddress"),
        otlp_grpc_address: string("OTLP.GRPCAddress"),
        otlp_max_request_bytes: number("OTLP.MaxRequestBytes"),
        otlp_indexed_attributes: setting(get("OTLP.IndexedAttributes"), |v| text_list(v, text)),
        otlp_index_all_attributes: boolean("OTLP.IndexAllAttributes"),
        otlp_to_xray: string("OTLP.ToXRay"),
        viewer_enabled: boolean("Viewer.Enabled"),
        viewer_memory_mb: number("Viewer.MemoryMB"),
        viewer_allow_remote: boolean("Viewer.AllowRemote"),
        sinks: match get("Sinks") {
            None => None,
            Some((value, source)) => {
                let sinks = sink_list(value, text)
                    .map_err(|(line, why)| at(FileErrorKind::Type, line, Some("Sinks"), why))?;
                (!sinks.is_empty()).then_some(Setting {
                    value: sinks,
                    source,
                })
            }
        },
    };
    Ok(Loaded {
        path: path.to_path_buf(),
        config,
        notes,
    })
}

/// Whether `key` (dotted) is allowed; if not, the kind of problem and the fix.
fn check_key(key: &str) -> Option<(FileErrorKind, String)> {
    if known(key).is_some() {
        return None;
    }
    if let Some((_, fix)) = RETIRED.iter().find(|(k, _)| *k == key) {
        return Some((
            FileErrorKind::RetiredKey,
            format!("{key} is retired: {fix}"),
        ));
    }
    let parent = key.split_once('.').map(|(p, _)| p);
    if matches!(parent, Some("Profile" | "Processor")) || matches!(key, "Profile" | "Processor") {
        return Some((
            FileErrorKind::RetiredKey,
            format!("{key} is from a daemon older than 3.0 and is not supported; remove it"),
        ));
    }
    if let Some((known, _, _)) = KEYS.iter().find(|(k, _, _)| k.eq_ignore_ascii_case(key)) {
        return Some((
            FileErrorKind::UnknownKey,
            format!("unknown key {key}; keys are case-sensitive: write {known}"),
        ));
    }
    let siblings: Vec<&str> = KEYS
        .iter()
        .map(|(k, _, _)| *k)
        .filter(|k| match parent {
            Some(p) => k.strip_prefix(p).is_some_and(|r| r.starts_with('.')),
            None => !k.contains('.'),
        })
        .collect();
    let scope = match parent {
        Some(p) if !siblings.is_empty() => format!("the keys under {p} are"),
        _ => "the top-level keys are".to_owned(),
    };
    let siblings = if siblings.is_empty() {
        KEYS.iter()
            .map(|(k, _, _)| *k)
            .filter(|k| !k.contains('.'))
            .collect()
    } else {
        siblings
    };
    Some((
        FileErrorKind::UnknownKey,
        format!(
            "unknown key {key}; {scope}: {} (see the sample cfg.yaml)",
            siblings.join(", ")
        ),
    ))
}

/// A key's value read by `read`, with where it is in the file.
fn setting<T>(
    found: Option<(&Spanned<Value>, Source)>,
    read: impl FnOnce(&Spanned<Value>) -> Option<T>,
) -> Option<Setting<T>> {
    let (value, source) = found?;
    Some(Setting {
        value: read(value)?,
        source,
    })
}

/// `N` for a line, `?` where it is not known.
fn shown(line: Option<u64>) -> String {
    line.map_or_else(|| "?".to_owned(), |l| l.to_string())
}

/// The line of a value, where known.
fn line_of(value: &Spanned<Value>) -> Option<u64> {
    Some(value.referenced.line()).filter(|l| *l > 0)
}

/// Reads the YAML in one pass: the top-level mapping's entries, in file order. An empty file
/// has none. Err: the line where known, and the problem.
fn read_yaml(text: &str) -> Result<Mapping, (Option<u64>, String)> {
    // `.inf` and `.nan` stay text, so a number key given one gets the usual type error.
    let options = serde_saphyr::options! {
        non_finite_float_policy: serde_saphyr::NonFiniteFloatPolicy::AsString,
    };
    let doc: Option<Spanned<Value>> =
        serde_saphyr::from_str_with_options(text, options).map_err(|e| yaml_problem(&e))?;
    match doc {
        None => Ok(Mapping::new()),
        Some(Spanned { value: Value::Null, .. }) => Ok(Mapping::new()),
        Some(Spanned { value: Value::Map(entries), .. }) => Ok(entries),
        Some(other) => Err((
            line_of(&other),
            "the file must be a YAML mapping of keys such as `Version: 2`, not a single value or a list".into(),
        )),
    }
}

/// What the YAML library found wrong, from its error's kind and location (never its text).
fn yaml_problem(error: &serde_saphyr::Error) -> (Option<u64>, String) {
    let line = error.location().map(|l| l.line()).filter(|l| *l > 0);
    let mut inner = error.without_snippet();
    while let serde_saphyr::Error::AliasError { error, .. } = inner {
        inner = error.without_snippet();
    }
    let message = match inner {
        serde_saphyr::Error::DuplicateMappingKey { key: Some(key), .. } => {
            format!("the key {key} appears twice; keep one")
        }
        other => format!(
            "the YAML cannot be read: {}",
            // The formatter's words, made safe to log (no control characters).
            UserMessageFormatter.format_message(other).escape_debug()
        ),
    };
    (line, message)
}

/// A mapping's entries in file order: each key and value with its position.
type Mapping = Vec<(Spanned<String>, Spanned<Value>)>;

/// A YAML value as the file has it, with a mapping's keys in file order. The daemon reads keys
/// two levels deep (`Socket.UDPAddress`); deeper down a value is only looked at to say what it
/// is. The library bounds the depth (its default budget), so reading it cannot overflow.
#[derive(Debug)]
enum Value {
    /// `~`, `null`, or nothing after the colon.
    Null,
    /// A YAML boolean (`true`, and as the original's YAML library also `yes`, `on`, …).
    Bool(bool),
    /// A YAML integer (decimal, `0x`, `0o`); wide enough for any i64 or u64.
    Int(i128),
    /// A YAML number with a fraction or exponent (no key takes one; it is only shown).
    Float,
    /// Text, quoted or not.
    Text(String),
    /// A sequence, with its items.
    List(Vec<Spanned<Value>>),
    /// A mapping.
    Map(Mapping),
}

impl Value {
    /// A whole number: a YAML integer in range, or text holding one (`"8"`).
    fn number(&self) -> Option<i64> {
        match self {
            Value::Int(n) => i64::try_from(*n).ok(),
            Value::Text(s) => s.parse().ok(),
            _ => None,
        }
    }

    /// A boolean: a YAML boolean, or the text `true` or `false`.
    fn boolean(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            Value::Text(s) => s.parse().ok(),
            _ => None,
        }
    }
}

/// The text of a scalar: text as it is, a number or boolean as the file writes it (`0x1F`
/// stays `0x1F`). `None` for anything else.
fn as_text(value: &Spanned<Value>, text: &str) -> Option<String> {
    match &value.value {
        Value::Text(s) => Some(s.clone()),
        Value::Bool(_) | Value::Int(_) | Value::Float => written(value, text).map(str::to_owned),
        Value::Null | Value::List(_) | Value::Map(_) => None,
    }
}

/// A list of texts: a YAML list of scalars, or one text of comma-separated items (blanks
/// around items dropped, empty items skipped). `None` for anything else.
fn text_list(value: &Spanned<Value>, text: &str) -> Option<Vec<String>> {
    let items: Vec<String> = match &value.value {
        Value::List(items) => items
            .iter()
            .map(|v| as_text(v, text))
            .collect::<Option<_>>()?,
        _ => as_text(value, text)?
            .split(',')
            .map(str::to_owned)
            .collect(),
    };
    Some(
        items
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
    )
}

/// The items of `Sinks`; Err: the line and what is wrong (never a header's value).
fn sink_list(value: &Spanned<Value>, text: &str) -> Result<Vec<FileSink>, (Option<u64>, String)> {
    const KEYS: &str = "Type, Endpoint, Headers and Compression (otlp), Path (file)";
    let Value::List(items) = &value.value else {
        return Ok(Vec::new());
    };
    let mut sinks = Vec::with_capacity(items.len());
    for item in items {
        let line = line_of(item);
        let Value::Map(entries) = &item.value else {
            return Err((
                line,
                "each item of Sinks is a mapping, for example `- Type: otlp`".into(),
            ));
        };
        let mut sink = FileSink {
            line,
            ..FileSink::default()
        };
        for (key, v) in entries {
            let at = line_of(v).or(line);
            let scalar = || {
                as_text(v, text)
                    .map(|s| s.trim().to_owned())
                    .ok_or_else(|| (at, format!("{} must be text", key.value)))
            };
            match key.value.as_str() {
                "Type" => sink.kind = scalar()?,
                "Endpoint" => sink.endpoint = Some(scalar()?).filter(|s| !s.is_empty()),
                "Compression" => sink.compression = Some(scalar()?).filter(|s| !s.is_empty()),
                "Path" => sink.path = Some(scalar()?).filter(|s| !s.is_empty()),
                "Headers" => match &v.value {
                    Value::Null => {}
                    Value::Map(headers) => {
                        for (name, hv) in headers {
                            let value = as_text(hv, text).ok_or_else(|| {
                                (
                                    line_of(hv).or(at),
                                    format!("the value of the header {} must be text", name.value),
                                )
                            })?;
                            sink.headers.push((name.value.clone(), value));
                        }
                    }
                    _ => {
                        return Err((
                            at,
                            "Headers is a mapping of header names to values, for example \
                             `x-honeycomb-team: KEY`"
                                .into(),
                        ));
                    }
                },
                other => {
                    return Err((
                        at,
                        format!("unknown key {other} in a sink; a sink's keys are {KEYS}"),
                    ));
                }
            }
        }
        sinks.push(sink);
    }
    Ok(sinks)
}

/// The value's source text, from its span.
fn written<'t>(value: &Spanned<Value>, text: &'t str) -> Option<&'t str> {
    let span = value.referenced.span();
    let start = usize::try_from(span.byte_offset()?).ok()?;
    let len = usize::try_from(span.byte_len()?).ok()?;
    text.get(start..start.checked_add(len)?)
}

/// Whether `value` has the type `kind` asks for; an empty value always does (the default).
fn accepts(kind: Kind, value: &Spanned<Value>, text: &str) -> bool {
    match (&value.value, kind) {
        (Value::Null, _) | (Value::Map(_), Kind::Mapping) => true,
        (v, Kind::Number) => v.number().is_some(),
        (v, Kind::Boolean) => v.boolean().is_some(),
        (_, Kind::Text) => as_text(value, text).is_some(),
        (_, Kind::TextList) => text_list(value, text).is_some(),
        (Value::List(_), Kind::SinkList) => true,
        (_, Kind::Mapping | Kind::SinkList) => false,
    }
}

/// The value as a message shows it.
fn found(value: &Spanned<Value>, text: &str) -> String {
    match &value.value {
        Value::List(_) => "(a list)".into(),
        Value::Map(_) => "(a mapping)".into(),
        Value::Null => "(empty)".into(),
        Value::Text(s) => format!("{s:?}"),
        Value::Bool(_) | Value::Int(_) | Value::Float => {
            format!("{:?}", written(value, text).unwrap_or("?"))
        }
    }
}

/// One key of the file: a top-level key, or one level down named with its parent
/// (`Socket.UDPAddress`), with the line of the key and its value.
struct Key<'a> {
    name: String,
    line: Option<u64>,
    value: &'a Spanned<Value>,
}

impl Key<'_> {
    /// Whether the value is a mapping with keys of its own.
    fn has_children(&self) -> bool {
        matches!(&self.value.value, Value::Map(m) if !m.is_empty())
    }
}

/// Every key in file order: each top-level key followed by its own keys if its value is a
/// mapping (one level down, as the original checks them).
fn keys(doc: &Mapping) -> Vec<Key<'_>> {
    let line = |key: &Spanned<String>| Some(key.referenced.line()).filter(|l| *l > 0);
    let mut out = Vec::new();
    for (key, value) in doc {
        out.push(Key {
            name: key.value.clone(),
            line: line(key),
            value,
        });
        if let Value::Map(children) = &value.value {
            out.extend(children.iter().map(|(child, value)| Key {
                name: format!("{}.{}", key.value, child.value),
                line: line(child),
                value,
            }));
        }
    }
    out
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

/// Takes whatever YAML value comes, as it comes.
struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a YAML value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Int(v.into()))
    }
    fn visit_i128<E>(self, v: i128) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u128<E>(self, v: u128) -> Result<Value, E> {
        // Out of any range the daemon reads, whatever it is.
        Ok(Value::Int(i128::try_from(v).unwrap_or(i128::MAX)))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Value, E> {
        Ok(Value::Float)
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Text(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::Text(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Value>>()? {
            items.push(item);
        }
        Ok(Value::List(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Mapping::new();
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            entries.push((key, map.next_value()?));
        }
        Ok(Value::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str, strict: bool) -> Loaded {
        match parse(text, Path::new("/x/cfg.yaml"), strict) {
            Ok(l) => l,
            Err(e) => panic!("{e}"),
        }
    }

    fn bad(text: &str) -> FileError {
        match parse(text, Path::new("/x/cfg.yaml"), true) {
            Ok(l) => panic!("accepted: {l:?}"),
            Err(e) => e,
        }
    }

    fn value<T: Clone>(setting: &Option<Setting<T>>) -> Option<T> {
        setting.as_ref().map(|s| s.value.clone())
    }

    const FULL: &str = "\
TotalBufferSizeMB: 24
Concurrency: 4
Region: eu-west-1
Endpoint: http://127.0.0.1:4567
Socket:
  UDPAddress: 127.0.0.1:3000
  TCPAddress: 127.0.0.1:3001
proxyserver:
  idleconntimeout: 10
  maxidleconnsperhost: 2
  maxidleconns: 5
Logging:
  LogRotation: false
  LogLevel: debug
  LogPath: /var/log/xray.log
LocalMode: true
ResourceARN: arn:aws:ec2:eu-west-1:123:instance/i-1
RoleARN: arn:aws:iam::123:role/xray
NoVerifySSL: true
ProxyAddress: http://proxy:3128
Version: 2
";

    #[test]
    fn every_key_loads() {
        let l = ok(FULL, true);
        let c = &l.config;
        assert_eq!(value(&c.total_buffer_size_mb), Some(24));
        assert_eq!(value(&c.concurrency), Some(4));
        assert_eq!(value(&c.region).as_deref(), Some("eu-west-1"));
        assert_eq!(value(&c.endpoint).as_deref(), Some("http://127.0.0.1:4567"));
        assert_eq!(value(&c.udp_address).as_deref(), Some("127.0.0.1:3000"));
        assert_eq!(value(&c.tcp_address).as_deref(), Some("127.0.0.1:3001"));
        assert_eq!(value(&c.log_rotation), Some(false));
        assert_eq!(value(&c.log_level).as_deref(), Some("debug"));
        assert_eq!(value(&c.log_path).as_deref(), Some("/var/log/xray.log"));
        assert_eq!(value(&c.local_mode), Some(true));
        assert_eq!(value(&c.no_verify_ssl), Some(true));
        assert_eq!(
            value(&c.proxy_address).as_deref(),
            Some("http://proxy:3128")
        );
        assert_eq!(
            c.tcp_address.as_ref().map(|s| s.source.to_string()),
            Some("Socket.TCPAddress in /x/cfg.yaml (line 7)".to_owned()),
            "the line comes from the value's position"
        );
        assert_eq!(
            l.notes.len(),
            3,
            "each proxyserver key is noted: {:?}",
            l.notes
        );
        let v1 = ok(&FULL.replace("Version: 2", "Version: 1"), true);
        assert_eq!(v1.config, l.config);
    }

    #[test]
    fn zero_values_mean_default() {
        let l = ok(
            "Version: 1\nTotalBufferSizeMB: 0\nConcurrency: 0\nRegion: \"\"\nSocket:\n  UDPAddress: ''\nLogging:\n  LogRotation: false\n",
            true,
        );
        assert_eq!(value(&l.config.log_rotation), Some(false));
        assert_eq!(
            l.config,
            FileConfig {
                log_rotation: l.config.log_rotation.clone(),
                ..FileConfig::default()
            }
        );
    }

    #[test]
    fn strict_errors_name_key_line_and_fix() {
        let e = bad("Version: 2\nRegoin: us-east-1\n");
        assert_eq!(
            (e.kind, e.line, e.key.as_deref()),
            (FileErrorKind::UnknownKey, Some(2), Some("Regoin"))
        );
        assert!(e.to_string().contains("Region"), "{e}");
        let e = bad("Version: 2\nSocket:\n  udpaddress: x\n");
        assert_eq!(e.line, Some(3));
        assert!(e.message.contains("write Socket.UDPAddress"), "{e}");
        let e = bad("Version: 2\nLogging:\n  LogFormat: x\n");
        assert_eq!(e.kind, FileErrorKind::RetiredKey);
        let e = bad("Version: 2\nProcessor:\n  Routine: 3\n");
        assert!(e.message.contains("Concurrency"), "{e}");
        let e = bad("Version: 2\nTotalBufferSizeMB: abc\n");
        assert_eq!(
            (e.kind, e.line, e.key.as_deref()),
            (FileErrorKind::Type, Some(2), Some("TotalBufferSizeMB"))
        );
        assert!(e.message.contains("whole number"), "{e}");
        let e = bad("Region: x\n");
        assert_eq!(e.kind, FileErrorKind::Version);
        assert!(e.message.contains("Version: 2"), "{e}");
        let e = bad("Version: 3\n");
        assert_eq!((e.kind, e.line), (FileErrorKind::Version, Some(1)));
        let e = bad("");
        assert_eq!(e.kind, FileErrorKind::Version);
        let e = bad("Version: 2\nVersion: 1\n");
        assert!(e.message.contains("twice"), "{e}");
        let e = bad("- a\n- b\n");
        assert_eq!(e.kind, FileErrorKind::Syntax);
        let e = bad("Version: 2\nProxyServer:\n  IdleConnTimeout: 3\n");
        assert!(e.message.contains("proxyserver.idleconntimeout"), "{e}");
    }

    #[test]
    fn one_read_keeps_the_original_order_of_checks() {
        // Broken YAML after a value of the wrong type: the YAML is reported.
        let e = bad("Version: 2\n  x: [\n");
        assert_eq!((e.kind, e.line), (FileErrorKind::Syntax, Some(2)), "{e}");
        assert!(e.message.contains("YAML"), "{e}");
        // An unknown key after a value of the wrong type: the key is reported.
        let e = bad("Version: 2\nTotalBufferSizeMB: abc\nRegoin: x\n");
        assert_eq!(
            (e.kind, e.line, e.key.as_deref()),
            (FileErrorKind::UnknownKey, Some(3), Some("Regoin"))
        );
        // A missing Version before a value of the wrong type.
        assert_eq!(bad("Concurrency: x\n").kind, FileErrorKind::Version);
        // The first value of the wrong type in file order.
        let e = bad("Version: 2\nLocalMode: maybe\nConcurrency: x\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("LocalMode")));
    }

    #[test]
    fn values_of_the_wrong_shape_name_key_and_line() {
        let e = bad("Version: 2\nRegion: [a, b]\nLocalMode: true\n");
        assert_eq!(
            (e.kind, e.line, e.key.as_deref()),
            (FileErrorKind::Type, Some(2), Some("Region"))
        );
        assert!(
            e.message.contains("(a list)") && e.message.contains("us-east-1"),
            "{e}"
        );
        let e = bad("Version: 2\nSocket: 5\n");
        assert_eq!(
            (e.kind, e.key.as_deref()),
            (FileErrorKind::Type, Some("Socket"))
        );
        assert!(
            e.message.contains("\"5\"") && e.message.contains("UDPAddress"),
            "{e}"
        );
        let e = bad("Version: 2\nTotalBufferSizeMB: .inf\n");
        assert_eq!((e.kind, e.line), (FileErrorKind::Type, Some(2)));
        let e = bad("Version: 2\nConcurrency: 99999999999999999999\n");
        assert_eq!(e.key.as_deref(), Some("Concurrency"));
        let e = bad("Version: 2\nSocket:\n  UDPAddress: a:1\n  UDPAddress: b:2\n");
        assert_eq!((e.kind, e.line), (FileErrorKind::Syntax, Some(4)));
        assert!(e.message.contains("UDPAddress appears twice"), "{e}");
        // A key that takes a value, given a mapping: its keys are unknown (strict), and
        // leniently the value is still of the wrong type.
        let e = bad("Version: 2\nRegion:\n  a: 1\n");
        assert_eq!(
            (e.kind, e.key.as_deref()),
            (FileErrorKind::UnknownKey, Some("Region.a"))
        );
        let e = parse(
            "Version: 2\nRegion:\n  a: 1\n",
            Path::new("/x/cfg.yaml"),
            false,
        );
        assert!(
            e.is_err_and(|e| e.kind == FileErrorKind::Type && e.key.as_deref() == Some("Region"))
        );
    }

    #[test]
    fn values_read_as_yaml_types_them() {
        let l = ok(
            "Version: \"2\"\nConcurrency: '4'\nTotalBufferSizeMB: 0x10\nLocalMode: yes\n\
             NoVerifySSL: 'false'\nRegion: 0x1F\nResourceARN: on\nLogging:\n  LogLevel: .inf\n",
            true,
        );
        let c = &l.config;
        assert_eq!(value(&c.concurrency), Some(4));
        assert_eq!(value(&c.total_buffer_size_mb), Some(16));
        assert_eq!(value(&c.local_mode), Some(true));
        assert_eq!(value(&c.no_verify_ssl), Some(false));
        assert_eq!(value(&c.region).as_deref(), Some("0x1F"), "text as written");
        assert_eq!(value(&c.resource_arn).as_deref(), Some("on"));
        assert_eq!(value(&c.log_level).as_deref(), Some(".inf"));
        let l = ok("Version: 1\nRegion:\nSocket:\nLogging: {}\n", true);
        assert_eq!(l.config, FileConfig::default());
        assert!(ok("# only a comment\nVersion: 2\n", true).notes.is_empty());
    }

    #[test]
    fn default_location_file_ignores_unknown_keys_with_a_note() {
        let l = ok(
            "Version: 2\nFoo: 1\nRegion: us-west-2\nSocket:\n  Bar: [1]\n",
            false,
        );
        assert!(
            l.notes
                .iter()
                .any(|n| n.contains("Socket.Bar") && n.contains("/x/cfg.yaml line 5")),
            "{:?}",
            l.notes
        );
        assert_eq!(value(&l.config.region).as_deref(), Some("us-west-2"));
        assert!(
            l.notes
                .iter()
                .any(|n| n.contains("Foo") && n.contains("line 2"))
        );
    }

    #[test]
    fn a_quoted_boolean_other_than_true_or_false_is_refused() {
        let c = ok("Version: 2\nLocalMode: \"true\"\n", true);
        assert_eq!(value(&c.config.local_mode), Some(true));
        let e = bad("Version: 2\nLocalMode: 'yes'\n").to_string();
        assert!(e.contains("LocalMode") && e.contains("line 2"), "{e}");
    }
}
