//! `Range` on a miss: a single byte range is answered from the fill (206),
//! an unsatisfiable one with 416; several ranges, a syntax we don't take,
//! or a body of unknown length get the whole object (200), which RFC 9110
//! allows. The origin never sees the client's Range.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeAnswer {
    Full,
    /// Inclusive byte positions.
    Partial {
        start: u64,
        end: u64,
    },
    Unsatisfiable,
}

pub fn resolve(header: Option<&str>, len: Option<u64>) -> RangeAnswer {
    let (Some(h), Some(len)) = (header, len) else {
        return RangeAnswer::Full;
    };
    let h = h.trim();
    let Some(spec) = h
        .get(..6)
        .filter(|p| p.eq_ignore_ascii_case("bytes="))
        .map(|_| h[6..].trim())
    else {
        return RangeAnswer::Full;
    };
    if spec.contains(',') {
        return RangeAnswer::Full;
    }
    let Some((a, b)) = spec.split_once('-') else {
        return RangeAnswer::Full;
    };
    let num = |s: &str| -> Option<u64> {
        let s = s.trim();
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    match (a.trim().is_empty(), b.trim().is_empty()) {
        // bytes=-n: the last n bytes.
        (true, false) => match num(b) {
            Some(0) => RangeAnswer::Unsatisfiable,
            Some(_) if len == 0 => RangeAnswer::Unsatisfiable,
            Some(n) => RangeAnswer::Partial {
                start: len.saturating_sub(n),
                end: len - 1,
            },
            None => RangeAnswer::Full,
        },
        // bytes=a-
        (false, true) => match num(a) {
            Some(s) if s >= len => RangeAnswer::Unsatisfiable,
            Some(s) => RangeAnswer::Partial {
                start: s,
                end: len - 1,
            },
            None => RangeAnswer::Full,
        },
        (false, false) => match (num(a), num(b)) {
            (Some(s), Some(e)) if s <= e => {
                if s >= len {
                    RangeAnswer::Unsatisfiable
                } else {
                    RangeAnswer::Partial {
                        start: s,
                        end: e.min(len - 1),
                    }
                }
            }
            _ => RangeAnswer::Full,
        },
        (true, true) => RangeAnswer::Full,
    }
}

/// Whether `h` is a `bytes` range set as RFC 9110 §14.1.1 writes it
/// (`first-last` with first <= last, `first-`, `-suffix`, separated by
/// commas). A hit passes only such a Range to the bucket: RFC 9110 §14.2
/// says a Range with another unit or a bad syntax is ignored (the whole
/// object), where S3 buckets answer 416, so a hit and a miss disagreed.
pub fn is_byte_range_set(h: &str) -> bool {
    let h = h.trim();
    let Some(set) = h
        .get(..6)
        .filter(|p| p.eq_ignore_ascii_case("bytes="))
        .map(|_| &h[6..])
    else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    set.split(',').all(|spec| {
        let Some((a, b)) = spec.trim().split_once('-') else {
            return false;
        };
        match (a.is_empty(), b.is_empty()) {
            (true, false) => digits(b),
            (false, true) => digits(a),
            (false, false) if digits(a) && digits(b) => {
                // Compared as numbers; a position past u64 is no range.
                matches!((a.parse::<u64>(), b.parse::<u64>()), (Ok(x), Ok(y)) if x <= y)
            }
            _ => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::RangeAnswer::*;
    use super::*;

    #[test]
    fn byte_range_set_syntax() {
        for ok in [
            "bytes=0-5",
            "bytes=-5",
            "bytes=5-",
            "bytes=0-0,2-3",
            "BYTES=1-2",
            " bytes=1-1 ",
        ] {
            assert!(is_byte_range_set(ok), "{ok}");
        }
        for bad in [
            "items=0-5",
            "bytes=abc",
            "bytes=10-5",
            "bytes=",
            "bytes=-",
            "bytes=1",
            "bytes=0-1,",
            "0-5",
        ] {
            assert!(!is_byte_range_set(bad), "{bad}");
        }
    }

    #[test]
    fn single_ranges() {
        let r = |h: &str| resolve(Some(h), Some(5000));
        assert_eq!(
            r("bytes=1000-1999"),
            Partial {
                start: 1000,
                end: 1999
            }
        );
        assert_eq!(
            r("bytes=-100"),
            Partial {
                start: 4900,
                end: 4999
            }
        );
        assert_eq!(
            r("bytes=4000-"),
            Partial {
                start: 4000,
                end: 4999
            }
        );
        assert_eq!(
            r("bytes=4000-99999"),
            Partial {
                start: 4000,
                end: 4999
            }
        );
        assert_eq!(
            r("bytes=-99999"),
            Partial {
                start: 0,
                end: 4999
            }
        );
        assert_eq!(r("bytes=5000-"), Unsatisfiable);
        assert_eq!(r("bytes=-0"), Unsatisfiable);
        assert_eq!(r("bytes=0-1,5-9"), Full);
        assert_eq!(r("bytes=9-5"), Full);
        assert_eq!(r("items=0-5"), Full);
        assert_eq!(r("bytes=x-5"), Full);
        assert_eq!(resolve(Some("bytes=0-5"), None), Full);
        assert_eq!(resolve(None, Some(5)), Full);
        assert_eq!(resolve(Some("bytes=0-"), Some(0)), Unsatisfiable);
    }
}
