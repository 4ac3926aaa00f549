//! Finds the `line:column` of a field in the YAML source.
//!
//! serde_yaml keeps no spans after parsing, but it stamps every error raised
//! while a node is being deserialized with that node's start mark. So to
//! locate `sites[0].rules[2].mirror.url` we deserialize the document once
//! more with a seed that walks that path and fails on purpose when it gets
//! there; the failure carries the position. Only runs on the error path.

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::fmt;

/// One step of a path into the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
    /// The second occurrence of a key in one mapping (a duplicate).
    Again(String),
}

/// A path such as `sites[0].rules[1].mirror.url`, kept as segments.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldPath(pub Vec<Seg>);

impl FieldPath {
    pub fn key(&self, k: &str) -> FieldPath {
        let mut v = self.0.clone();
        v.push(Seg::Key(k.to_string()));
        FieldPath(v)
    }
    pub fn index(&self, i: usize) -> FieldPath {
        let mut v = self.0.clone();
        v.push(Seg::Index(i));
        FieldPath(v)
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) | Seg::Again(k) if i == 0 => write!(f, "{k}")?,
                Seg::Key(k) | Seg::Again(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

const HERE: &str = "\u{0}origin-pull-locate-here";

/// Where serde_yaml's "duplicate field" error `message` (`[path: ]duplicate
/// field `key``) points: the duplicate's value. serde_yaml itself points at
/// the mapping that holds it (1:1 for a top-level key).
pub fn duplicate(src: &str, message: &str) -> Option<(usize, usize)> {
    let (path, rest) = match message.split_once(": duplicate field `") {
        Some((p, r)) => (p, r),
        None => ("", message.strip_prefix("duplicate field `")?),
    };
    let key = rest.strip_suffix('`')?;
    let mut segs = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (name, indexes) = part.split_once('[').unwrap_or((part, ""));
        segs.push(Seg::Key(name.to_string()));
        for i in indexes.split('[') {
            if let Some(n) = i.strip_suffix(']') {
                segs.push(Seg::Index(n.parse().ok()?));
            }
        }
    }
    segs.push(Seg::Again(key.to_string()));
    locate(src, &FieldPath(segs))
}

/// 1-based (line, column) of the node at `path`, or of its nearest existing
/// ancestor when the field itself is absent (a default was used).
pub fn locate(src: &str, path: &FieldPath) -> Option<(usize, usize)> {
    let de = serde_yaml::Deserializer::from_str(src);
    let err = match (Walk { path: &path.0 }).deserialize(de) {
        Ok(()) => return None,
        Err(e) => e,
    };
    err.location().map(|l| (l.line(), l.column()))
}

struct Walk<'p> {
    path: &'p [Seg],
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any node")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let (want, mut skip, rest) = match self.path.split_first() {
            Some((Seg::Key(k), rest)) => (k, 0, rest),
            Some((Seg::Again(k), rest)) => (k, 1, rest),
            _ => return Err(de::Error::custom(HERE)),
        };
        while let Some(k) = map.next_key::<String>()? {
            if &k == want {
                if skip == 0 {
                    return map.next_value_seed(Walk { path: rest });
                }
                skip -= 1;
            }
            map.next_value::<IgnoredAny>()?;
        }
        // The field is absent: point at this mapping.
        Err(de::Error::custom(HERE))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some((Seg::Index(want), rest)) = self.path.split_first() else {
            return Err(de::Error::custom(HERE));
        };
        for _ in 0..*want {
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Err(de::Error::custom(HERE));
            }
        }
        match seq.next_element_seed(Walk { path: rest })? {
            Some(()) => Ok(()),
            None => Err(de::Error::custom(HERE)),
        }
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(HERE))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(segs: &[Seg]) -> FieldPath {
        FieldPath(segs.to_vec())
    }

    #[test]
    fn finds_nested_fields() {
        let src =
            "a: 1\nsites:\n  - name: x\n    rules:\n      - mirror:\n          url: \"ftp://x\"\n";
        let path = p(&[
            Seg::Key("sites".into()),
            Seg::Index(0),
            Seg::Key("rules".into()),
            Seg::Index(0),
            Seg::Key("mirror".into()),
            Seg::Key("url".into()),
        ]);
        assert_eq!(locate(src, &path), Some((6, 16)));
        assert_eq!(path.to_string(), "sites[0].rules[0].mirror.url");
    }

    #[test]
    fn duplicates_point_at_the_second_key() {
        let src = "listen: [a]\nsites:\n  - bucket: { local: x, local: y }\nlisten: [b]\n";
        assert_eq!(duplicate(src, "duplicate field `listen`"), Some((4, 9)));
        assert_eq!(
            duplicate(src, "sites[0].bucket: duplicate field `local`"),
            Some((3, 32))
        );
        assert_eq!(duplicate(src, "something else"), None);
    }

    #[test]
    fn absent_field_points_at_parent() {
        let src = "sites:\n  - name: x\n";
        let path = p(&[
            Seg::Key("sites".into()),
            Seg::Index(0),
            Seg::Key("bucket".into()),
        ]);
        assert_eq!(locate(src, &path), Some((2, 5)));
    }
}
