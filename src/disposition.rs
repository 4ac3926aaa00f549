//! `Content-Disposition` for storage: a bucket keeps one ASCII value per
//! header, and many origins send a file name as raw UTF-8.

use http::HeaderValue;

/// A `Content-Disposition` as ASCII: a parameter sent as raw UTF-8 (as
/// many servers send `filename="报告.pdf"`) becomes its RFC 8187 form,
/// `filename*=UTF-8''%E6%8A%A5...`, which every browser reads. Header
/// values travel as ASCII to the bucket (S3 refuses others), and such a
/// header used to be dropped: later downloads lost their file name. None
/// for a value that is not UTF-8.
pub fn ascii(v: &HeaderValue) -> Option<String> {
    if let Ok(s) = v.to_str() {
        return Some(s.to_string());
    }
    let s = std::str::from_utf8(v.as_bytes()).ok()?;
    let mut parts = split_params(s).into_iter();
    let mut out = parts.next()?.trim().to_string();
    if !out.is_ascii() {
        return None;
    }
    let params: Vec<(&str, &str, &str)> = parts
        .map(str::trim)
        .filter(|p| !p.is_empty()) // a trailing `;`
        .map(|p| {
            let (name, value) = p.split_once('=')?;
            Some((p, name.trim(), value.trim()))
        })
        .collect::<Option<_>>()?;
    for &(p, name, value) in &params {
        if value.is_ascii() {
            out.push_str("; ");
            out.push_str(p);
            continue;
        }
        if !name.is_ascii() || name.ends_with('*') {
            return None;
        }
        // The sender gave the extended form too (`filename*=`): that one
        // stands; a second would make the header invalid (RFC 6266).
        let extended = format!("{name}*");
        if params
            .iter()
            .any(|(_, n, _)| n.eq_ignore_ascii_case(&extended))
        {
            continue;
        }
        out.push_str("; ");
        let unquoted = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .map_or_else(
                || value.to_string(),
                |v| v.replace("\\\"", "\"").replace("\\\\", "\\"),
            );
        out.push_str(&format!("{name}*=UTF-8''"));
        out.extend(percent_encoding::utf8_percent_encode(&unquoted, RFC8187));
    }
    Some(out)
}

/// Characters RFC 8187 leaves unencoded in an extended value (attr-char).
const RFC8187: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// `s` split at the `;` that are not inside a quoted string.
fn split_params(s: &str) -> Vec<&str> {
    let (mut out, mut start, mut quoted, mut escaped) = (Vec::new(), 0, false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ';' if !quoted => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}
