//! The object key (SPEC 1.3): the percent-decoded request path without its
//! leading `/`, checked before it is sent anywhere.

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Longest key S3 accepts, in bytes.
pub const MAX_KEY_LEN: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the object key is empty")]
    Empty,
    #[error("the object key is too long (1024 bytes; 2048 once a rule rewrote it)")]
    TooLong,
    #[error("the object key is not valid UTF-8")]
    NotUtf8,
    #[error("the object key contains a control character")]
    Control,
    #[error("the object key contains a `.` or `..` segment")]
    DotSegment,
    #[error("the object key starts with `/` (a path starting `//`): buckets disagree on such keys, some read them without the `/`")]
    LeadingSlash,
    #[error("the embedded bucket stores objects as files: a key with an empty segment (`//`, or a leading or trailing `/`) names no file")]
    EmptySegment,
}

/// Decodes and checks the key of a request path (`/a/b%20c` → `a/b c`).
/// The empty key (`/`) passes here: an immediate redirect rule may answer
/// it (a site's root); nothing else does ([`check_bucket_key`]).
pub fn key_from_path(path: &str) -> Result<String, KeyError> {
    let raw = path.strip_prefix('/').unwrap_or(path);
    // Borrowed when the path has no `%` (most keys): no byte-wise copy.
    let bytes: std::borrow::Cow<[u8]> = percent_decode_str(raw).into();
    if bytes.len() > MAX_KEY_LEN {
        return Err(KeyError::TooLong);
    }
    let key = std::str::from_utf8(&bytes)
        .map_err(|_| KeyError::NotUtf8)?
        .to_owned();
    // Checked after decoding, so `%2e%2e` and `%2F` tricks are caught too.
    check_key(&key)?;
    Ok(key)
}

/// The one check every key passes before it is sent anywhere: a client's
/// decoded key, and a key rewritten by a rule (`replace_key_with` and
/// friends can build from captures what the client could not send).
///
/// Empty segments pass: `a//b` and `dir/` are ordinary S3 keys (careless
/// path joins, folder markers, directory-style URLs), and S3, the origin
/// URL and the `Location` keep them as they are (the authority is fixed
/// before the key is appended). What the bucket is asked for is checked
/// further by [`check_bucket_key`], or [`check_file_key`] for storage
/// that maps keys to file paths.
pub fn check_key(key: &str) -> Result<(), KeyError> {
    check_key_within(key, MAX_KEY_LEN)
}

/// Longest key a rule's rewrite may produce for an origin URL or a
/// `Location`. Not S3's 1,024: a longer prefix turns a legal key (one
/// the bucket would serve) into a longer one, and the origin need not be
/// S3. Bounded so the URL stays inside common request-line limits (8 KiB
/// in nginx and Apache) even percent-encoded.
pub const MAX_REWRITTEN_KEY_LEN: usize = 2 * MAX_KEY_LEN;

/// [`check_key`] with a length bound of `max` bytes.
pub fn check_key_within(key: &str, max: usize) -> Result<(), KeyError> {
    if key.len() > max {
        return Err(KeyError::TooLong);
    }
    if key.chars().any(|c| c.is_control()) {
        return Err(KeyError::Control);
    }
    if key.split('/').any(|seg| seg == "." || seg == "..") {
        return Err(KeyError::DotSegment);
    }
    Ok(())
}

/// A key the bucket is asked for: [`check_key`], not empty (`GET /`
/// would be a listing), and not starting with `/`: AWS keeps such a key,
/// Garage reads `/x` as `x`, so a miss of `//x` could store one object
/// under another's key.
pub fn check_bucket_key(key: &str) -> Result<(), KeyError> {
    if key.is_empty() {
        return Err(KeyError::Empty);
    }
    if key.starts_with('/') {
        return Err(KeyError::LeadingSlash);
    }
    check_key(key)
}

/// A key of the embedded bucket, which stores each object as a file: the
/// bucket checks, and no empty segment, since a file system reads `a//b`
/// as `a/b`, `//x` as the absolute path `/x` and `dir/` as a folder.
pub fn check_file_key(key: &str) -> Result<(), KeyError> {
    check_bucket_key(key)?;
    if key.split('/').any(str::is_empty) {
        return Err(KeyError::EmptySegment);
    }
    Ok(())
}

/// RFC 3986 unreserved characters stay; everything else is encoded.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes each `/`-separated segment of a key (the form S3 signs
/// and the form origins and `Location` headers receive).
pub fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 8);
    encode_key_into(&mut out, key);
    out
}

/// [`encode_key`], appended to `out` (one allocation for a whole path).
pub fn encode_key_into(out: &mut String, key: &str) {
    for (i, seg) in key.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        out.extend(utf8_percent_encode(seg, SEGMENT));
    }
}

/// Percent-encodes a whole string, `/` included (for `x-oss-tag`).
pub fn encode_component(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_and_accepts_ordinary_keys() {
        assert_eq!(key_from_path("/a/b%20c+d%25.txt").unwrap(), "a/b c+d%.txt");
        assert_eq!(key_from_path("/%E4%BD%A0%E5%A5%BD").unwrap(), "你好");
        assert_eq!(key_from_path("/a/..b/c.").unwrap(), "a/..b/c.");
    }

    #[test]
    fn rejects_bad_keys() {
        for (p, e) in [
            ("/../x", KeyError::DotSegment),
            ("/a/./b", KeyError::DotSegment),
            ("/%2e%2e/x", KeyError::DotSegment),
            ("/%2E%2E%2Fx", KeyError::DotSegment),
            ("/a/..", KeyError::DotSegment),
            ("/a%00b", KeyError::Control),
            ("/a%0d%0ab", KeyError::Control),
            ("/a%ffb", KeyError::NotUtf8),
        ] {
            assert_eq!(key_from_path(p), Err(e), "{p}");
        }
        assert_eq!(
            key_from_path(&format!("/{}", "k".repeat(1025))),
            Err(KeyError::TooLong)
        );
        assert!(key_from_path(&format!("/{}", "k".repeat(1024))).is_ok());
    }

    #[test]
    fn empty_segments_are_keys_of_a_bucket_not_of_files() {
        for (p, k) in [
            ("/", ""),
            ("/dir/", "dir/"),
            ("/a//b", "a//b"),
            ("/a%2F%2Fb", "a//b"),
            ("//etc/passwd", "/etc/passwd"),
            ("/%2Fetc/passwd", "/etc/passwd"),
        ] {
            assert_eq!(key_from_path(p).unwrap(), k, "{p}");
            assert!(check_file_key(k).is_err(), "{p}");
        }
        assert_eq!(check_bucket_key(""), Err(KeyError::Empty));
        assert_eq!(check_file_key(""), Err(KeyError::Empty));
        assert!(check_bucket_key("dir/").is_ok());
        assert!(check_bucket_key("a//b").is_ok());
        assert_eq!(check_bucket_key("/etc/passwd"), Err(KeyError::LeadingSlash));
        assert_eq!(check_file_key("/etc/passwd"), Err(KeyError::LeadingSlash));
        assert_eq!(check_file_key("a//b"), Err(KeyError::EmptySegment));
        assert!(check_file_key("a/b").is_ok());
        assert_eq!(encode_key("/a//b/"), "/a//b/");
    }

    #[test]
    fn encodes_segments() {
        assert_eq!(encode_key("a b/c+d/你"), "a%20b/c%2Bd/%E4%BD%A0");
        assert_eq!(encode_key("~a-b_c.d"), "~a-b_c.d");
        assert_eq!(
            encode_component("http://www.example.com/dir1/image/a.jpg"),
            "http%3A%2F%2Fwww.example.com%2Fdir1%2Fimage%2Fa.jpg"
        );
    }
}
