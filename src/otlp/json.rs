//! OTLP JSON's field rules, as serde helpers for the structs in [`super::proto`].
//!
//! Data comes from request bodies with `Content-Type: application/json` (through
//! [`super::decode`]) and goes out as the span lines of [`super::render`]. The rules, from the
//! OTLP specification's JSON encoding and the protobuf JSON mapping it builds on:
//! - keys are the fields' lowerCamelCase names; unknown keys are ignored;
//! - trace and span ids are hex strings (not base64, as plain protobuf JSON would have them);
//!   hex of the wrong length decodes (the span is then refused on its own, with a count), while
//!   text that is not hex refuses the request;
//! - enums are integers (the enum's names are accepted too);
//! - 64-bit integers may be numbers or strings (they are written as strings);
//! - `bytesValue` is base64 (standard or URL-safe alphabet, padding optional);
//! - `doubleValue` may be `"NaN"`, `"Infinity"` or `"-Infinity"`;
//! - `null` stands for the field's default, anywhere.
//!
//! Nesting: serde_json's default depth limit (128) stays on, so a deeply nested `arrayValue`
//! is a refused request, not a stack overflow.

use std::fmt;

use base64::Engine as _;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

use super::proto::{AnyValue, ArrayValue, KeyValueList, SpanKind, StatusCode, any_value::Value};

/// Repeated fields: `null` is the empty list.
pub mod list {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    /// Writes the list.
    #[allow(clippy::ptr_arg)] // serde's `with` hands the field over as `&Vec<T>`
    pub fn serialize<S: Serializer, T: Serialize>(v: &Vec<T>, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v)
    }

    /// Reads a list, `null` as empty.
    pub fn deserialize<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        d: D,
    ) -> Result<Vec<T>, D::Error> {
        Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
    }
}

/// String fields: `null` is the empty string.
pub mod string {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes the string.
    pub fn serialize<S: Serializer>(v: &str, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v)
    }

    /// Reads a string, `null` as empty.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
    }
}

/// Trace and span ids: hex strings.
pub mod id {
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    /// Writes the id as lower-case hex.
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    /// Reads a hex id of any length (`null` or `""` as empty); text that is not hex is an
    /// error naming the rule.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let Some(text) = Option::<String>::deserialize(d)? else {
            return Ok(Vec::new());
        };
        hex::decode(&text).map_err(|_| {
            D::Error::custom(format_args!(
                "id {:?} is not hex: OTLP JSON writes trace and span ids as hex digits \
                 (32 for a trace id, 16 for a span id), not base64",
                super::shorten(&text)
            ))
        })
    }
}

/// `fixed64`/`uint64` fields: a number or a string of one; written as a string.
pub mod uint64 {
    use serde::{Deserializer, Serializer};

    /// Writes the number as a string (the protobuf JSON form of 64-bit integers).
    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    /// Reads a number or a string of one (`null` as 0).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        d.deserialize_any(super::IntVisitor::<u64>::new())
    }
}

/// `int64` fields: a number or a string of one; written as a string.
pub mod int64 {
    use serde::{Deserializer, Serializer};

    /// Writes the number as a string (the protobuf JSON form of 64-bit integers).
    pub fn serialize<S: Serializer>(v: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    /// Reads a number or a string of one (`null` as 0).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        d.deserialize_any(super::IntVisitor::<i64>::new())
    }
}

/// `uint32`/`fixed32` fields: a number (a string of one is accepted too).
pub mod uint32 {
    use serde::{Deserializer, Serializer};

    /// Writes the number.
    pub fn serialize<S: Serializer>(v: &u32, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(*v)
    }

    /// Reads a number or a string of one (`null` as 0).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        d.deserialize_any(super::IntVisitor::<u32>::new())
    }
}

/// `Span.kind`: an integer (or the enum's name).
pub mod span_kind {
    use serde::{Deserializer, Serializer};

    /// Writes the number.
    pub fn serialize<S: Serializer>(v: &i32, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i32(*v)
    }

    /// Reads an integer or one of [`super::SpanKind::NAMES`].
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
        d.deserialize_any(super::EnumVisitor(&super::SpanKind::NAMES))
    }
}

/// `Status.code`: an integer (or the enum's name).
pub mod status_code {
    use serde::{Deserializer, Serializer};

    /// Writes the number.
    pub fn serialize<S: Serializer>(v: &i32, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i32(*v)
    }

    /// Reads an integer or one of [`super::StatusCode::NAMES`].
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
        d.deserialize_any(super::EnumVisitor(&super::StatusCode::NAMES))
    }
}

/// At most 40 characters of `text`, for error messages.
fn shorten(text: &str) -> String {
    match text.char_indices().nth(40) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// Reads an integer of type `T` from a JSON number or a string holding one.
struct IntVisitor<T>(std::marker::PhantomData<T>);

impl<T> IntVisitor<T> {
    fn new() -> Self {
        IntVisitor(std::marker::PhantomData)
    }
}

impl<'de, T> Visitor<'de> for IntVisitor<T>
where
    T: TryFrom<u64> + TryFrom<i64> + std::str::FromStr + Default,
{
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "an integer ({}), as a number or a string",
            std::any::type_name::<T>()
        )
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        T::try_from(v).map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        T::try_from(v).map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        v.trim()
            .parse()
            .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
    }

    fn visit_unit<E: de::Error>(self) -> Result<T, E> {
        Ok(T::default())
    }
}

/// Reads an enum as its number or its protobuf name (`names` indexed by number).
struct EnumVisitor(&'static [&'static str]);

impl<'de> Visitor<'de> for EnumVisitor {
    type Value = i32;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "an enum as an integer or one of {:?}", self.0)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<i32, E> {
        i32::try_from(v).map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<i32, E> {
        i32::try_from(v).map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<i32, E> {
        self.0
            .iter()
            .position(|name| *name == v)
            .and_then(|i| i32::try_from(i).ok())
            .ok_or_else(|| E::invalid_value(de::Unexpected::Str(v), &self))
    }

    fn visit_unit<E: de::Error>(self) -> Result<i32, E> {
        Ok(0)
    }
}

impl Serialize for AnyValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let Some(value) = &self.value else {
            return s.serialize_map(Some(0))?.end();
        };
        let mut map = s.serialize_map(Some(1))?;
        match value {
            Value::StringValue(v) => map.serialize_entry("stringValue", v)?,
            Value::BoolValue(v) => map.serialize_entry("boolValue", v)?,
            Value::IntValue(v) => map.serialize_entry("intValue", &v.to_string())?,
            Value::DoubleValue(v) if v.is_finite() => map.serialize_entry("doubleValue", v)?,
            Value::DoubleValue(v) => {
                let word = if v.is_nan() {
                    "NaN"
                } else if *v > 0.0 {
                    "Infinity"
                } else {
                    "-Infinity"
                };
                map.serialize_entry("doubleValue", word)?
            }
            Value::ArrayValue(v) => map.serialize_entry("arrayValue", v)?,
            Value::KvlistValue(v) => map.serialize_entry("kvlistValue", v)?,
            Value::BytesValue(v) => map.serialize_entry(
                "bytesValue",
                &base64::engine::general_purpose::STANDARD.encode(v),
            )?,
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for AnyValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(AnyValueVisitor)
    }
}

struct AnyValueVisitor;

impl<'de> Visitor<'de> for AnyValueVisitor {
    type Value = AnyValue;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an AnyValue object such as {\"stringValue\":\"x\"}")
    }

    fn visit_unit<E: de::Error>(self) -> Result<AnyValue, E> {
        Ok(AnyValue::default())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AnyValue, A::Error> {
        let mut value = None;
        while let Some(key) = map.next_key::<String>()? {
            let next = match key.as_str() {
                "stringValue" => map.next_value::<Option<String>>()?.map(Value::StringValue),
                "boolValue" => map.next_value::<Option<bool>>()?.map(Value::BoolValue),
                "intValue" => map
                    .next_value::<Option<Int64>>()?
                    .map(|i| Value::IntValue(i.0)),
                "doubleValue" => map
                    .next_value::<Option<Double>>()?
                    .map(|v| Value::DoubleValue(v.0)),
                "arrayValue" => map
                    .next_value::<Option<ArrayValue>>()?
                    .map(Value::ArrayValue),
                "kvlistValue" => map
                    .next_value::<Option<KeyValueList>>()?
                    .map(Value::KvlistValue),
                "bytesValue" => match map.next_value::<Option<String>>()? {
                    Some(text) => Some(Value::BytesValue(decode_base64(&text).ok_or_else(
                        || {
                            de::Error::custom(format_args!(
                                "bytesValue {:?} is not base64",
                                shorten(&text)
                            ))
                        },
                    )?)),
                    None => None,
                },
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    None
                }
            };
            if next.is_some() {
                value = next;
            }
        }
        Ok(AnyValue { value })
    }
}

/// An `int64` inside an `AnyValue`: a number or a string of one.
struct Int64(i64);

impl<'de> Deserialize<'de> for Int64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(IntVisitor::<i64>::new()).map(Int64)
    }
}

/// A `double`: a number, or `"NaN"`, `"Infinity"`, `"-Infinity"` or a number as a string.
struct Double(f64);

impl<'de> Deserialize<'de> for Double {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = f64;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number, \"NaN\", \"Infinity\" or \"-Infinity\"")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
                Ok(v)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
                Ok(v as f64)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
                Ok(v as f64)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<f64, E> {
                match v {
                    "NaN" => Ok(f64::NAN),
                    "Infinity" => Ok(f64::INFINITY),
                    "-Infinity" => Ok(f64::NEG_INFINITY),
                    _ => v
                        .trim()
                        .parse()
                        .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self)),
                }
            }
        }
        d.deserialize_any(V).map(Double)
    }
}

/// Decodes base64 in the standard or the URL-safe alphabet, with or without padding.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    let text = text.trim_end_matches('=');
    STANDARD_NO_PAD
        .decode(text)
        .or_else(|_| URL_SAFE_NO_PAD.decode(text))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::proto::{ExportTraceServiceRequest, KeyValue, Span};

    fn value(json: &str) -> AnyValue {
        match serde_json::from_str(json) {
            Ok(v) => v,
            Err(e) => panic!("{json}: {e}"),
        }
    }

    #[test]
    fn any_values_of_every_kind() {
        let cases: [(&str, Option<Value>); 12] = [
            (
                r#"{"stringValue":"a"}"#,
                Some(Value::StringValue("a".into())),
            ),
            (r#"{"boolValue":true}"#, Some(Value::BoolValue(true))),
            (r#"{"intValue":"-42"}"#, Some(Value::IntValue(-42))),
            (r#"{"intValue":42}"#, Some(Value::IntValue(42))),
            (r#"{"doubleValue":1.5}"#, Some(Value::DoubleValue(1.5))),
            (
                r#"{"doubleValue":"Infinity"}"#,
                Some(Value::DoubleValue(f64::INFINITY)),
            ),
            (r#"{"doubleValue":3}"#, Some(Value::DoubleValue(3.0))),
            (
                r#"{"bytesValue":"AQID"}"#,
                Some(Value::BytesValue(vec![1, 2, 3])),
            ),
            (
                r#"{"bytesValue":"-_8"}"#,
                Some(Value::BytesValue(vec![0xfb, 0xff])),
            ),
            (
                r#"{"arrayValue":{}}"#,
                Some(Value::ArrayValue(ArrayValue::default())),
            ),
            (r#"{"unknownValue":{"x":1}}"#, None),
            (r#"{"stringValue":null}"#, None),
        ];
        for (json, want) in cases {
            assert_eq!(value(json).value, want, "{json}");
        }
        let nested = value(
            r#"{"kvlistValue":{"values":[{"key":"k","value":{"arrayValue":{"values":[{"intValue":"1"}]}}}]}}"#,
        );
        let Some(Value::KvlistValue(list)) = nested.value else {
            panic!("not a kvlist: {nested:?}")
        };
        assert_eq!(list.values[0].key, "k");
    }

    #[test]
    fn any_values_round_trip() {
        for json in [
            r#"{"stringValue":"a"}"#,
            r#"{"intValue":"-42"}"#,
            r#"{"doubleValue":"NaN"}"#,
            r#"{"doubleValue":0.25}"#,
            r#"{"bytesValue":"AQID"}"#,
            r#"{"arrayValue":{"values":[{"boolValue":false}]}}"#,
            r#"{}"#,
        ] {
            let v = value(json);
            let back = serde_json::to_string(&v).unwrap_or_default();
            if json.contains("NaN") {
                assert_eq!(back, json);
                continue;
            }
            assert_eq!(value(&back), v, "{json} -> {back}");
        }
    }

    #[test]
    fn span_fields_follow_otlp_json() {
        let span: Span = match serde_json::from_str(
            r#"{"traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"eee19b7ec3c1b174",
                "parentSpanId":"","name":"x","kind":2,"startTimeUnixNano":"1544712660000000000",
                "endTimeUnixNano":1544712661000000000,"droppedAttributesCount":"3",
                "attributes":null,"status":{"code":"STATUS_CODE_ERROR","message":"m"},
                "someFutureField":{"a":[1,2,3]}}"#,
        ) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(span.trace_id.len(), 16);
        assert_eq!(span.trace_id[0], 0x5b);
        assert_eq!(span.span_id.len(), 8);
        assert!(span.parent_span_id.is_empty());
        assert_eq!(span.kind, SpanKind::Server as i32);
        assert_eq!(span.start_time_unix_nano, 1_544_712_660_000_000_000);
        assert_eq!(span.end_time_unix_nano, 1_544_712_661_000_000_000);
        assert_eq!(span.dropped_attributes_count, 3);
        assert_eq!(span.status.map(|s| s.code), Some(StatusCode::Error as i32));
    }

    #[test]
    fn ids_that_are_not_hex_name_the_rule() {
        let r = serde_json::from_str::<Span>(r#"{"traceId":"W4777wGAgQPSabYzgT/GDA=="}"#);
        let e = r.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("not hex") && e.contains("base64"), "{e}");
    }

    #[test]
    fn enums_outside_i32_and_bad_strings_are_errors() {
        for bad in [
            r#"{"kind":4294967296}"#,
            r#"{"kind":"SERVER"}"#,
            r#"{"startTimeUnixNano":"-1"}"#,
            r#"{"startTimeUnixNano":"12x"}"#,
            r#"{"attributes":[{"key":"a","value":{"bytesValue":"*"}}]}"#,
        ] {
            assert!(serde_json::from_str::<Span>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn keyvalue_written_as_otlp_json() {
        let kv = KeyValue::int("n", 7);
        assert_eq!(
            serde_json::to_string(&kv).unwrap_or_default(),
            r#"{"key":"n","value":{"intValue":"7"}}"#
        );
        let empty = ExportTraceServiceRequest::default();
        assert_eq!(serde_json::to_string(&empty).unwrap_or_default(), "{}");
    }
}
