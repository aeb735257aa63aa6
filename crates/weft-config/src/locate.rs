//! Key paths (`routers[0].client.connectTimeout`) and finding where one sits in the YAML text.
//!
//! Errors found after deserializing (duplicate labels, a bad dtab, ...) know their key path
//! but not their position. To find it, the text is walked a second time by the same YAML
//! deserializer with a seed that follows the key path and fails on purpose when it reaches
//! the value: the deserializer stamps that failure with the value's line and column. This
//! handles block and flow style, quoting and aliases exactly as the first pass did.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    Key(&'static str),
    Index(usize),
}

/// A path from the document root to a value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct KeyPath(Vec<Seg>);

impl KeyPath {
    pub(crate) fn key(&self, k: &'static str) -> KeyPath {
        let mut p = self.clone();
        p.0.push(Seg::Key(k));
        p
    }

    /// Drops the last step; false if there was none.
    pub(crate) fn pop(&mut self) -> bool {
        self.0.pop().is_some()
    }

    pub(crate) fn index(&self, i: usize) -> KeyPath {
        let mut p = self.clone();
        p.0.push(Seg::Index(i));
        p
    }
}

impl fmt::Display for KeyPath {
    /// The same spelling as serde_path_to_error: `a.b[0].c`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if i == 0 => f.write_str(k)?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// Where a value starts in the text: 1-based line and column, and the byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pos {
    pub(crate) line: usize,
    pub(crate) column: usize,
    pub(crate) index: usize,
}

const HIT: &str = "weft-config: located";

/// The position of the value at `path` in `text`, or `None` if there is no such value (or
/// the text does not parse).
pub(crate) fn locate(text: &str, path: &KeyPath) -> Option<Pos> {
    let de = serde_yaml_ng::Deserializer::from_str(text);
    match (Walk { rest: &path.0 }).deserialize(de) {
        Ok(()) => None,
        Err(e) if e.to_string().contains(HIT) => e.location().map(|l| Pos {
            line: l.line(),
            column: l.column(),
            index: l.index(),
        }),
        Err(_) => None,
    }
}

struct Walk<'a> {
    rest: &'a [Seg],
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.scalar()
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.scalar()
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.scalar()
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.scalar()
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.scalar()
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.scalar()
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.scalar()
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some((first, rest)) = self.rest.split_first() else {
            return Err(de::Error::custom(HIT));
        };
        let Seg::Index(want) = *first else {
            return Ok(());
        };
        let mut i = 0;
        loop {
            if i == want {
                return seq.next_element_seed(Walk { rest }).map(|_| ());
            }
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Ok(());
            }
            i += 1;
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some((first, rest)) = self.rest.split_first() else {
            return Err(de::Error::custom(HIT));
        };
        let Seg::Key(want) = *first else {
            return Ok(());
        };
        while let Some(key) = map.next_key::<serde_yaml_ng::Value>()? {
            if key.as_str() == Some(want) {
                return map.next_value_seed(Walk { rest });
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }
}

impl Walk<'_> {
    fn scalar<E: de::Error>(self) -> Result<(), E> {
        if self.rest.is_empty() {
            Err(E::custom(HIT))
        } else {
            Ok(())
        }
    }
}
