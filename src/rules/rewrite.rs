//! Key rewriting (`replace_key_prefix_with`, `replace_key_with`): the
//! object key becomes the key sent to an origin or put in a `Location`.

use super::KeyRewrite;
use crate::key::{check_key_within, KeyError, MAX_REWRITTEN_KEY_LEN};

impl KeyRewrite {
    /// The rewritten key. `captures[0]` is the whole match, `[1]`.. groups.
    /// A rewritten key passes the same check as a client's key (prefixes
    /// and captures can join into a `..` segment that the client could not
    /// send, and the result goes to an origin or into a `Location`), with
    /// a longer length bound ([`MAX_REWRITTEN_KEY_LEN`]).
    pub fn apply(&self, key: &str, captures: &[String]) -> Result<String, KeyError> {
        let out = match self {
            // Already checked when it was decoded.
            KeyRewrite::Keep => return Ok(key.to_string()),
            KeyRewrite::Prefix { from, to } => match key.strip_prefix(from.as_str()) {
                Some(rest) => format!("{to}{rest}"),
                None => return Ok(key.to_string()),
            },
            KeyRewrite::Template(t) => substitute(t, key, captures),
        };
        check_key_within(&out, MAX_REWRITTEN_KEY_LEN)?;
        Ok(out)
    }
}

/// A piece of a `replace_key_with` template.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece<'t> {
    Text(&'t str),
    Key,
    /// `$N` (one digit) or `${N}`.
    Capture(usize),
}

/// Splits a template into its pieces: `${key}`, `$1`..`$9`, `${N}`; any
/// other `$` is text. The config check refuses captures the rule's
/// `key_regex` does not have.
pub fn pieces(template: &str) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(pos) = rest.find('$') {
        if pos > 0 {
            out.push(Piece::Text(&rest[..pos]));
        }
        let after = &rest[pos + 1..];
        let braced = after
            .strip_prefix('{')
            .and_then(|a| a.split_once('}'))
            .filter(|(name, _)| *name == "key" || name.parse::<usize>().is_ok());
        if let Some((name, tail)) = braced {
            out.push(match name.parse::<usize>() {
                Ok(n) => Piece::Capture(n),
                Err(_) => Piece::Key,
            });
            rest = tail;
        } else if let Some(d) = after.chars().next().and_then(|c| c.to_digit(10)) {
            out.push(Piece::Capture(d as usize));
            rest = &after[1..];
        } else {
            out.push(Piece::Text("$"));
            rest = after;
        }
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest));
    }
    out
}

fn substitute(template: &str, key: &str, captures: &[String]) -> String {
    let mut out = String::with_capacity(template.len() + key.len());
    for piece in pieces(template) {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Key => out.push_str(key),
            Piece::Capture(n) => out.push_str(captures.get(n).map_or("", String::as_str)),
        }
    }
    out
}
