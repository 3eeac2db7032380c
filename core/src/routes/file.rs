//! The route file format (`routes.yaml`, `*.routes.yaml`) as written, before the table checks
//! it as a whole.
//!
//! Every value with a syntax of its own (a method, a path template, a header name, a context
//! key) is parsed inside serde's visitor, so a mistake is reported at that value's line and
//! column; unknown keys are refused (`deny_unknown_fields`). Checks that need more than one
//! value (a parameter the template does not have, a tie between two routes, the schema) run
//! later and find their position again with [`locate`].

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::template::Template;
use crate::relations::{is_identifier, parse_entity_type, parse_entity_uid};

/// A route file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RouteFile {
    #[serde(default)]
    #[allow(dead_code, reason = "documentation for readers of the file")]
    description: Option<String>,
    pub(super) routes: Vec<RouteSpec>,
}

/// One route as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RouteSpec {
    #[serde(default)]
    pub(super) name: Option<String>,
    pub(super) method: Methods,
    pub(super) path: Parsed<Template>,
    pub(super) action: Parsed<ActionText>,
    pub(super) resource: ResourceSpec,
    #[serde(default)]
    pub(super) context: BTreeMap<Parsed<ContextKey>, ContextSpec>,
    #[serde(default)]
    pub(super) principal: super::PrincipalSource,
    #[serde(default)]
    pub(super) properties_from_body: bool,
    #[serde(default)]
    pub(super) properties: Option<PropertyNames>,
    #[serde(default)]
    pub(super) upstream_headers: UpstreamHeadersSpec,
}

/// A value parsed by [`Parse::parse`] inside the deserializer, so that its error has the
/// value's position.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Parsed<T>(pub(super) T);

/// A value written as a YAML string with a syntax of its own.
pub(super) trait Parse: Sized {
    /// What the value is, for "expected …" messages.
    const EXPECTING: &'static str;
    fn parse(text: &str) -> Result<Self, String>;
}

impl<'de, T: Parse> Deserialize<'de> for Parsed<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ParseVisitor<T>(PhantomData<T>);
        impl<T: Parse> Visitor<'_> for ParseVisitor<T> {
            type Value = Parsed<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(T::EXPECTING)
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Parsed<T>, E> {
                T::parse(text).map(Parsed).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(ParseVisitor(PhantomData))
    }
}

impl Parse for Template {
    const EXPECTING: &'static str = "a path template such as `/v1/documents/{id}`";
    fn parse(text: &str) -> Result<Self, String> {
        Template::parse(text)
    }
}

/// An HTTP method as routes write it: case-sensitive, upper-case (`GET`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Method(pub(super) String);

impl Parse for Method {
    const EXPECTING: &'static str = "an http method such as `GET`";
    fn parse(text: &str) -> Result<Self, String> {
        let well_formed = !text.is_empty()
            && text
                .chars()
                .all(|c| c.is_ascii_uppercase() || c == '-' || c == '_');
        if well_formed {
            Ok(Self(text.to_owned()))
        } else {
            Err(format!(
                "`{text}` is not an http method as routes write them: methods are \
                 case-sensitive and upper-case, such as `GET`"
            ))
        }
    }
}

/// One method, or a list of them.
#[derive(Debug)]
pub(super) struct Methods(pub(super) Vec<Method>);

impl<'de> Deserialize<'de> for Methods {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MethodsVisitor;
        impl<'de> Visitor<'de> for MethodsVisitor {
            type Value = Methods;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an http method such as `GET`, or a list of them")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Methods, E> {
                Method::parse(text)
                    .map(|m| Methods(vec![m]))
                    .map_err(E::custom)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Methods, A::Error> {
                let mut methods = Vec::new();
                while let Some(Parsed(method)) = seq.next_element::<Parsed<Method>>()? {
                    if methods.contains(&method) {
                        return Err(de::Error::custom(format!(
                            "the method `{}` is listed twice",
                            method.0
                        )));
                    }
                    methods.push(method);
                }
                if methods.is_empty() {
                    return Err(de::Error::custom("a route needs at least one method"));
                }
                Ok(Methods(methods))
            }
        }
        deserializer.deserialize_any(MethodsVisitor)
    }
}

/// An action: an id such as `read`, or a uid such as `Acme::Action::"read"`, normalised to the
/// uid text Cedar prints (`Action::"read"`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct ActionText {
    /// As written: what a `CheckInput` gets.
    pub(super) written: String,
    /// The uid, as Cedar prints it.
    pub(super) uid: String,
}

impl Parse for ActionText {
    const EXPECTING: &'static str = "an action such as `read` or `Acme::Action::\"read\"`";
    fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("the action must not be empty".to_owned());
        }
        let uid = if text.ends_with('"') && text.contains("::\"") {
            let parsed = parse_entity_uid(text)
                .map_err(|e| format!("`{text}` is not an action uid: {}", e.reason))?;
            if parsed.entity_type != "Action" && !parsed.entity_type.ends_with("::Action") {
                return Err(format!(
                    "`{text}` is not an action: its type must be `Action` or end in `::Action`"
                ));
            }
            crate::relations::display_uid(parsed.entity_type, &parsed.id)
        } else {
            crate::relations::display_uid("Action", text)
        };
        Ok(Self {
            written: text.to_owned(),
            uid,
        })
    }
}

/// The resource a route asks about.
#[derive(Debug)]
pub(super) enum ResourceSpec {
    /// A fixed entity, for function-level operations: `Api::"admin"`.
    Fixed { entity_type: String, id: String },
    /// `{type: Document, id: "{id}"}`: the id is a path parameter (`{name}`) or fixed text.
    Typed { entity_type: String, id: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TypedResource {
    #[serde(rename = "type")]
    entity_type: Parsed<EntityType>,
    id: String,
}

struct EntityType(String);

impl Parse for EntityType {
    const EXPECTING: &'static str = "an entity type such as `Document`";
    fn parse(text: &str) -> Result<Self, String> {
        parse_entity_type(text)
            .map(|t| Self(t.to_owned()))
            .map_err(|e| format!("`{text}` is not an entity type: {}", e.reason))
    }
}

impl<'de> Deserialize<'de> for ResourceSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ResourceVisitor;
        impl<'de> Visitor<'de> for ResourceVisitor {
            type Value = ResourceSpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an entity uid such as `Api::\"admin\"`, or `{type: …, id: …}`")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<ResourceSpec, E> {
                let uid = parse_entity_uid(text).map_err(|e| {
                    E::custom(format!("`{text}` is not an entity uid: {}", e.reason))
                })?;
                Ok(ResourceSpec::Fixed {
                    entity_type: uid.entity_type.to_owned(),
                    id: uid.id.into_owned(),
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ResourceSpec, A::Error> {
                let typed = TypedResource::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(ResourceSpec::Typed {
                    entity_type: typed.entity_type.0.0,
                    id: typed.id,
                })
            }
        }
        deserializer.deserialize_any(ResourceVisitor)
    }
}

/// A context key: any name except `property`, which Verdict sets for property-level checks.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct ContextKey(pub(super) String);

impl Parse for ContextKey {
    const EXPECTING: &'static str = "a context key";
    fn parse(text: &str) -> Result<Self, String> {
        if text == crate::input::PROPERTY_CONTEXT_KEY {
            Err(format!(
                "`{text}` is set by Verdict for property-level checks; a route cannot set it"
            ))
        } else if !is_identifier(text) {
            Err(format!(
                "`{text}` is not a context key Cedar policies can read as `context.{text}` \
                 (letters, digits and `_`)"
            ))
        } else {
            Ok(Self(text.to_owned()))
        }
    }
}

/// A lower-case HTTP header name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct HeaderName(pub(super) String);

impl Parse for HeaderName {
    const EXPECTING: &'static str = "an http header name";
    fn parse(text: &str) -> Result<Self, String> {
        let token = !text.is_empty()
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c));
        if token {
            Ok(Self(text.to_ascii_lowercase()))
        } else {
            Err(format!("`{text}` is not an http header name"))
        }
    }
}

/// A property name a route lists: printable ASCII without spaces or commas, since the allowed
/// properties travel upstream in one comma-separated header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PropertyName(pub(super) String);

impl Parse for PropertyName {
    const EXPECTING: &'static str = "a property name such as `email`";
    fn parse(text: &str) -> Result<Self, String> {
        if super::is_listable_property(text) {
            Ok(Self(text.to_owned()))
        } else {
            Err(format!(
                "`{text}` is not a property name a header can carry: printable ASCII without \
                 spaces or commas"
            ))
        }
    }
}

/// The `properties` list: at least one name, none twice.
#[derive(Debug)]
pub(super) struct PropertyNames(pub(super) Vec<String>);

impl<'de> Deserialize<'de> for PropertyNames {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NamesVisitor;
        impl<'de> Visitor<'de> for NamesVisitor {
            type Value = PropertyNames;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of property names")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<PropertyNames, A::Error> {
                let mut names: Vec<String> = Vec::new();
                while let Some(Parsed(PropertyName(name))) =
                    seq.next_element::<Parsed<PropertyName>>()?
                {
                    if names.contains(&name) {
                        return Err(de::Error::custom(format!(
                            "the property `{name}` is listed twice"
                        )));
                    }
                    names.push(name);
                }
                if names.is_empty() {
                    return Err(de::Error::custom("`properties` needs at least one name"));
                }
                Ok(PropertyNames(names))
            }
        }
        deserializer.deserialize_seq(NamesVisitor)
    }
}

/// Headers whose values are credentials: never copied into a context, which travels to
/// policies and tests and is not treated as a secret.
const CREDENTIAL_HEADERS: [&str; 3] = ["authorization", "proxy-authorization", "cookie"];

/// A header a route may read into the context: not a credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ContextHeader(pub(super) String);

impl Parse for ContextHeader {
    const EXPECTING: &'static str = "an http header name";
    fn parse(text: &str) -> Result<Self, String> {
        let HeaderName(name) = HeaderName::parse(text)?;
        if CREDENTIAL_HEADERS.contains(&name.as_str()) {
            return Err(format!(
                "`{text}` carries credentials; it is never copied into a context"
            ));
        }
        Ok(Self(name))
    }
}

/// Where a context value comes from, and its type.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ContextSpec {
    #[serde(default)]
    pub(super) header: Option<Parsed<ContextHeader>>,
    #[serde(default)]
    pub(super) query: Option<String>,
    #[serde(default, rename = "type")]
    pub(super) value_type: super::ValueType,
}

/// Headers added to the request sent upstream when it is allowed.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UpstreamHeadersSpec {
    #[serde(default)]
    pub(super) principal: Option<Parsed<HeaderName>>,
    #[serde(default)]
    pub(super) properties: Option<Parsed<HeaderName>>,
}

/// Parses a route file: its routes, or the first error with its byte offset (when known).
pub(super) fn parse(text: &str) -> Result<RouteFile, (Option<usize>, String)> {
    serde_yaml_ng::from_str(text).map_err(|e| (e.location().map(|l| l.index()), yaml_reason(&e)))
}

/// Returns serde_yaml_ng's message without the position it appends.
fn yaml_reason(error: &serde_yaml_ng::Error) -> String {
    let text = error.to_string();
    match text.find(" at line ") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

/// Returns the byte offset where the value of `field` in the `index`-th route is written.
///
/// serde_yaml_ng gives positions only with errors: this parses the file again with a visitor
/// that fails on exactly that value, and reads the position off the error. It only runs to
/// report a problem, so a valid file is parsed once.
pub(super) fn locate(text: &str, index: usize, field: &str) -> Option<usize> {
    let deserializer = serde_yaml_ng::Deserializer::from_str(text);
    let seed = FileSeed { index, field };
    match seed.deserialize(deserializer) {
        Ok(()) => None,
        Err(error) => error.location().map(|l| l.index()),
    }
}

struct FileSeed<'f> {
    index: usize,
    field: &'f str,
}

impl<'de> DeserializeSeed<'de> for FileSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for FileSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a route file")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            if key == "routes" {
                map.next_value_seed(RoutesSeed {
                    index: self.index,
                    field: self.field,
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

struct RoutesSeed<'f> {
    index: usize,
    field: &'f str,
}

impl<'de> DeserializeSeed<'de> for RoutesSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RoutesSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of routes")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0;
        loop {
            let more = if i == self.index {
                seq.next_element_seed(RouteSeed(self.field))?.is_some()
            } else {
                seq.next_element::<IgnoredAny>()?.is_some()
            };
            if !more {
                return Ok(());
            }
            i += 1;
        }
    }
}

struct RouteSeed<'f>(&'f str);

impl<'de> DeserializeSeed<'de> for RouteSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RouteSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a route")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            if key == self.0 {
                map.next_value::<Here>()?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

/// A value that refuses to be read: its error carries the position of the value.
struct Here;

impl<'de> Deserialize<'de> for Here {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct HereVisitor;
        // Every `visit_*` keeps its default, an "invalid type" error raised inside the
        // deserializer, which stamps it with the value's position.
        impl Visitor<'_> for HereVisitor {
            type Value = Here;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("nothing")
            }
        }
        deserializer.deserialize_any(HereVisitor)
    }
}
