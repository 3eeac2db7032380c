//! The route table: which Cedar question an HTTP request asks, for a gateway front-end (Envoy
//! ext_authz, issue 16) that knows only a method, a path, query parameters and headers.
//!
//! Owns: the route file format (`file.rs`), path templates and their precedence
//! (`template.rs`), path normalisation (`normalize.rs`), validating the routes of a bundle as
//! one table (against the schema when there is one) and matching a request to a route.
//!
//! Does not own: reading files (the bundle loader hands over their text), principals (the
//! front-end resolves them from a JWT or the mTLS peer), deciding (a [`RouteMatch`] becomes a
//! [`CheckInput`] for `Snapshot::check`). Matching is pure and synchronous: no I/O.
//!
//! Deny by default: a request that no route matches is refused ([`RouteRefusal::NoRoute`]),
//! so an endpoint nobody wrote a route for is closed (OWASP API5, BFLA), and a path that
//! normalisation cannot clean safely is refused before any route is tried.
//!
//! Matching: the routes of each method are kept sorted by template precedence (most specific
//! first, see `template.rs`), and the first whose template matches the normalised path wins.
//! Because precedence is a total order in which, of two templates that match the same path,
//! the more specific always comes first, the first match is the most specific one. A linear
//! scan is a few hundred nanoseconds for the tens of routes an API has; a segment trie would
//! pay beyond a few hundred.

mod file;
mod normalize;
mod template;

use std::cmp::Ordering;
use std::path::{Path, PathBuf};

use cedar_policy::Schema;
use rustc_hash::FxHashMap;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::diagnostics::line_column;
use crate::input::{CheckInput, EntityRef};
use file::{ContextSpec, Parsed, ResourceSpec, RouteSpec};
use template::Template;

/// Where a route's principal comes from; the front-end resolves it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrincipalSource {
    /// The subject of the request's JWT (the default).
    #[default]
    Jwt,
    /// The identity of the mTLS peer (its certificate), for service-to-service calls.
    Mtls,
}

/// The type a context value is read as, from the text of a header or query parameter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ValueType {
    /// The text as it is (the default).
    #[default]
    String,
    /// `true` or `false`.
    Bool,
    /// A 64-bit integer.
    Long,
    /// A set of strings, separated by commas or white space (`a,b c`); a repeated query
    /// parameter adds to it.
    Set,
}

/// Why a path was refused before any route was tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathRefusal {
    /// The path does not start with `/`.
    #[error("the path must start with `/`")]
    NotAbsolute,
    /// A character a path cannot hold (a space, `#`, a control or non-ASCII character).
    #[error("the path has a character that a path cannot hold")]
    InvalidCharacter,
    /// A `%` not followed by two hex digits.
    #[error("the path has a malformed percent-encoding")]
    InvalidPercentEncoding,
    /// `%2F`: a service that decodes it would see another path than the one authorised.
    #[error("the path has an encoded slash")]
    EncodedSlash,
    /// A `\` or `%5C`, which some services read as a slash.
    #[error("the path has a backslash")]
    Backslash,
    /// A `..` that climbs above the root.
    #[error("the path climbs above the root with `..`")]
    AboveRoot,
    /// The path parameter that names the resource does not decode to UTF-8 text without
    /// control characters.
    #[error("the resource id in the path is not valid text")]
    InvalidParameter,
}

/// Why a request has no route: every variant means deny.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteRefusal {
    /// No route's template matches the path.
    #[error("no route matches the path")]
    NoRoute,
    /// Routes match the path, but none for this method.
    #[error("no route matches the method; the path has routes for {}", .allowed.join(", "))]
    MethodNotAllowed {
        /// The methods that have a route for this path, sorted.
        allowed: Vec<String>,
    },
    /// The path cannot be normalised safely.
    #[error("{0}")]
    PathRefused(PathRefusal),
    /// A value the route reads into the context is malformed, or repeated where one value is
    /// expected (parameter pollution).
    #[error("context `{key}`: {reason}")]
    BadContext {
        /// The context key.
        key: String,
        /// What is wrong, such as "the query parameter `x` is repeated".
        reason: String,
    },
}

/// Returns whether `name` can be a property of a routed request: non-empty printable ASCII
/// without spaces or commas, so that the allowed properties travel upstream in one
/// comma-separated header. A route's `properties` must be; a front-end refuses a request body
/// with a field name that is not.
pub fn is_listable_property(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b',')
}

/// Headers added to the request sent upstream when it is allowed; each is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpstreamHeaders {
    principal: Option<String>,
    properties: Option<String>,
}

impl UpstreamHeaders {
    /// Returns the header that carries the resolved principal's id, if any.
    pub fn principal(&self) -> Option<&str> {
        self.principal.as_deref()
    }

    /// Returns the header that carries the allowed properties (comma-separated), if any.
    pub fn properties(&self) -> Option<&str> {
        self.properties.as_deref()
    }
}

/// Where a context value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ValueSource {
    /// A lower-case header name.
    Header(String),
    /// A query parameter name, decoded.
    Query(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ContextEntry {
    key: String,
    source: ValueSource,
    value_type: ValueType,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ResourceTarget {
    Fixed(EntityRef),
    /// The id is the path parameter at this index.
    Parameter {
        entity_type: String,
        index: usize,
    },
}

/// One route of the table: a method and template, and the Cedar question it asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    name: String,
    methods: Vec<String>,
    template: Template,
    action: String,
    resource: ResourceTarget,
    context: Vec<ContextEntry>,
    principal: PrincipalSource,
    properties_from_body: bool,
    /// The candidate properties of a route without a body to read them from: checked one by
    /// one, and the allowed ones sent upstream.
    properties: Vec<String>,
    upstream_headers: UpstreamHeaders,
}

impl Route {
    /// Returns the route's name: its `name`, or `METHOD template` (a bounded label for logs
    /// and metrics).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Returns the path template as written.
    pub fn template(&self) -> &str {
        self.template.as_str()
    }

    /// Returns the action, as written in the route file.
    pub fn action(&self) -> &str {
        &self.action
    }

    /// Returns where the route's principal comes from.
    pub fn principal_source(&self) -> PrincipalSource {
        self.principal
    }

    /// Returns whether the top-level field names of the JSON body are checked as properties.
    pub fn properties_from_body(&self) -> bool {
        self.properties_from_body
    }

    /// Returns the route's `properties`: the candidates checked one by one when the request
    /// has no body to take them from, whose allowed ones `upstream_headers.properties` lists.
    /// Empty when the route lists none.
    pub fn properties(&self) -> &[String] {
        &self.properties
    }

    /// Returns the headers to add upstream when the request is allowed.
    pub fn upstream_headers(&self) -> &UpstreamHeaders {
        &self.upstream_headers
    }
}

/// A request matched to a route: the Cedar question it asks, without a principal yet.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteMatch<'s> {
    route: &'s Route,
    resource: EntityRef,
    context: Map<String, Value>,
}

impl<'s> RouteMatch<'s> {
    /// Returns the route, with its response settings.
    pub fn route(&self) -> &'s Route {
        self.route
    }

    /// Returns the action.
    pub fn action(&self) -> &'s str {
        &self.route.action
    }

    /// Returns the resource, with its id taken from the path where the route says so.
    pub fn resource(&self) -> &EntityRef {
        &self.resource
    }

    /// Returns the context built from the route's query parameters and headers.
    pub fn context(&self) -> &Map<String, Value> {
        &self.context
    }

    /// Returns the check this request asks for `principal`, with `properties` to decide one
    /// by one (the body's field names when the route says so).
    pub fn into_check_input(self, principal: EntityRef, properties: Vec<String>) -> CheckInput {
        CheckInput {
            context: self.context,
            properties,
            ..CheckInput::new(principal, self.route.action.clone(), self.resource)
        }
    }
}

/// The route file's text, for the table.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RouteSource<'a> {
    /// What errors print.
    pub(crate) path: &'a Path,
    pub(crate) text: &'a str,
}

/// A problem in a route file, at a line and column where it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RouteError {
    pub(crate) path: PathBuf,
    /// 1-based line and character column.
    pub(crate) position: Option<(usize, usize)>,
    pub(crate) message: String,
}

/// Every route of a bundle, checked as one table. Empty when the bundle has no route file:
/// then every request is refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RouteTable {
    /// Sorted by precedence, most specific first.
    routes: Vec<Route>,
    /// The routes of each method, as indexes into `routes`, in the same order.
    by_method: FxHashMap<String, Vec<usize>>,
}

/// The most errors found after parsing that are reported: each is located by parsing its
/// file again, so a file of thousands of broken routes must not cost thousands of parses.
const MAX_LOCATED_ERRORS: usize = 50;

/// A compiled route and where it was written, while the table is built.
struct Placed<'a> {
    route: Route,
    source: RouteSource<'a>,
    /// Its index in its file's `routes`.
    index: usize,
}

impl<'a> Placed<'a> {
    fn error_at(&self, field: &str, message: String) -> RouteError {
        error_at(self.source, self.index, field, message)
    }

    fn line(&self) -> Option<usize> {
        file::locate(self.source.text, self.index, "path")
            .map(|offset| line_column(self.source.text, offset).0)
    }
}

fn error_at(source: RouteSource<'_>, index: usize, field: &str, message: String) -> RouteError {
    RouteError {
        path: source.path.to_path_buf(),
        position: file::locate(source.text, index, field)
            .map(|offset| line_column(source.text, offset)),
        message,
    }
}

impl RouteTable {
    /// Parses and checks every route file; with a schema, actions and resource types must be
    /// declared, and the resource type must be one the action applies to.
    pub(crate) fn build(
        sources: &[RouteSource<'_>],
        schema: Option<&Schema>,
    ) -> Result<Self, Vec<RouteError>> {
        let mut errors = Vec::new();
        let mut placed = Vec::new();
        for &source in sources {
            let parsed = match file::parse(source.text) {
                Ok(parsed) => parsed,
                Err((offset, message)) => {
                    errors.push(RouteError {
                        path: source.path.to_path_buf(),
                        position: offset.map(|o| line_column(source.text, o)),
                        message,
                    });
                    continue;
                }
            };
            for (index, spec) in parsed.routes.into_iter().enumerate() {
                if errors.len() >= MAX_LOCATED_ERRORS {
                    break;
                }
                match compile(spec, schema) {
                    Ok(route) => placed.push(Placed {
                        route,
                        source,
                        index,
                    }),
                    Err((field, message)) => errors.push(error_at(source, index, field, message)),
                }
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        // Stable: routes of the same shape stay in file order, so a tie names the later one.
        placed.sort_by(|a, b| b.route.template.precedence(&a.route.template));
        for (i, later) in placed.iter().enumerate() {
            if errors.len() >= MAX_LOCATED_ERRORS {
                break;
            }
            // Only the nearest tie is reported: n copies of a route are n - 1 errors, not n².
            let nearest_tie = placed[..i]
                .iter()
                .rev()
                .take_while(|earlier| {
                    earlier.route.template.precedence(&later.route.template) == Ordering::Equal
                })
                .find_map(|earlier| {
                    let method = later
                        .route
                        .methods
                        .iter()
                        .find(|m| earlier.route.methods.contains(m))?;
                    Some((earlier, method))
                });
            if let Some((earlier, method)) = nearest_tie {
                let at = match earlier.line() {
                    Some(line) => format!("{}:{line}", earlier.source.path.display()),
                    None => earlier.source.path.display().to_string(),
                };
                errors.push(later.error_at(
                    "path",
                    format!(
                        "`{method} {}` ties with `{method} {}` at {at}: the same method and \
                         the same shape, so one of them could never match",
                        later.route.template.as_str(),
                        earlier.route.template.as_str(),
                    ),
                ));
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let routes: Vec<Route> = placed.into_iter().map(|p| p.route).collect();
        let mut by_method: FxHashMap<String, Vec<usize>> = FxHashMap::default();
        for (i, route) in routes.iter().enumerate() {
            for method in &route.methods {
                by_method.entry(method.clone()).or_default().push(i);
            }
        }
        Ok(Self { routes, by_method })
    }

    /// Returns the number of routes.
    pub(crate) fn len(&self) -> usize {
        self.routes.len()
    }

    /// Matches a request: `raw_path_and_query` as it arrived (`/v1/documents/d1?x=1`), and
    /// `headers` to look up the lower-case header names the route reads.
    pub(crate) fn route<'s, 'h>(
        &'s self,
        method: &str,
        raw_path_and_query: &str,
        headers: &dyn Fn(&str) -> Option<&'h str>,
    ) -> Result<RouteMatch<'s>, RouteRefusal> {
        let (path, query) = raw_path_and_query
            .split_once('?')
            .unwrap_or((raw_path_and_query, ""));
        let segments = normalize::normalize_path(path).map_err(RouteRefusal::PathRefused)?;
        let candidates = self.by_method.get(method).map_or(&[][..], Vec::as_slice);
        for &i in candidates {
            let Some(route) = self.routes.get(i) else {
                continue;
            };
            if let Some(parameters) = route.template.matches(&segments) {
                return route.resolve(&parameters, query, headers);
            }
        }
        let mut allowed: Vec<String> = self
            .routes
            .iter()
            .filter(|route| route.template.matches(&segments).is_some())
            .flat_map(|route| route.methods.iter().cloned())
            .collect();
        if allowed.is_empty() {
            return Err(RouteRefusal::NoRoute);
        }
        allowed.sort();
        allowed.dedup();
        Err(RouteRefusal::MethodNotAllowed { allowed })
    }
}

impl Route {
    /// Builds the match: the resource from the path's parameters, the context from the query
    /// and headers.
    fn resolve<'s, 'h>(
        &'s self,
        parameters: &[&str],
        query: &str,
        headers: &dyn Fn(&str) -> Option<&'h str>,
    ) -> Result<RouteMatch<'s>, RouteRefusal> {
        let resource = match &self.resource {
            ResourceTarget::Fixed(entity) => entity.clone(),
            ResourceTarget::Parameter { entity_type, index } => {
                let raw = parameters.get(*index).copied().unwrap_or_default();
                let id = normalize::decode_parameter(raw).map_err(RouteRefusal::PathRefused)?;
                EntityRef::new(entity_type.clone(), id)
            }
        };
        let mut context = Map::new();
        for entry in &self.context {
            let bad = |reason: String| RouteRefusal::BadContext {
                key: entry.key.clone(),
                reason,
            };
            let values: Vec<String> = match &entry.source {
                ValueSource::Header(name) => headers(name)
                    .map(|v| vec![v.trim().to_owned()])
                    .unwrap_or_default(),
                ValueSource::Query(name) => normalize::query_values(query, name).map_err(|()| {
                    bad(format!(
                        "the query has a malformed percent-encoding near `{name}`"
                    ))
                })?,
            };
            let describe = || match &entry.source {
                ValueSource::Header(name) => format!("the header `{name}`"),
                ValueSource::Query(name) => format!("the query parameter `{name}`"),
            };
            let value = match (entry.value_type, values.as_slice()) {
                (_, []) => continue,
                (ValueType::Set, _) => Value::Array(
                    values
                        .iter()
                        .flat_map(|v| v.split(|c: char| c == ',' || c.is_ascii_whitespace()))
                        .filter(|v| !v.is_empty())
                        .map(|v| Value::String(v.to_owned()))
                        .collect(),
                ),
                (_, [_, _, ..]) => return Err(bad(format!("{} is repeated", describe()))),
                (ValueType::String, [one]) => Value::String(one.clone()),
                (ValueType::Bool, [one]) => match one.as_str() {
                    "true" => Value::Bool(true),
                    "false" => Value::Bool(false),
                    _ => return Err(bad(format!("{} is not `true` or `false`", describe()))),
                },
                (ValueType::Long, [one]) => match one.parse::<i64>() {
                    Ok(n) => Value::from(n),
                    Err(_) => return Err(bad(format!("{} is not an integer", describe()))),
                },
            };
            context.insert(entry.key.clone(), value);
        }
        Ok(RouteMatch {
            route: self,
            resource,
            context,
        })
    }
}

/// Methods whose requests carry a body whose fields can be checked as properties.
const BODY_METHODS: [&str; 3] = ["POST", "PUT", "PATCH"];

/// Checks one route on its own (and against the schema): the route, or the field at fault and
/// what is wrong.
fn compile(spec: RouteSpec, schema: Option<&Schema>) -> Result<Route, (&'static str, String)> {
    let RouteSpec {
        name,
        method,
        path: Parsed(template),
        action: Parsed(action),
        resource,
        context,
        principal,
        properties_from_body,
        properties,
        upstream_headers,
    } = spec;
    let methods: Vec<String> = method.0.into_iter().map(|m| m.0).collect();
    let resource = match resource {
        ResourceSpec::Fixed { entity_type, id } => {
            ResourceTarget::Fixed(EntityRef::new(entity_type, id))
        }
        ResourceSpec::Typed { entity_type, id } => {
            match id.strip_prefix('{').and_then(|rest| rest.strip_suffix('}')) {
                Some(parameter) => match template.parameter_index(parameter) {
                    Some(index) => ResourceTarget::Parameter { entity_type, index },
                    None => {
                        return Err((
                            "resource",
                            format!(
                                "the resource id `{id}` names a parameter that `{}` does not have",
                                template.as_str()
                            ),
                        ));
                    }
                },
                None => ResourceTarget::Fixed(EntityRef::new(entity_type, id)),
            }
        }
    };
    if let Some(schema) = schema {
        check_against_schema(&action, &resource, schema)?;
    }
    if properties_from_body
        && let Some(method) = methods.iter().find(|m| !BODY_METHODS.contains(&m.as_str()))
    {
        return Err((
            "properties_from_body",
            format!(
                "`properties_from_body` needs a request body, and `{method}` requests have none \
                 to check (use it on {} routes)",
                BODY_METHODS.join(", ")
            ),
        ));
    }
    let properties = properties.map(|names| names.0).unwrap_or_default();
    match (
        properties_from_body,
        properties.is_empty(),
        upstream_headers.properties.is_some(),
    ) {
        (true, false, _) => {
            return Err((
                "properties",
                "`properties` and `properties_from_body` both say which properties are checked: \
                 use one"
                    .to_owned(),
            ));
        }
        (false, true, true) => {
            return Err((
                "upstream_headers",
                "`upstream_headers.properties` sends the allowed properties upstream, and this \
                 route has none to check: list the candidates in `properties`"
                    .to_owned(),
            ));
        }
        (false, false, false) => {
            return Err((
                "properties",
                "`properties` lists the candidates for `upstream_headers.properties`, which \
                 this route does not set"
                    .to_owned(),
            ));
        }
        _ => {}
    }
    let mut entries = Vec::with_capacity(context.len());
    for (Parsed(key), spec) in context {
        entries.push(context_entry(key.0, spec)?);
    }
    let name = name.unwrap_or_else(|| format!("{} {}", methods.join(","), template.as_str()));
    Ok(Route {
        name,
        methods,
        template,
        action: action.written,
        resource,
        context: entries,
        principal,
        properties_from_body,
        properties,
        upstream_headers: UpstreamHeaders {
            principal: upstream_headers.principal.map(|h| h.0.0),
            properties: upstream_headers.properties.map(|h| h.0.0),
        },
    })
}

fn context_entry(key: String, spec: ContextSpec) -> Result<ContextEntry, (&'static str, String)> {
    let source = match (spec.header, spec.query) {
        (Some(Parsed(header)), None) => ValueSource::Header(header.0),
        (None, Some(query)) if !query.is_empty() => ValueSource::Query(query),
        (None, Some(_)) => {
            return Err((
                "context",
                format!("context `{key}`: the query parameter name must not be empty"),
            ));
        }
        (Some(_), Some(_)) | (None, None) => {
            return Err((
                "context",
                format!("context `{key}` needs exactly one of `header` and `query`"),
            ));
        }
    };
    Ok(ContextEntry {
        key,
        source,
        value_type: spec.value_type,
    })
}

/// With a schema, the action must be declared, the resource type too, and the action must
/// apply to it: otherwise every request on the route would be invalid or denied.
fn check_against_schema(
    action: &file::ActionText,
    resource: &ResourceTarget,
    schema: &Schema,
) -> Result<(), (&'static str, String)> {
    let Some(action_uid) = schema.actions().find(|uid| uid.to_string() == action.uid) else {
        return Err((
            "action",
            format!(
                "the action `{}` is not declared in the schema",
                action.written
            ),
        ));
    };
    let resource_type = match resource {
        ResourceTarget::Fixed(entity) => &entity.entity_type,
        ResourceTarget::Parameter { entity_type, .. } => entity_type,
    };
    if !schema
        .entity_types()
        .any(|t| t.to_string() == *resource_type)
    {
        return Err((
            "resource",
            format!("the entity type `{resource_type}` is not declared in the schema"),
        ));
    }
    let applies = schema
        .resources_for_action(action_uid)
        .is_some_and(|mut types| types.any(|t| t.to_string() == *resource_type));
    if !applies {
        return Err((
            "resource",
            format!(
                "the action `{}` does not apply to `{resource_type}` resources in the schema",
                action.written
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
