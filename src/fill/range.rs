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

#[cfg(test)]
mod tests {
    use super::RangeAnswer::*;
    use super::*;

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
