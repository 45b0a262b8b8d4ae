//! `-R`: ipvsadm-save output (or any file of ipvsadm command lines) →
//! `Vec<Command>`.
//!
//! # Format
//! One ipvsadm invocation per line, words separated by blanks (spaces,
//! tabs, carriage returns; there is no quoting, as in ipvsadm). A leading
//! `ipvsadm` word is dropped, so both `-A -t …` and `ipvsadm -A -t …` work.
//! Blank lines are skipped.
//!
//! # Where xvsadm differs from ipvsadm, and why
//! - **Comments.** ipvsadm's reader means to ignore everything from `#` on,
//!   but its test never matches, so a comment line reaches the option
//!   parser and fails. xvsadm does what was meant: a word starting with `#`
//!   ends the line.
//! - **`ipvsadm` words.** ipvsadm drops the word `ipvsadm` wherever it
//!   appears on a line; xvsadm only as the first word (a scheduler named
//!   `ipvsadm` would otherwise vanish).
//! - **All errors, not the first.** ipvsadm applies lines until one fails
//!   and stops there, leaving a half-restored table. Here the whole input
//!   is parsed first and every bad line is reported with its number, so the
//!   caller can refuse the file before touching the director.
//! - `-R`, `-h` and `--version` inside a restore file are refused (ipvsadm
//!   refuses the first, and would print help and stop at the others).

use core::fmt;

use super::args::{Command, ParseError, Resolver, parse_args_with};

/// A restore input with at least one bad line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreError {
    /// Every bad line, in order.
    pub errors: Vec<LineError>,
}

/// One bad line of a restore input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {error}")]
pub struct LineError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub error: RestoreLineError,
}

/// What is wrong with a restore line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestoreLineError {
    /// The line is not a valid ipvsadm command.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// A command that makes no sense inside a restore file.
    #[error("{0} cannot be used in a restore file")]
    NotRestorable(&'static str),
}

impl fmt::Display for RestoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for RestoreError {}

/// Parses a restore input, numeric addresses only.
pub fn parse_restore(input: &str) -> Result<Vec<Command>, RestoreError> {
    parse_restore_with(input, &super::args::NoNames)
}

/// [`parse_restore`] with names looked up by `resolver`.
pub fn parse_restore_with(
    input: &str,
    resolver: &dyn Resolver,
) -> Result<Vec<Command>, RestoreError> {
    let mut commands = Vec::new();
    let mut errors = Vec::new();
    for (index, line) in input.lines().enumerate() {
        let mut words: Vec<&str> = line
            .split([' ', '\t', '\r'])
            .filter(|word| !word.is_empty())
            .take_while(|word| !word.starts_with('#'))
            .collect();
        if words.first() == Some(&"ipvsadm") {
            words.remove(0);
        }
        if words.is_empty() {
            continue;
        }
        let result = match parse_args_with(&words, resolver) {
            Ok(Command::Restore) => Err(RestoreLineError::NotRestorable("-R")),
            Ok(Command::Help) => Err(RestoreLineError::NotRestorable("-h")),
            Ok(Command::Version) => Err(RestoreLineError::NotRestorable("--version")),
            Ok(command) => Ok(command),
            Err(error) => Err(error.into()),
        };
        match result {
            Ok(command) => commands.push(command),
            Err(error) => errors.push(LineError {
                line: index + 1,
                error,
            }),
        }
    }
    if errors.is_empty() {
        Ok(commands)
    } else {
        Err(RestoreError { errors })
    }
}
