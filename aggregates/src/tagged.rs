//! Deserializing an adjacently tagged event (`#[serde(tag = "type", content = "data")]`)
//! from its type name and its stored JSON body, as the store keeps them apart, without
//! building a `serde_json::Value` tree or copying the body first.
//!
//! The deserializer below shows the pair as the map `{"type": T, "data": BODY}`, tag
//! first, which serde's derived code reads in one pass: the body is deserialized straight
//! from the stored bytes into the variant (and must be one complete JSON value, as
//! `serde_json::from_slice` requires).

use serde::de::value::StrDeserializer;
use serde::de::{DeserializeOwned, DeserializeSeed, IntoDeserializer, MapAccess, Visitor};
use serde::forward_to_deserialize_any;

/// The event of type `event_type` whose body is the JSON `data`.
pub(crate) fn from_tagged_slice<T: DeserializeOwned>(
    event_type: &str,
    data: &[u8],
) -> Result<T, serde_json::Error> {
    T::deserialize(Tagged { event_type, data })
}

struct Tagged<'a> {
    event_type: &'a str,
    data: &'a [u8],
}

impl<'de> serde::Deserializer<'de> for Tagged<'de> {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_map(TaggedMap {
            event_type: self.event_type,
            data: self.data,
            next: 0,
        })
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

struct TaggedMap<'a> {
    event_type: &'a str,
    data: &'a [u8],
    /// 0: the tag comes next, 1: the content, 2: done.
    next: u8,
}

impl<'de> MapAccess<'de> for TaggedMap<'de> {
    type Error = serde_json::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        let key = match self.next {
            0 => "type",
            1 => "data",
            _ => return Ok(None),
        };
        let key: StrDeserializer<'_, serde_json::Error> = key.into_deserializer();
        seed.deserialize(key).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, Self::Error> {
        self.next += 1;
        if self.next == 1 {
            let tag: StrDeserializer<'_, serde_json::Error> = self.event_type.into_deserializer();
            return seed.deserialize(tag);
        }
        let mut body = serde_json::Deserializer::from_slice(self.data);
        let value = seed.deserialize(&mut body)?;
        body.end()?;
        Ok(value)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(2usize.saturating_sub(self.next.into()))
    }
}

/// The shared body of the aggregates' `decode_slice`: a body at the current version
/// (`known`, `None` for an unknown type) is deserialized straight from the stored bytes;
/// an older one is parsed and handed to the aggregate's upcasting `decode`.
pub(crate) fn decode_slice_with<T: DeserializeOwned>(
    event_type: &str,
    version: u32,
    data: &[u8],
    known: Option<u32>,
    upcast: impl FnOnce(&str, u32, serde_json::Value) -> Result<T, crate::instance::DecodeError>,
) -> Result<T, crate::instance::DecodeError> {
    use crate::instance::DecodeError;
    let known = known.ok_or_else(|| DecodeError::UnknownType(event_type.into()))?;
    let malformed = |source| DecodeError::Malformed {
        event_type: event_type.into(),
        version,
        source,
    };
    if version > known {
        return Err(DecodeError::FutureVersion {
            event_type: event_type.into(),
            version,
            known,
        });
    }
    if version < known {
        let data = serde_json::from_slice(data).map_err(malformed)?;
        return upcast(event_type, version, data);
    }
    from_tagged_slice(event_type, data).map_err(malformed)
}

/// The version an aggregate's catalog (`EVENT_VERSIONS`: type name, current version)
/// gives `event_type`, if the type is its.
pub(crate) fn version_in(catalog: &[(&str, u32)], event_type: &str) -> Option<u32> {
    catalog
        .iter()
        .find(|(t, _)| *t == event_type)
        .map(|(_, v)| *v)
}

/// The body of an adjacently tagged event (`{"type": ..., "data": ...}`) for storage:
/// its `data`. Serializing a derived enum of plain data into a Value cannot fail.
pub(crate) fn data_of<T: serde::Serialize>(event: &T) -> serde_json::Value {
    match serde_json::to_value(event) {
        Ok(serde_json::Value::Object(mut m)) => m.remove("data").unwrap_or_default(),
        _ => serde_json::Value::Null,
    }
}

/// The `decode` of an aggregate whose every type is still at its first shape: refuses an
/// unknown type (`known` is `None`) or a version newer than `known`, then deserializes.
pub(crate) fn decode_current<T: DeserializeOwned>(
    event_type: &str,
    version: u32,
    data: serde_json::Value,
    known: Option<u32>,
) -> Result<T, crate::instance::DecodeError> {
    use crate::instance::DecodeError;
    let known = known.ok_or_else(|| DecodeError::UnknownType(event_type.into()))?;
    if version > known {
        return Err(DecodeError::FutureVersion {
            event_type: event_type.into(),
            version,
            known,
        });
    }
    let tagged = serde_json::json!({ "type": event_type, "data": data });
    serde_json::from_value(tagged).map_err(|source| DecodeError::Malformed {
        event_type: event_type.into(),
        version,
        source,
    })
}

#[cfg(test)]
mod tests {
    use crate::instance::{self, InstanceEvent};

    #[test]
    fn same_event_as_through_a_value() {
        let body = br#"{"name":"renamed","at":"2026-01-01T00:00:00Z"}"#;
        let via_value =
            instance::decode("InstanceRenamed", 1, serde_json::from_slice(body).unwrap()).unwrap();
        let direct: InstanceEvent = super::from_tagged_slice("InstanceRenamed", body).unwrap();
        assert_eq!(direct, via_value);
    }

    #[test]
    fn a_body_with_trailing_bytes_or_the_wrong_shape_is_an_error() {
        for body in [
            &br#"{"name":"x","at":"2026-01-01T00:00:00Z"} {}"#[..],
            br#"{"name":"x","at":"2026-01-01T00:00:00Z"},"more":1"#,
            br#"{"name":1,"at":"2026-01-01T00:00:00Z"}"#,
            b"",
            b"not json",
        ] {
            assert!(
                super::from_tagged_slice::<InstanceEvent>("InstanceRenamed", body).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert!(super::from_tagged_slice::<InstanceEvent>("NoSuchEvent", b"{}").is_err());
    }
}
