//! The command line as the original daemon reads it (Go's `flag` package), rewritten into the
//! one form clap is given.
//!
//! In: the raw arguments (without the program name). Out: an [`Invocation`]: a subcommand
//! (recognised only as the first argument), or the daemon's flags in canonical form
//! (`--long=value`) plus the words that were ignored; or a [`UsageError`] (exit 2).
//!
//! The rules, as the original's:
//! - any flag name takes one or two dashes: `-b`, `--b`, `-bind`, `--bind`;
//! - a value follows as the next word or after `=`: `-n us-east-1`, `-n=us-east-1`; the next
//!   word is taken as the value even if it starts with `-` (`-m -1`);
//! - a boolean flag takes no separate word: `-o` is true; `-o=false`, `--local-mode=1`, … use
//!   Go's spellings (1, t, T, TRUE, true, True, 0, f, F, FALSE, false, False);
//! - a repeated flag (or its short and long forms together): the last one wins;
//! - parsing stops at the first word that is not a flag (or after `--`); the original ignores
//!   the rest silently, we return them so the caller can warn naming them.

use std::ffi::OsString;

/// Words that name a subcommand when they come first. The handler lives elsewhere (for
/// example `health`); this module only recognises the name.
pub const SUBCOMMANDS: &[&str] = &["health"];

/// One flag the daemon knows: its one-letter and long names, and what it takes.
#[derive(Debug, Clone)]
struct Flag {
    short: Option<String>,
    long: String,
    kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Takes a value (next word or `=value`).
    Value,
    /// Takes a value and may be given several times, each kept.
    Repeated,
    /// A Go-style boolean: no separate word; `=value` optional; passed on as `--name=BOOL`.
    Bool,
    /// A Go-style boolean that clap takes as a plain switch: passed on as `--name` when true.
    Switch,
    /// `-h`/`--help`: no value.
    Help,
}

/// The flags, read from the clap definition ([`super::cli::Cli`]) so the two never disagree.
fn flags() -> &'static [Flag] {
    static FLAGS: std::sync::OnceLock<Vec<Flag>> = std::sync::OnceLock::new();
    FLAGS.get_or_init(|| {
        use clap::{ArgAction, CommandFactory};
        let command = super::cli::Cli::command();
        let mut flags: Vec<Flag> = command
            .get_arguments()
            .filter_map(|arg| {
                let long = arg.get_long()?.to_owned();
                let kind = match arg.get_action() {
                    ArgAction::SetTrue => Kind::Switch,
                    ArgAction::Append => Kind::Repeated,
                    ArgAction::Help | ArgAction::HelpShort | ArgAction::HelpLong => Kind::Help,
                    // An optional value with a default when missing: `-o`, `-o=false`.
                    _ if arg.get_num_args().is_some_and(|n| n.min_values() == 0) => Kind::Bool,
                    _ => Kind::Value,
                };
                Some(Flag {
                    short: arg.get_short().map(String::from),
                    long,
                    kind,
                })
            })
            .collect();
        if !flags.iter().any(|f| f.kind == Kind::Help) {
            flags.push(Flag {
                short: Some("h".into()),
                long: "help".into(),
                kind: Kind::Help,
            });
        }
        flags
    })
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invocation {
    /// Run the daemon with these canonical arguments (program name first, for clap).
    Daemon {
        /// `xray --long=value …`, each flag once (the last given), repeatable ones in order.
        args: Vec<OsString>,
        /// The words after the first non-flag word (or after `--`), which are not used.
        ignored: Vec<String>,
    },
    /// A subcommand given as the first argument, with the arguments after it.
    Subcommand {
        /// Its name (one of [`SUBCOMMANDS`]).
        name: &'static str,
        /// The words after it.
        args: Vec<OsString>,
    },
}

/// A command line the original would refuse too (exit 2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsageError {
    /// A flag name nobody defined.
    #[error("unknown flag {0}; run `xray --help` for the flags")]
    Unknown(String),
    /// A flag that needs a value at the end of the line.
    #[error("the flag {0} needs a value, for example {0} VALUE or {0}=VALUE")]
    MissingValue(String),
    /// A boolean flag with a value that is not a boolean.
    #[error(
        "invalid value {value:?} for {flag}: write {flag} alone for true, or {flag}=true / {flag}=false"
    )]
    BadBool {
        /// The flag as written.
        flag: String,
        /// The value.
        value: String,
    },
    /// A word that is not valid text.
    #[error("an argument is not valid UTF-8 text: {0:?}")]
    NotText(OsString),
    /// `---x` and the like.
    #[error("bad flag syntax {0}; flags start with - or --")]
    Syntax(String),
}

/// Reads the raw arguments (without the program name); see the module docs.
pub fn normalize<I>(raw: I) -> Result<Invocation, UsageError>
where
    I: IntoIterator<Item = OsString>,
{
    let raw: Vec<OsString> = raw.into_iter().collect();
    if let Some(first) = raw.first().and_then(|a| a.to_str())
        && let Some(name) = SUBCOMMANDS.iter().find(|s| **s == first)
    {
        return Ok(Invocation::Subcommand {
            name,
            args: raw[1..].to_vec(),
        });
    }
    // (flag index, value) in command-line order; a later single-valued one replaces.
    let mut seen: Vec<(usize, Option<String>)> = Vec::new();
    let mut ignored = Vec::new();
    let mut words = raw.into_iter();
    while let Some(word) = words.next() {
        let word = word.into_string().map_err(UsageError::NotText)?;
        if word == "--" {
            ignored.extend(words.map(|w| w.to_string_lossy().into_owned()));
            break;
        }
        let Some(body) = word.strip_prefix('-').filter(|b| !b.is_empty()) else {
            ignored.push(word);
            ignored.extend(words.map(|w| w.to_string_lossy().into_owned()));
            break;
        };
        let body = body.strip_prefix('-').unwrap_or(body);
        if body.is_empty() || body.starts_with('-') || body.starts_with('=') {
            return Err(UsageError::Syntax(word));
        }
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_owned())),
            None => (body, None),
        };
        let flags = flags();
        let index = flags
            .iter()
            .position(|f| f.long == name || f.short.as_deref() == Some(name))
            .ok_or_else(|| UsageError::Unknown(format!("-{name}")))?;
        let shown = format!("-{name}");
        let value = match flags[index].kind {
            Kind::Help => None,
            Kind::Bool | Kind::Switch => {
                let v = match inline.as_deref() {
                    None => true,
                    Some(v) => parse_go_bool(v).ok_or_else(|| UsageError::BadBool {
                        flag: shown,
                        value: v.to_owned(),
                    })?,
                };
                Some(v.to_string())
            }
            Kind::Value | Kind::Repeated => match inline {
                Some(v) => Some(v),
                None => match words.next() {
                    Some(v) => Some(v.into_string().map_err(UsageError::NotText)?),
                    None => return Err(UsageError::MissingValue(shown)),
                },
            },
        };
        if flags[index].kind != Kind::Repeated {
            seen.retain(|(i, _)| *i != index);
        }
        seen.push((index, value));
    }
    let mut args: Vec<OsString> = vec!["xray".into()];
    for (index, value) in seen {
        let flag = &flags()[index];
        match (flag.kind, value) {
            (Kind::Help, _) => args.push("--help".into()),
            // `-v=false` means no version request, `--no-verify-ssl=false` no change.
            (Kind::Switch, Some(v)) => {
                if v == "true" {
                    args.push(format!("--{}", flag.long).into());
                }
            }
            (_, Some(v)) => args.push(format!("--{}={v}", flag.long).into()),
            (_, None) => args.push(format!("--{}", flag.long).into()),
        }
    }
    Ok(Invocation::Daemon { args, ignored })
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn daemon(words: &[&str]) -> (Vec<String>, Vec<String>) {
        match normalize(words.iter().map(OsString::from)) {
            Ok(Invocation::Daemon { args, ignored }) => (
                args.into_iter()
                    .skip(1)
                    .map(|a| a.to_string_lossy().into_owned())
                    .collect(),
                ignored,
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_spelling_becomes_the_long_form() {
        for spelling in [
            &["-b", "1.2.3.4:5"][..],
            &["--b", "1.2.3.4:5"],
            &["-bind", "1.2.3.4:5"],
            &["--bind", "1.2.3.4:5"],
            &["-b=1.2.3.4:5"],
            &["--bind=1.2.3.4:5"],
        ] {
            assert_eq!(daemon(spelling).0, vec!["--bind=1.2.3.4:5"], "{spelling:?}");
        }
        assert_eq!(daemon(&["-m", "-1"]).0, vec!["--buffer-memory=-1"]);
        assert_eq!(
            daemon(&["-endpoint", "http://x"]).0,
            vec!["--endpoint=http://x"]
        );
    }

    #[test]
    fn booleans_the_go_way() {
        assert_eq!(daemon(&["-o"]).0, vec!["--local-mode=true"]);
        assert_eq!(daemon(&["-o=false"]).0, vec!["--local-mode=false"]);
        assert_eq!(daemon(&["--local-mode=T"]).0, vec!["--local-mode=true"]);
        assert_eq!(daemon(&["-local-mode=0"]).0, vec!["--local-mode=false"]);
        assert_eq!(daemon(&["-v"]).0, vec!["--version"]);
        assert!(daemon(&["-v=false"]).0.is_empty());
        assert_eq!(daemon(&["-help"]).0, vec!["--help"]);
        assert_eq!(daemon(&["--h"]).0, vec!["--help"]);
        // `-o false`: -o is true, and `false` is the first non-flag word.
        assert_eq!(
            daemon(&["-o", "false", "-n", "x"]),
            (
                vec!["--local-mode=true".to_owned()],
                vec!["false".to_owned(), "-n".to_owned(), "x".to_owned()]
            )
        );
        assert!(matches!(
            normalize(["-o=maybe"].map(OsString::from)),
            Err(UsageError::BadBool { .. })
        ));
    }

    #[test]
    fn last_wins_and_repeatable_ones_accumulate() {
        assert_eq!(
            daemon(&[
                "-b",
                "a:1",
                "-t",
                "c:3",
                "--bind",
                "b:2",
                "--sink",
                "stdout",
                "--sink=file:/x"
            ])
            .0,
            vec![
                "--bind-tcp=c:3",
                "--bind=b:2",
                "--sink=stdout",
                "--sink=file:/x"
            ]
        );
    }

    #[test]
    fn stops_at_the_first_word_and_after_double_dash() {
        assert_eq!(
            daemon(&["-n", "x", "extra", "-b", "y"]),
            (
                vec!["--region=x".to_owned()],
                vec!["extra".to_owned(), "-b".to_owned(), "y".to_owned()]
            )
        );
        assert_eq!(daemon(&["--", "-n", "x"]).1, vec!["-n", "x"]);
        assert_eq!(daemon(&["-"]).1, vec!["-"]);
    }

    #[test]
    fn usage_errors() {
        let e = |w: &[&str]| normalize(w.iter().map(OsString::from));
        assert_eq!(e(&["-x"]), Err(UsageError::Unknown("-x".into())));
        assert_eq!(e(&["--bindx=1"]), Err(UsageError::Unknown("-bindx".into())));
        assert_eq!(e(&["-n"]), Err(UsageError::MissingValue("-n".into())));
        assert_eq!(e(&["---n"]), Err(UsageError::Syntax("---n".into())));
        assert_eq!(e(&["-=x"]), Err(UsageError::Syntax("-=x".into())));
    }

    #[test]
    fn subcommand_only_first() {
        assert_eq!(
            normalize(["health", "-t", "x"].map(OsString::from)),
            Ok(Invocation::Subcommand {
                name: "health",
                args: vec!["-t".into(), "x".into()]
            })
        );
        assert_eq!(daemon(&["-n", "x", "health"]).1, vec!["health"]);
    }
}
