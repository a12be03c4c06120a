//! Request bodies: one typed struct per body, which both parses the request
//! (`Deserialize`) and describes it in the OpenAPI document (`ToSchema`).
//!
//! The rules are upstream Trove's JSON schemas (`trove/common/apischema.py`; spec
//! `instances-api.md` §8.1 and §11.1, `supporting-resources.md` §3), and so are the
//! messages: `Validation error: <path> <reason>`, the path written like
//! `instance['volume']['size']`, the reason in jsonschema's words. A rule serde states
//! (a required key, a type, an unknown key) is worded by [`JsonBody`] from serde's
//! error; a rule serde cannot state is a field type of its own whose `Deserialize`
//! checks the value ([`Name`], [`HyphenatedUuid`], ...), next to the type it checks.
//! Rules that need state or the catalog are the aggregates' (`decide`), not ours.
//!
//! When a body breaks several rules, the first one met is reported: serde reads an
//! object's keys in sorted order and reports a missing key after the keys present.
//!
//! - [`instance`]: `POST /instances`, `PUT` and `PATCH /instances/{id}`.
//! - [`configuration`]: `POST /configurations`, `PUT` and `PATCH /configurations/{id}`.
//! - [`action`]: `POST /instances/{id}/action`.
//! - [`guestdb`]: databases, users and root of an instance.

pub mod action;
pub mod backup;
pub mod configuration;
pub mod guestdb;
pub mod instance;

use std::fmt;
use std::marker::PhantomData;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::de::{self, DeserializeOwned, Deserializer};
use serde::Deserialize;
use serde_json::Value;
use serde_path_to_error::Segment;
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::openapi::{KnownFormat, RefOr};
use utoipa::{PartialSchema, ToSchema};
use uuid::Uuid;

use super::error::ApiError;

/// A request body: an object under one key (`{"instance": {...}}`).
pub trait RequestBody: DeserializeOwned {
    /// The key the body's object sits under; also the first word of every path.
    const ROOT: &'static str;

    /// How a refused value is written in a message: its JSON, cut at 60 characters
    /// (a 10 kB string is not echoed back).
    fn render(v: &Value) -> String {
        short(v)
    }
}

/// The request's body as `T`, or upstream's 400 (`Validation error: ...`), 415 or
/// "Malformed request body". Use it as a handler's last argument.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: RequestBody> FromRequest<S> for JsonBody<T> {
    /// A response: ours in Trove's shape, or axum's when the body cannot be read (the
    /// middleware gives that one Trove's shape, as for every extractor).
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        let content_type = req.headers().get(header::CONTENT_TYPE).cloned();
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        decode(content_type.as_ref(), &bytes)
            .map(JsonBody)
            .map_err(IntoResponse::into_response)
    }
}

/// Parses and checks a body: see [`JsonBody`].
pub fn decode<T: RequestBody>(
    content_type: Option<&HeaderValue>,
    bytes: &[u8],
) -> Result<T, ApiError> {
    let body = parse_json(content_type, bytes)?.unwrap_or(Value::Null);
    from_value(&body)
}

/// The JSON of a body: `None` when the request has no JSON body (no Content-Type:
/// upstream then ignores the body; or nothing but white space).
fn parse_json(content_type: Option<&HeaderValue>, body: &[u8]) -> Result<Option<Value>, ApiError> {
    let Some(ct) = content_type else {
        return Ok(None);
    };
    let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
    let mime = ct.split(';').next().unwrap_or("").trim();
    if mime != "application/json" {
        return Err(ApiError::BadMediaType);
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(body)
        .map(Some)
        .map_err(|_| ApiError::BadRequest("Malformed request body".into()))
}

/// Checks a parsed body against `T`'s rules.
pub fn from_value<T: RequestBody>(body: &Value) -> Result<T, ApiError> {
    // No body, a body that is no object, and an object without the key are all
    // "missing" (upstream: 500, spec §4.3; we answer its recommended 400).
    if body.get(T::ROOT).is_none() {
        return Err(ApiError::Validation(format!(
            "'{}' is a required property",
            T::ROOT
        )));
    }
    serde_path_to_error::deserialize(body).map_err(|e| validation_error::<T>(body, &e))
}

/// Words serde's error as jsonschema would, at the path where it happened.
fn validation_error<T: RequestBody>(
    body: &Value,
    e: &serde_path_to_error::Error<serde_json::Error>,
) -> ApiError {
    let message = e.inner().to_string();
    let mut segments: Vec<&Segment> = e.path().iter().collect();
    // serde names the unknown key in the path; jsonschema names the object.
    if message.starts_with("unknown field") {
        segments.pop();
    }
    let mut path = String::new();
    let mut value = Some(body);
    for segment in segments {
        match segment {
            Segment::Map { key } if path.is_empty() => path.push_str(key),
            Segment::Map { key } => path.push_str(&format!("['{key}']")),
            Segment::Seq { index } => path.push_str(&format!("[{index}]")),
            Segment::Enum { .. } | Segment::Unknown => continue,
        }
        value = value.and_then(|v| match segment {
            Segment::Map { key } => v.get(key.as_str()),
            Segment::Seq { index } => v.get(index),
            _ => None,
        });
    }
    let render = || T::render(value.unwrap_or(&Value::Null));
    let reason = reason(&message, render);
    ApiError::Validation(if path.is_empty() {
        reason
    } else {
        format!("{path} {reason}")
    })
}

/// The reason of a refusal from serde's message: its own wording for what serde
/// checks, a [`Broken`] rule's as the rule wrote it.
fn reason(message: &str, render: impl Fn() -> String) -> String {
    let quoted = |prefix: &str| {
        message
            .strip_prefix(prefix)
            .and_then(|rest| rest.split('`').next())
            .map(str::to_string)
    };
    if let Some(whole) = message.strip_prefix(WHOLE) {
        whole.to_string()
    } else if let Some(key) = quoted("missing field `") {
        format!("'{key}' is a required property")
    } else if let Some(key) = quoted("unknown field `") {
        format!("Additional properties are not allowed ('{key}' was unexpected)")
    } else if let Some((_, expected)) = message
        .strip_prefix("invalid type: ")
        .and_then(|m| m.rsplit_once(", expected "))
    {
        format!("{} is not of type '{}'", render(), json_type(expected))
    } else {
        format!("{} {message}", render())
    }
}

/// The JSON type a serde expectation names.
fn json_type(expected: &str) -> &str {
    match expected {
        "a sequence" => "array",
        "a string" => "string",
        "a boolean" => "boolean",
        "a map" | "an object" => "object",
        e if e.starts_with("struct ") => "object",
        e => e,
    }
}

/// Marks a [`Broken::Whole`] message inside serde's error.
const WHOLE: char = '\u{1}';

/// Why a value breaks a rule, in jsonschema's words.
#[derive(Debug)]
pub enum Broken {
    /// The reason written after the value: `is too long` → `"x..." is too long`.
    Because(String),
    /// A message that does not start with the value.
    Whole(String),
}

impl Broken {
    fn because(reason: impl Into<String>) -> Broken {
        Broken::Because(reason.into())
    }

    fn not_of_type(ty: &str) -> Broken {
        Broken::Because(format!("is not of type '{ty}'"))
    }

    /// As a serde error, for [`validation_error`] to write out.
    fn into_de<E: de::Error>(self) -> E {
        match self {
            Broken::Because(reason) => E::custom(reason),
            Broken::Whole(message) => E::custom(format_args!("{WHOLE}{message}")),
        }
    }

    /// The message at `path` for `value`, for the rules checked outside serde.
    fn message(self, path: &str, value: &str) -> String {
        match self {
            Broken::Because(reason) => format!("{path} {value} {reason}"),
            Broken::Whole(message) => format!("{path} {message}"),
        }
    }
}

/// The string `v` holds, or "is not of type 'string'".
fn string_value(v: &Value) -> Result<&str, Broken> {
    v.as_str().ok_or_else(|| Broken::not_of_type("string"))
}

/// A value's JSON cut at 60 characters.
pub fn short(v: &Value) -> String {
    let s = v.to_string();
    // Characters, not bytes: a short name in a non-Latin script is not cut.
    match s.char_indices().nth(60) {
        Some(_) => format!(
            "{}...",
            &s[..s.char_indices().nth(57).map_or(s.len(), |(i, _)| i)]
        ),
        None => s,
    }
}

/// For `#[serde(default, deserialize_with = "present")]`: a key that is there is
/// checked by its type's rules, `null` included (upstream's schema allows no `null`
/// there); an absent key is `None`. A plain `Option` would take `null` for absent.
pub fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// Implements `Deserialize` for a rule type: the value is read as JSON and handed to
/// the type's `check`.
macro_rules! checked_by {
    ($ty:ty) => {
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let v = serde_json::Value::deserialize(d)?;
                <$ty>::check(&v).map_err(crate::http::request_body::Broken::into_de)
            }
        }
    };
}
pub(crate) use checked_by;

/// Implements `Deserialize` for structs that derive it with `#[serde(remote = "Self")]`
/// (which makes the derived `deserialize` an inherent function): only a JSON object is
/// taken. serde's derive also takes an array for a struct (its fields in order), which
/// upstream's schema refuses.
macro_rules! objects_only {
    ($($ty:ty),+ $(,)?) => {$(
        impl<'de> crate::http::request_body::Derived<'de> for $ty {
            fn derived<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                <$ty>::deserialize(d)
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_map(crate::http::request_body::ObjectVisitor::<$ty>::default())
            }
        }
    )+};
}
pub(crate) use objects_only;

/// The derived `Deserialize` of a struct (see `objects_only!`).
pub trait Derived<'de>: Sized {
    fn derived<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error>;
}

/// Hands an object, and only an object, to a struct's derived `Deserialize`.
pub struct ObjectVisitor<T>(PhantomData<T>);

impl<T> Default for ObjectVisitor<T> {
    fn default() -> Self {
        ObjectVisitor(PhantomData)
    }
}

impl<'de, T: Derived<'de>> de::Visitor<'de> for ObjectVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::derived(de::value::MapAccessDeserializer::new(map))
    }
}

/// A string schema for the rule types' `PartialSchema`.
fn string_schema(description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
}

// ---- rules shared by the bodies ---------------------------------------------------

/// Upstream's `non_empty_string` pattern (Python's `re` semantics, as [`has_alnum_line`]).
const NAME_PATTERN: &str = "^.*[0-9a-zA-Z]+.*$";

/// Upstream's `non_empty_string` with an alphanumeric (`^.*[0-9a-zA-Z]+.*$`): Python's
/// `$` also matches before one final newline, and `.` does not match newlines.
fn has_alnum_line(s: &str) -> bool {
    let s = s.strip_suffix('\n').unwrap_or(s);
    !s.contains('\n') && s.chars().any(|c| c.is_ascii_alphanumeric())
}

/// Upstream's `non_empty_string` of at most `max` characters.
fn non_empty_string(v: &Value, max: usize) -> Result<String, Broken> {
    let s = string_value(v)?;
    let len = s.chars().count();
    if len == 0 {
        return Err(Broken::because("is too short"));
    }
    if len > max {
        return Err(Broken::because("is too long"));
    }
    if !has_alnum_line(s) {
        return Err(Broken::Because(format!("does not match '{NAME_PATTERN}'")));
    }
    Ok(s.to_string())
}

/// A name, a description, a datastore or version key: upstream's `non_empty_string`,
/// 1 to 255 characters with an ASCII letter or digit on one line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Name(pub String);

impl Name {
    fn check(v: &Value) -> Result<Name, Broken> {
        non_empty_string(v, 255).map(Name)
    }
}
checked_by!(Name);

impl PartialSchema for Name {
    fn schema() -> RefOr<Schema> {
        string_schema("1 to 255 characters with an ASCII letter or digit on one line.")
            .min_length(Some(1))
            .max_length(Some(255))
            .pattern(Some(NAME_PATTERN))
            .into()
    }
}
impl ToSchema for Name {}

/// A UUID in its hyphenated form (the schema's pattern), e.g. a backup or module id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HyphenatedUuid(pub Uuid);

impl HyphenatedUuid {
    fn check(v: &Value) -> Result<HyphenatedUuid, Broken> {
        let s = string_value(v)?;
        match Uuid::parse_str(s) {
            Ok(u) if s.len() == 36 => Ok(HyphenatedUuid(u)),
            _ => Err(Broken::because("is not a 'uuid'")),
        }
    }
}
checked_by!(HyphenatedUuid);

impl PartialSchema for HyphenatedUuid {
    fn schema() -> RefOr<Schema> {
        string_schema("A UUID, hyphenated.")
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
            .into()
    }
}
impl ToSchema for HyphenatedUuid {}

/// `datastore` of an instance or a configuration group: by id or name.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(remote = "Self")]
pub struct DatastoreRequest {
    #[serde(default, rename = "type", deserialize_with = "present")]
    #[schema(nullable = false)]
    pub datastore_type: Option<Name>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub version: Option<Name>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub version_number: Option<Name>,
}

objects_only!(DatastoreRequest);

impl From<DatastoreRequest> for aggregates::instance::DatastoreRequest {
    fn from(d: DatastoreRequest) -> Self {
        aggregates::instance::DatastoreRequest {
            datastore_type: d.datastore_type.map(|n| n.0),
            version: d.version.map(|n| n.0),
            version_number: d.version_number.map(|n| n.0),
        }
    }
}

/// The last path segment of a reference (`https://h/v1.0/p/flavors/7?x=1` → `7`).
fn last_segment(s: &str) -> String {
    let s = s.split(['?', '#']).next().unwrap_or(s);
    let s = s.trim_end_matches('/');
    s.rsplit('/').next().unwrap_or(s).to_string()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn short_counts_characters_not_bytes() {
        // 20 three-byte characters (62 bytes quoted): shown whole.
        let name = "名".repeat(20);
        assert_eq!(short(&json!(name)), format!("\"{name}\""));
        // 70 characters: cut to 57 and marked.
        let long = "é".repeat(70);
        let cut = short(&json!(long));
        assert_eq!(cut.chars().count(), 60);
        assert!(cut.ends_with("..."));
        assert_eq!(short(&json!("a".repeat(58))).chars().count(), 60);
    }

    #[derive(Debug, Deserialize)]
    #[serde(remote = "Self")]
    struct Doc {
        #[allow(dead_code)]
        thing: Thing,
    }

    #[derive(Debug, Deserialize)]
    #[serde(remote = "Self", deny_unknown_fields)]
    #[allow(dead_code)]
    struct Thing {
        name: Name,
        #[serde(default, deserialize_with = "present")]
        other: Option<Name>,
        #[serde(default, deserialize_with = "present")]
        list: Option<Vec<Inner>>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(remote = "Self")]
    #[allow(dead_code)]
    struct Inner {
        id: HyphenatedUuid,
    }

    objects_only!(Doc, Thing, Inner);

    impl RequestBody for Doc {
        const ROOT: &'static str = "thing";
    }

    fn message(body: Value) -> String {
        from_value::<Doc>(&body).unwrap_err().to_string()
    }

    #[test]
    fn serde_errors_read_as_jsonschemas() {
        for (body, expected) in [
            (json!([]), "'thing' is a required property"),
            (json!({"thing": 5}), "thing 5 is not of type 'object'"),
            (json!({"thing": {}}), "thing 'name' is a required property"),
            (
                json!({"thing": {"name": "n", "zz": 1}}),
                "thing Additional properties are not allowed ('zz' was unexpected)",
            ),
            (json!({"thing": {"name": ""}}), "thing['name'] \"\" is too short"),
            (
                json!({"thing": {"name": "n", "other": null}}),
                "thing['other'] null is not of type 'string'",
            ),
            (
                json!({"thing": {"name": "n", "list": {}}}),
                "thing['list'] {} is not of type 'array'",
            ),
            (
                json!({"thing": {"name": "n", "list": [{"id": "x"}]}}),
                "thing['list'][0]['id'] \"x\" is not a 'uuid'",
            ),
            (
                json!({"thing": {"name": "n", "list": [{}]}}),
                "thing['list'][0] 'id' is a required property",
            ),
            (
                json!({"thing": {"name": "n", "list": [3]}}),
                "thing['list'][0] 3 is not of type 'object'",
            ),
            (
                json!({"thing": {"name": "n", "list": [["a5330d7d-0e8c-48b4-9f6c-0f2c4ab1b854"]]}}),
                "thing['list'][0] [\"a5330d7d-0e8c-48b4-9f6c-0f2c4ab1b854\"] is not of type 'object'",
            ),
            (json!({"thing": ["n"]}), "thing [\"n\"] is not of type 'object'"),
        ] {
            assert_eq!(message(body), format!("Validation error: {expected}"));
        }
    }

    #[test]
    fn long_values_are_cut() {
        let m = message(json!({"thing": {"name": "x".repeat(300)}}));
        assert!(
            m.ends_with(&format!("\"{}... is too long", "x".repeat(56))),
            "{m}"
        );
    }

    #[test]
    fn content_type_and_malformed_json() {
        let json = HeaderValue::from_static("application/json; charset=utf-8");
        let text = HeaderValue::from_static("text/plain");
        assert!(matches!(
            decode::<Doc>(Some(&text), b"{}"),
            Err(ApiError::BadMediaType)
        ));
        assert_eq!(
            decode::<Doc>(Some(&json), b"{x").unwrap_err().to_string(),
            "Malformed request body"
        );
        for (ct, body) in [(None, &b"{\"thing\": 1}"[..]), (Some(&json), b" \n")] {
            assert_eq!(
                decode::<Doc>(ct, body).unwrap_err().to_string(),
                "Validation error: 'thing' is a required property"
            );
        }
    }

    #[test]
    fn name_needs_an_alphanumeric_on_one_line() {
        assert!(has_alnum_line("db-1"));
        assert!(has_alnum_line("db\n"));
        assert!(!has_alnum_line("a\nb"));
        assert!(!has_alnum_line("---"));
    }
}
