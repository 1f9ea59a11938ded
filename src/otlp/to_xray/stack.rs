//! Stack traces as OpenTelemetry SDKs record them (`exception.stacktrace`, one string) into
//! X-Ray stack frames (`path`, `line`, `label`), per language (the resource's
//! `telemetry.sdk.language`).
//!
//! Data comes from an exception event's attributes; what comes out goes into the `cause` of a
//! converted document ([`super`]). The formats are the languages' own printed traces: Python's
//! traceback, Java's (and PHP's) `printStackTrace`, V8's (`nodejs`, `webjs`), .NET's and Go's
//! `debug.Stack`. A chained exception (Java `Caused by:`, Python's "During handling of the
//! above exception" and "The above exception was the direct cause") becomes an exception of its
//! own that the one before it names as its `cause`. Lines that do not parse are skipped: a
//! trace is informative, never a reason to refuse a span.
//!
//! Frames are listed innermost call first, as the X-Ray SDKs list them.

/// One stack frame.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frame {
    /// Source file (or module) path.
    pub path: String,
    /// Line number (0 when unknown).
    pub line: u32,
    /// Function or method.
    pub label: String,
}

/// One exception of a parsed trace: its frames, and for a chained exception its type and
/// message (the first exception's type and message come from the event's attributes).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    /// The exception's type (empty for the first: taken from `exception.type`).
    pub kind: String,
    /// The exception's message (empty for the first: taken from `exception.message`).
    pub message: String,
    /// Its frames, innermost first.
    pub frames: Vec<Frame>,
}

/// Parses `trace` as printed by a `language` SDK: the exception itself first, then each
/// exception it was caused by. Unknown languages give one exception without frames.
pub fn parse(trace: &str, language: &str) -> Vec<Parsed> {
    let parsed = match language {
        "python" => python(trace),
        "java" | "php" => java(trace),
        "javascript" | "nodejs" | "webjs" => javascript(trace),
        "dotnet" => dotnet(trace),
        "go" => go(trace),
        _ => Vec::new(),
    };
    if parsed.is_empty() {
        vec![Parsed::default()]
    } else {
        parsed
    }
}

const PYTHON_CHAINS: [&str; 2] = [
    "During handling of the above exception, another exception occurred:",
    "The above exception was the direct cause of the following exception:",
];

/// Python: blocks of `Traceback (most recent call last):`, frames as
/// `  File "PATH", line N, in LABEL` (outermost first), then `Type: message`. When chained,
/// the cause is printed first and the chain sentence separates the blocks.
fn python(trace: &str) -> Vec<Parsed> {
    // Blocks in print order: the first printed is the deepest cause.
    let mut blocks: Vec<Vec<&str>> = vec![Vec::new()];
    for line in trace.lines() {
        if PYTHON_CHAINS.contains(&line.trim()) {
            blocks.push(Vec::new());
        } else if let Some(block) = blocks.last_mut() {
            block.push(line);
        }
    }
    let mut out: Vec<Parsed> = blocks
        .iter()
        .rev()
        .map(|lines| {
            let mut frames: Vec<Frame> = lines.iter().filter_map(|l| python_frame(l)).collect();
            frames.reverse();
            // The exception line(s): what follows the last frame and is not indented.
            let last_frame = lines
                .iter()
                .rposition(|l| l.starts_with("  File "))
                .map_or(0, |i| i + 1);
            let text: Vec<&str> = lines[last_frame..]
                .iter()
                .filter(|l| !l.starts_with(' ') && !l.trim().is_empty())
                .copied()
                .collect();
            let (kind, message) = split_type_message(&text.join("\n"));
            Parsed {
                kind,
                message,
                frames,
            }
        })
        .collect();
    if let Some(first) = out.first_mut() {
        first.kind.clear();
        first.message.clear();
    }
    out
}

fn python_frame(line: &str) -> Option<Frame> {
    let rest = line.strip_prefix("  File \"")?;
    let (path, rest) = rest.split_once("\", line ")?;
    let (number, label) = match rest.split_once(", in ") {
        Some((n, l)) => (n, l),
        None => (rest, ""),
    };
    Some(Frame {
        path: path.to_owned(),
        line: number.trim().parse().unwrap_or(0),
        label: label.trim().to_owned(),
    })
}

/// `Type: message` → (`Type`, `message`); no colon: the whole text is the type.
fn split_type_message(text: &str) -> (String, String) {
    match text.split_once(':') {
        Some((kind, message)) => (kind.trim().to_owned(), message.trim().to_owned()),
        None => (text.trim().to_owned(), String::new()),
    }
}

/// Java: the first line is the exception, frames `\tat LABEL(PATH:LINE)` (innermost first),
/// `Caused by: Type: message` starts the next exception, `\t... N more` is skipped.
fn java(trace: &str) -> Vec<Parsed> {
    let mut out = vec![Parsed::default()];
    for line in trace.lines().skip(1) {
        if let Some(rest) = line.strip_prefix("Caused by: ") {
            let (kind, message) = split_type_message(rest);
            out.push(Parsed {
                kind,
                message,
                frames: Vec::new(),
            });
        } else if let Some(frame) = java_frame(line)
            && let Some(current) = out.last_mut()
        {
            current.frames.push(frame);
        }
    }
    out
}

fn java_frame(line: &str) -> Option<Frame> {
    let rest = line.trim_start().strip_prefix("at ")?;
    let open = rest.find('(')?;
    let inner = rest[open + 1..].strip_suffix(')')?;
    let label = &rest[..open];
    // A class loader or module prefix (`java.base/`) is not part of the method.
    let label = label.rsplit_once('/').map_or(label, |(_, l)| l);
    let (path, line) = match inner.rsplit_once(':') {
        Some((p, n)) => (p, n.parse().unwrap_or(0)),
        None => (inner, 0),
    };
    Some(Frame {
        path: path.to_owned(),
        line,
        label: label.to_owned(),
    })
}

/// V8: the first line is the error, frames `    at LABEL (PATH:LINE:COL)` or
/// `    at PATH:LINE:COL`.
fn javascript(trace: &str) -> Vec<Parsed> {
    let frames = trace
        .lines()
        .skip(1)
        .filter_map(|line| {
            let rest = line.trim_start().strip_prefix("at ")?;
            let (label, location) = match (rest.find(" ("), rest.strip_suffix(')')) {
                (Some(open), Some(trimmed)) => (&rest[..open], &trimmed[open + 2..]),
                _ => ("", rest),
            };
            // PATH:LINE:COL, where PATH may itself hold colons (`node:internal/…`).
            let mut parts = location.rsplitn(3, ':');
            let (col, line, path) = (parts.next(), parts.next(), parts.next());
            let (path, line) = match (path, line.and_then(|l| l.parse().ok()), col) {
                (Some(p), Some(n), Some(_)) => (p, n),
                _ => (location, 0),
            };
            Some(Frame {
                path: path.to_owned(),
                line,
                label: label.to_owned(),
            })
        })
        .collect();
    vec![Parsed {
        frames,
        ..Parsed::default()
    }]
}

/// .NET: the first line is the exception, frames `   at LABEL in PATH:line N` or `   at LABEL`.
fn dotnet(trace: &str) -> Vec<Parsed> {
    let frames = trace
        .lines()
        .skip(1)
        .filter_map(|line| {
            let rest = line.trim().strip_prefix("at ")?;
            let (label, path, line) = match rest.split_once(" in ") {
                Some((label, location)) => match location.rsplit_once(":line ") {
                    Some((path, n)) => (label, path, n.trim().parse().unwrap_or(0)),
                    None => (label, location, 0),
                },
                None => (rest, "", 0),
            };
            Some(Frame {
                path: path.to_owned(),
                line,
                label: label.to_owned(),
            })
        })
        .collect();
    vec![Parsed {
        frames,
        ..Parsed::default()
    }]
}

/// Go (`debug.Stack`): `goroutine N [running]:`, then pairs of a function line and
/// `\tPATH:LINE +0x…`.
fn go(trace: &str) -> Vec<Parsed> {
    let mut frames = Vec::new();
    let mut label: Option<&str> = None;
    for line in trace.lines() {
        if line.starts_with("goroutine ") {
            continue;
        }
        if let Some(location) = line.strip_prefix('\t') {
            let location = location.split(" +0x").next().unwrap_or(location);
            let (path, n) = match location.rsplit_once(':') {
                Some((p, n)) => (p, n.trim().parse().unwrap_or(0)),
                None => (location, 0),
            };
            frames.push(Frame {
                path: path.to_owned(),
                line: n,
                label: label.take().unwrap_or_default().to_owned(),
            });
        } else if !line.trim().is_empty() {
            label = Some(line.trim());
        }
    }
    vec![Parsed {
        frames,
        ..Parsed::default()
    }]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(path: &str, line: u32, label: &str) -> Frame {
        Frame {
            path: path.into(),
            line,
            label: label.into(),
        }
    }

    #[test]
    fn python_traceback() {
        let trace = "Traceback (most recent call last):\n  File \"/app/app.py\", line 30, in home\n    data = load()\n           ^^^^^^\n  File \"/app/data.py\", line 12, in load\n    raise ValueError(\"boom\")\nValueError: boom\n";
        let parsed = parse(trace, "python");
        assert_eq!(parsed.len(), 1);
        assert_eq!(
            parsed[0].frames,
            [
                frame("/app/data.py", 12, "load"),
                frame("/app/app.py", 30, "home")
            ]
        );
    }

    #[test]
    fn python_chained() {
        let trace = "Traceback (most recent call last):\n  File \"/a.py\", line 1, in f\n    x()\nKeyError: 'k'\n\nDuring handling of the above exception, another exception occurred:\n\nTraceback (most recent call last):\n  File \"/b.py\", line 2, in g\n    y()\nRuntimeError: wrapped\n";
        let parsed = parse(trace, "python");
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0].frames, [frame("/b.py", 2, "g")]);
        assert_eq!(parsed[1].kind, "KeyError");
        assert_eq!(parsed[1].message, "'k'");
        assert_eq!(parsed[1].frames, [frame("/a.py", 1, "f")]);
    }

    #[test]
    fn java_with_cause() {
        let trace = "java.lang.RuntimeException: outer\n\tat com.ex.App.run(App.java:10)\n\tat java.base/java.lang.Thread.run(Thread.java:833)\nCaused by: java.io.IOException: disk full\n\tat com.ex.Io.write(Io.java:5)\n\t... 2 more\n";
        let parsed = parse(trace, "java");
        assert_eq!(parsed.len(), 2);
        assert_eq!(
            parsed[0].frames,
            [
                frame("App.java", 10, "com.ex.App.run"),
                frame("Thread.java", 833, "java.lang.Thread.run")
            ]
        );
        assert_eq!(parsed[1].kind, "java.io.IOException");
        assert_eq!(parsed[1].message, "disk full");
        assert_eq!(parsed[1].frames, [frame("Io.java", 5, "com.ex.Io.write")]);
    }

    #[test]
    fn javascript_dotnet_go() {
        let js = "Error: boom\n    at handler (/app/index.js:10:5)\n    at /app/index.js:20:3\n    at process.processTicksAndRejections (node:internal/process/task_queues:95:5)";
        assert_eq!(
            parse(js, "nodejs")[0].frames,
            [
                frame("/app/index.js", 10, "handler"),
                frame("/app/index.js", 20, ""),
                frame(
                    "node:internal/process/task_queues",
                    95,
                    "process.processTicksAndRejections"
                )
            ]
        );
        let net = "System.Exception: boom\n   at App.Program.Main(String[] args) in C:\\src\\Program.cs:line 10\n   at App.Other()";
        assert_eq!(
            parse(net, "dotnet")[0].frames,
            [
                frame("C:\\src\\Program.cs", 10, "App.Program.Main(String[] args)"),
                frame("", 0, "App.Other()")
            ]
        );
        let go = "goroutine 1 [running]:\nmain.main()\n\t/app/main.go:10 +0x1d\nruntime.main()\n\t/usr/go/proc.go:250 +0x207\n";
        assert_eq!(
            parse(go, "go")[0].frames,
            [
                frame("/app/main.go", 10, "main.main()"),
                frame("/usr/go/proc.go", 250, "runtime.main()")
            ]
        );
    }

    #[test]
    fn unknown_languages_and_garbage_give_one_exception_without_frames() {
        for (trace, language) in [("x", "rust"), ("", "python"), ("\u{0}\n\tat (", "java")] {
            let parsed = parse(trace, language);
            assert_eq!(parsed.len(), 1, "{language}");
            assert!(parsed[0].frames.is_empty(), "{language}");
        }
    }
}
