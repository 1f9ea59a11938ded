//! The YAML config file (`cfg.yaml`), versions 1 and 2, with the original daemon's keys.
//!
//! In: a path (from `-c/--config`, or the first of [`DEFAULT_LOCATIONS`] that exists) and its
//! text. Out: a [`FileConfig`] whose fields are `None` where the file leaves a key out, empty
//! or zero (the original's merge treats those as "use the default"), or a [`FileError`] that
//! names the file, the key, the line where it is known, and what is allowed.
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
//! YAML is read with `serde-saphyr`: pure Rust, panic-free on any input, maintained, and its
//! errors carry line and column.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

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
    /// `Version`: 1 or 2.
    pub version: i64,
}

/// A config file read and checked.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The file.
    pub path: PathBuf,
    /// Whether it came from `-c` (checked strictly) or a default location.
    pub from_flag: bool,
    /// Its settings.
    pub config: FileConfig,
    /// The line of each key present, by dotted name (`Socket.UDPAddress`), for messages.
    pub lines: Vec<(String, u64)>,
    /// Warnings to log once logging is up (ignored keys, keys without effect).
    pub notes: Vec<String>,
}

impl Loaded {
    /// The line of `key` (dotted name), if it is in the file.
    pub fn line_of(&self, key: &str) -> Option<u64> {
        self.lines.iter().find(|(k, _)| k == key).map(|(_, l)| *l)
    }

    /// `KEY in FILE (line N)`, for messages about a value taken from this file.
    pub fn describe(&self, key: &str) -> String {
        match self.line_of(key) {
            Some(line) => format!("{key} in {} (line {line})", self.path.display()),
            None => format!("{key} in {}", self.path.display()),
        }
    }
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

/// Every key the file may hold, with what it allows. Parents (`Socket`) are mappings.
const KEYS: &[(&str, &str)] = &[
    (
        "TotalBufferSizeMB",
        "a whole number of MB: 0 for 1% of the memory, otherwise at least 3",
    ),
    (
        "Concurrency",
        "a whole number of uploads at once, at least 1 (0 means the default, 8)",
    ),
    (
        "Endpoint",
        "an http:// or https:// URL, or \"\" for the region's X-Ray endpoint",
    ),
    ("Region", "an AWS region name such as us-east-1, or \"\""),
    (
        "Socket",
        "a mapping with the keys UDPAddress and TCPAddress",
    ),
    ("Socket.UDPAddress", "HOST:PORT, for example 127.0.0.1:2000"),
    ("Socket.TCPAddress", "HOST:PORT, for example 127.0.0.1:2000"),
    (
        "proxyserver",
        "a mapping with the keys idleconntimeout, maxidleconnsperhost and maxidleconns (no effect)",
    ),
    ("proxyserver.idleconntimeout", "a whole number (no effect)"),
    (
        "proxyserver.maxidleconnsperhost",
        "a whole number (no effect)",
    ),
    ("proxyserver.maxidleconns", "a whole number (no effect)"),
    (
        "Logging",
        "a mapping with the keys LogRotation, LogLevel and LogPath",
    ),
    ("Logging.LogRotation", "true or false"),
    (
        "Logging.LogLevel",
        "one of dev, debug, info, warn, error, prod",
    ),
    (
        "Logging.LogPath",
        "a file path, or \"\" for standard output",
    ),
    ("LocalMode", "true or false"),
    ("ResourceARN", "an ARN, or \"\""),
    ("RoleARN", "an IAM role ARN, or \"\""),
    ("NoVerifySSL", "true or false"),
    (
        "ProxyAddress",
        "a proxy URL such as http://proxy.example:3128, or \"\"",
    ),
    ("Version", "1 or 2"),
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

/// What a key allows, if it is known.
pub fn allowed(key: &str) -> Option<&'static str> {
    KEYS.iter().find(|(k, _)| *k == key).map(|(_, a)| *a)
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
        line: line.filter(|l| *l > 0),
        key: key.map(str::to_owned),
        message,
    };
    let tree: Option<Tree> = serde_saphyr::from_str(text).map_err(|e| {
        at(
            FileErrorKind::Syntax,
            e.location().map(|l| l.line()),
            None,
            format!(
                "not a YAML mapping of keys: {}",
                library_message(&e.without_snippet().to_string())
            ),
        )
    })?;
    let tree = tree.unwrap_or_default();
    let lines = tree.lines();
    let mut notes = Vec::new();

    // Keys: strictly for -c; otherwise unknown keys become notes.
    for (key, line) in &lines {
        let problem = check_key(key);
        match problem {
            None => {}
            Some((kind, why)) if strict => {
                return Err(at(kind, Some(*line), Some(key), why));
            }
            Some((_, why)) => notes.push(format!(
                "{} line {line}: ignored the key {key}: {why}",
                path.display()
            )),
        }
        if key.starts_with("proxyserver.") {
            notes.push(format!(
                "{} line {line}: {key} has no effect (as in the original daemon)",
                path.display()
            ));
        }
    }
    if !tree.0.iter().any(|e| e.key == "Version") {
        return Err(at(
            FileErrorKind::Version,
            None,
            Some("Version"),
            "the Version key is missing; add the line `Version: 2` (versions 1 and 2 are read the same way)".into(),
        ));
    }

    let raw: Raw = serde_saphyr::from_str(text).map_err(|e| {
        let line = e.location().map(|l| l.line()).filter(|l| *l > 0);
        let key = line.and_then(|l| key_at_line(&lines, l));
        let message = match (key.as_deref().and_then(allowed), line) {
            (Some(allowed), Some(line)) => {
                let found = text
                    .lines()
                    .nth(usize::try_from(line - 1).unwrap_or(usize::MAX))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim())
                    .unwrap_or("");
                format!("the value {found:?} has the wrong type; it must be {allowed}")
            }
            (Some(allowed), None) => format!(
                "{}; it must be {allowed}",
                library_message(&e.without_snippet().to_string())
            ),
            (None, _) => library_message(&e.without_snippet().to_string()),
        };
        at(FileErrorKind::Type, line, key.as_deref(), message)
    })?;
    let version_line = lines.iter().find(|(k, _)| k == "Version").map(|(_, l)| *l);
    let version = match raw.version {
        Some(v @ (1 | 2)) => v,
        other => {
            return Err(at(
                FileErrorKind::Version,
                version_line,
                Some("Version"),
                format!(
                    "Version is {}, but it must be 1 or 2; write `Version: 2` (files for daemons older than 3.0 need converting first)",
                    other.map_or_else(|| "empty".to_owned(), |v| v.to_string())
                ),
            ));
        }
    };
    let socket = raw.socket.unwrap_or_default();
    let logging = raw.logging.unwrap_or_default();
    let source = |key: &'static str| Source::File {
        key,
        path: path.to_path_buf(),
        line: lines.iter().find(|(k, _)| k == key).map(|(_, l)| *l),
    };
    fn setting<T>(source: Source) -> impl FnOnce(T) -> Setting<T> {
        move |value| Setting { value, source }
    }
    let text = |s: Option<String>, key| s.filter(|s| !s.is_empty()).map(setting(source(key)));
    let config = FileConfig {
        total_buffer_size_mb: raw
            .total_buffer_size_mb
            .filter(|v| *v != 0)
            .map(setting(source("TotalBufferSizeMB"))),
        concurrency: raw
            .concurrency
            .filter(|v| *v != 0)
            .map(setting(source("Concurrency"))),
        endpoint: text(raw.endpoint, "Endpoint"),
        region: text(raw.region, "Region"),
        udp_address: text(socket.udp_address, "Socket.UDPAddress"),
        tcp_address: text(socket.tcp_address, "Socket.TCPAddress"),
        log_rotation: logging
            .log_rotation
            .map(setting(source("Logging.LogRotation"))),
        log_level: text(logging.log_level, "Logging.LogLevel"),
        log_path: text(logging.log_path, "Logging.LogPath"),
        local_mode: raw.local_mode.map(setting(source("LocalMode"))),
        resource_arn: text(raw.resource_arn, "ResourceARN"),
        role_arn: text(raw.role_arn, "RoleARN"),
        no_verify_ssl: raw.no_verify_ssl.map(setting(source("NoVerifySSL"))),
        proxy_address: text(raw.proxy_address, "ProxyAddress"),
        version,
    };
    Ok(Loaded {
        path: path.to_path_buf(),
        from_flag: strict,
        config,
        lines,
        notes,
    })
}

/// Whether `key` (dotted) is allowed; if not, the kind of problem and the fix.
fn check_key(key: &str) -> Option<(FileErrorKind, String)> {
    if allowed(key).is_some() {
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
    if let Some((known, _)) = KEYS.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)) {
        return Some((
            FileErrorKind::UnknownKey,
            format!("unknown key {key}; keys are case-sensitive: write {known}"),
        ));
    }
    let siblings: Vec<&str> = KEYS
        .iter()
        .map(|(k, _)| *k)
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
            .map(|(k, _)| *k)
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

/// The key whose entry starts on the latest line at or before `line`.
fn key_at_line(lines: &[(String, u64)], line: u64) -> Option<String> {
    lines
        .iter()
        .filter(|(_, l)| *l <= line)
        .max_by_key(|(_, l)| *l)
        .map(|(k, _)| k.clone())
}

/// The library's message without its `line N column M:` prefix or its advice about its own
/// options.
fn library_message(text: &str) -> String {
    let text = text.trim();
    let text = match text.strip_prefix("line ") {
        Some(rest) => rest.split_once(": ").map(|(_, m)| m).unwrap_or(text),
        None => text,
    };
    let text = match text.rfind(" at line ") {
        Some(i) if text[i..].contains(", column ") => &text[..i],
        _ => text,
    };
    if text.starts_with("duplicate mapping key") {
        let key = text
            .split_once(": ")
            .map(|(_, k)| k.split(',').next().unwrap_or(k))
            .unwrap_or("");
        return format!("the key {key} appears twice; keep one");
    }
    text.to_owned()
}

/// The typed file, unknown keys ignored (the key check runs first).
#[derive(Debug, Default, Deserialize)]
struct Raw {
    #[serde(rename = "TotalBufferSizeMB")]
    total_buffer_size_mb: Option<i64>,
    #[serde(rename = "Concurrency")]
    concurrency: Option<i64>,
    #[serde(rename = "Endpoint")]
    endpoint: Option<String>,
    #[serde(rename = "Region")]
    region: Option<String>,
    #[serde(rename = "Socket")]
    socket: Option<RawSocket>,
    #[serde(rename = "proxyserver")]
    _proxy_server: Option<RawProxyServer>,
    #[serde(rename = "Logging")]
    logging: Option<RawLogging>,
    #[serde(rename = "LocalMode")]
    local_mode: Option<bool>,
    #[serde(rename = "ResourceARN")]
    resource_arn: Option<String>,
    #[serde(rename = "RoleARN")]
    role_arn: Option<String>,
    #[serde(rename = "NoVerifySSL")]
    no_verify_ssl: Option<bool>,
    #[serde(rename = "ProxyAddress")]
    proxy_address: Option<String>,
    #[serde(rename = "Version")]
    version: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
struct RawSocket {
    #[serde(rename = "UDPAddress")]
    udp_address: Option<String>,
    #[serde(rename = "TCPAddress")]
    tcp_address: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawLogging {
    #[serde(rename = "LogRotation")]
    log_rotation: Option<bool>,
    #[serde(rename = "LogLevel")]
    log_level: Option<String>,
    #[serde(rename = "LogPath")]
    log_path: Option<String>,
}

/// Accepted for compatibility; the values are checked for type and then unused.
#[derive(Debug, Default, Deserialize)]
struct RawProxyServer {
    #[serde(rename = "idleconntimeout")]
    _idle_conn_timeout: Option<i64>,
    #[serde(rename = "maxidleconnsperhost")]
    _max_idle_conns_per_host: Option<i64>,
    #[serde(rename = "maxidleconns")]
    _max_idle_conns: Option<i64>,
}

/// The file's keys in file order with their lines: top-level keys, and for a mapping value
/// its keys one level down.
#[derive(Debug, Default)]
struct Tree(Vec<Entry>);

#[derive(Debug)]
struct Entry {
    key: String,
    line: u64,
    children: Vec<(String, u64)>,
}

impl Tree {
    /// Dotted key names with their lines, in file order; a parent with children is listed
    /// by its children only.
    fn lines(&self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        for e in &self.0 {
            if e.children.is_empty() {
                out.push((e.key.clone(), e.line));
            } else {
                out.extend(
                    e.children
                        .iter()
                        .map(|(c, l)| (format!("{}.{c}", e.key), *l)),
                );
            }
        }
        out
    }
}

impl<'de> Deserialize<'de> for Tree {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Tree;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping of keys such as `Version: 2`")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Tree, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<Spanned<String>>()? {
                    let Shape(children) = map.next_value()?;
                    entries.push(Entry {
                        key: key.value,
                        line: key.referenced.line(),
                        children,
                    });
                }
                Ok(Tree(entries))
            }
        }
        d.deserialize_map(V)
    }
}

/// A value's keys with their lines if it is a mapping; nothing otherwise.
struct Shape(Vec<(String, u64)>);

impl<'de> Deserialize<'de> for Shape {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Shape;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Shape, A::Error> {
                let mut keys = Vec::new();
                while let Some(key) = map.next_key::<Spanned<String>>()? {
                    let _: IgnoredAny = map.next_value()?;
                    keys.push((key.value, key.referenced.line()));
                }
                Ok(Shape(keys))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Shape, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Shape(Vec::new()))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Shape, E> {
                Ok(Shape(Vec::new()))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Shape, E> {
                Ok(Shape(Vec::new()))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Shape, E> {
                Ok(Shape(Vec::new()))
            }
            fn visit_i128<E>(self, _: i128) -> Result<Shape, E> {
                Ok(Shape(Vec::new()))
            }
            fn visit_u128<E>(self, _: u128) -> Result<Shape, E> {
                Ok(Shape(Vec::new()))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Shape, E> {
                Ok(Shape(Vec::new()))
            }
            fn visit_str<E>(self, _: &str) -> Result<Shape, E> {
                Ok(Shape(Vec::new()))
            }
            fn visit_bytes<E>(self, _: &[u8]) -> Result<Shape, E> {
                Ok(Shape(Vec::new()))
            }
            fn visit_unit<E>(self) -> Result<Shape, E> {
                Ok(Shape(Vec::new()))
            }
            fn visit_none<E>(self) -> Result<Shape, E> {
                Ok(Shape(Vec::new()))
            }
            fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Shape, D::Error> {
                Shape::deserialize(d)
            }
        }
        d.deserialize_any(V)
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
        assert_eq!(c.version, 2);
        assert_eq!(l.line_of("Socket.TCPAddress"), Some(7));
        assert_eq!(
            l.notes.len(),
            3,
            "each proxyserver key is noted: {:?}",
            l.notes
        );
        let v1 = ok(&FULL.replace("Version: 2", "Version: 1"), true);
        assert_eq!(
            v1.config,
            FileConfig {
                version: 1,
                ..l.config
            }
        );
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
                version: 1,
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
    fn default_location_file_ignores_unknown_keys_with_a_note() {
        let l = ok("Version: 2\nFoo: 1\nRegion: us-west-2\n", false);
        assert_eq!(value(&l.config.region).as_deref(), Some("us-west-2"));
        assert!(
            l.notes
                .iter()
                .any(|n| n.contains("Foo") && n.contains("line 2"))
        );
    }
}
