//! popt's view of argv: words into options (long, short clusters,
//! inline and optional values) and positionals.

use super::*;

#[derive(Debug)]
pub(super) enum Token {
    Option { id: OptId, value: Option<String> },
    Positional(String),
}

pub(super) struct Tokenizer<'a, S> {
    args: &'a [S],
    next: usize,
    /// The rest of a short-option cluster being read, and its word.
    cluster: Option<(String, String)>,
    /// After `--`: every word is positional.
    only_positionals: bool,
}

impl<'a, S: AsRef<str>> Tokenizer<'a, S> {
    pub(super) fn new(args: &'a [S]) -> Self {
        Self {
            args,
            next: 0,
            cluster: None,
            only_positionals: false,
        }
    }

    pub(super) fn take_word(&mut self) -> Option<&'a str> {
        let word = self.args.get(self.next)?.as_ref();
        self.next += 1;
        Some(word)
    }

    /// The value of an option whose own word is used up.
    pub(super) fn next_value(
        &mut self,
        arity: Arity,
        word: &str,
    ) -> Result<Option<String>, ParseError> {
        match arity {
            Arity::None => Ok(None),
            Arity::Required => match self.take_word() {
                Some(value) => Ok(Some(value.to_owned())),
                None => Err(ParseError::MissingArgument(word.to_owned())),
            },
            Arity::Optional => match self.args.get(self.next).map(AsRef::as_ref) {
                Some(value) if !value.starts_with('-') => {
                    self.next += 1;
                    Ok(Some(value.to_owned()))
                }
                _ => Ok(None),
            },
        }
    }

    pub(super) fn next_token(&mut self) -> Result<Option<Token>, ParseError> {
        if let Some((rest, word)) = self.cluster.take() {
            return self.short(&rest, &word).map(Some);
        }
        let Some(word) = self.take_word() else {
            return Ok(None);
        };
        if self.only_positionals {
            return Ok(Some(Token::Positional(word.to_owned())));
        }
        if word == "--" {
            self.only_positionals = true;
            return self.next_token();
        }
        if let Some(long) = word.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (long, None),
            };
            let Some(spec) = OPTIONS.iter().find(|spec| spec.long == name) else {
                return Err(ParseError::UnknownOption(word.to_owned()));
            };
            let value = match (inline, spec.arity) {
                (Some(_), Arity::None) => {
                    return Err(ParseError::UnwantedArgument(word.to_owned()));
                }
                (Some(value), _) => Some(value.to_owned()),
                (None, arity) => self.next_value(arity, word)?,
            };
            return Ok(Some(Token::Option { id: spec.id, value }));
        }
        if word.len() > 1 && word.starts_with('-') {
            return self.short(&word[1..], word).map(Some);
        }
        Ok(Some(Token::Positional(word.to_owned())))
    }

    /// The first option of a short cluster `rest` (from argv word `word`).
    pub(super) fn short(&mut self, rest: &str, word: &str) -> Result<Token, ParseError> {
        let mut chars = rest.chars();
        let Some(letter) = chars.next() else {
            return Err(ParseError::UnknownOption(word.to_owned()));
        };
        let tail = chars.as_str();
        let Some(spec) = OPTIONS.iter().find(|spec| spec.short == Some(letter)) else {
            return Err(ParseError::UnknownOption(word.to_owned()));
        };
        let value = match spec.arity {
            Arity::None => {
                if !tail.is_empty() {
                    self.cluster = Some((tail.to_owned(), word.to_owned()));
                }
                None
            }
            _ if !tail.is_empty() => Some(tail.to_owned()),
            arity => self.next_value(arity, word)?,
        };
        Ok(Token::Option { id: spec.id, value })
    }
}
