use super::*;

const SCHEMA: &str = r#"
entity User;
entity Api;
entity Document;
action read, edit appliesTo { principal: User, resource: Document };
action ListUsers appliesTo { principal: User, resource: Api };
"#;

const ROUTES: &str = r#"
routes:
  - method: [GET, HEAD]
    path: /v1/documents/{id}
    action: read
    resource: {type: Document, id: "{id}"}
    context:
      mfa: {header: X-Acme-MFA, type: bool}
      scopes: {query: scope, type: set}
      lang: {query: lang}
      limit: {query: limit, type: long}
    upstream_headers: {principal: X-Verdict-Principal}
  - method: GET
    path: /v1/documents/new
    action: read
    resource: Document::"template"
  - method: PATCH
    path: /v1/documents/{id}
    action: edit
    resource: {type: Document, id: "{id}"}
    properties_from_body: true
    upstream_headers: {properties: x-verdict-allowed-properties}
  - name: admin catch-all
    method: GET
    path: /v1/admin/**
    action: ListUsers
    resource: Api::"admin"
    principal: mtls
"#;

fn schema() -> Schema {
    Schema::from_cedarschema_str(SCHEMA).unwrap().0
}

fn build(text: &str) -> Result<RouteTable, Vec<RouteError>> {
    let source = RouteSource {
        path: Path::new("b/routes.yaml"),
        text,
    };
    RouteTable::build(&[source], Some(&schema()))
}

/// The errors as `file:line:column: message` lines.
fn errors(text: &str) -> Vec<String> {
    build(text)
        .unwrap_err()
        .into_iter()
        .map(|e| match e.position {
            Some((line, column)) => format!("{}:{line}:{column}: {}", e.path.display(), e.message),
            None => format!("{}: {}", e.path.display(), e.message),
        })
        .collect()
}

fn no_headers(_: &str) -> Option<&'static str> {
    None
}

fn route<'t>(
    table: &'t RouteTable,
    method: &str,
    path: &str,
) -> Result<RouteMatch<'t>, RouteRefusal> {
    table.route(method, path, &no_headers)
}

/// The resource id and route name a request matches.
fn target(table: &RouteTable, method: &str, path: &str) -> Result<(String, String), RouteRefusal> {
    route(table, method, path).map(|m| (m.resource().to_string(), m.route().name().to_owned()))
}

#[test]
fn a_parameter_names_the_resource_and_a_fixed_resource_is_fixed() {
    let table = build(ROUTES).unwrap();
    assert_eq!(table.len(), 4);
    let m = route(&table, "GET", "/v1/documents/roadmap").unwrap();
    assert_eq!(m.action(), "read");
    assert_eq!(m.resource(), &EntityRef::new("Document", "roadmap"));
    assert_eq!(
        m.route().upstream_headers().principal(),
        Some("x-verdict-principal")
    );
    assert_eq!(m.route().principal_source(), PrincipalSource::Jwt);
    let m = route(&table, "GET", "/v1/admin/users/u1").unwrap();
    assert_eq!(m.resource(), &EntityRef::new("Api", "admin"));
    assert_eq!(m.route().name(), "admin catch-all");
    assert_eq!(m.route().principal_source(), PrincipalSource::Mtls);
    let m = route(&table, "PATCH", "/v1/documents/d1").unwrap();
    assert!(m.route().properties_from_body());
    assert_eq!(
        m.route().upstream_headers().properties(),
        Some("x-verdict-allowed-properties")
    );
}

#[test]
fn a_route_lists_its_candidate_properties_for_the_upstream_header() {
    let text = "routes:
  - method: GET
    path: /v1/documents/{id}
    action: read
    resource: {type: Document, id: \"{id}\"}
    properties: [title, body, owner]
    upstream_headers: {properties: x-verdict-allowed-properties}
";
    let table = build(text).unwrap();
    let m = route(&table, "GET", "/v1/documents/d1").unwrap();
    assert_eq!(m.route().properties(), ["title", "body", "owner"]);
    let table = build(ROUTES).unwrap();
    let m = route(&table, "PATCH", "/v1/documents/d1").unwrap();
    assert!(m.route().properties().is_empty(), "the body names them");
    assert!(is_listable_property("shippingAddress"));
    for bad in ["", "a b", "a,b", "caf\u{e9}", "a\tb"] {
        assert!(!is_listable_property(bad), "{bad:?}");
    }
}

#[test]
fn the_most_specific_template_wins() {
    let table = build(ROUTES).unwrap();
    assert_eq!(
        target(&table, "GET", "/v1/documents/new"),
        Ok((
            "Document::\"template\"".into(),
            "GET /v1/documents/new".into()
        ))
    );
    assert_eq!(
        target(&table, "GET", "/v1/documents/other"),
        Ok((
            "Document::\"other\"".into(),
            "GET,HEAD /v1/documents/{id}".into()
        ))
    );
    // `/**` matches the prefix itself and anything below it.
    assert!(route(&table, "GET", "/v1/admin").is_ok());
    assert!(route(&table, "GET", "/v1/admin/a/b/c").is_ok());
    assert_eq!(
        route(&table, "GET", "/v1/administrators").unwrap_err(),
        RouteRefusal::NoRoute
    );
}

#[test]
fn unmatched_routes_are_refused() {
    let table = build(ROUTES).unwrap();
    assert_eq!(
        route(&table, "GET", "/v1/orders/o1").unwrap_err(),
        RouteRefusal::NoRoute
    );
    assert_eq!(
        route(&table, "GET", "/v1/documents").unwrap_err(),
        RouteRefusal::NoRoute
    );
    assert_eq!(
        route(&table, "GET", "/").unwrap_err(),
        RouteRefusal::NoRoute
    );
    assert_eq!(
        route(&table, "DELETE", "/v1/documents/d1").unwrap_err(),
        RouteRefusal::MethodNotAllowed {
            allowed: vec!["GET".into(), "HEAD".into(), "PATCH".into()]
        }
    );
    // A bundle without routes refuses everything.
    assert_eq!(
        RouteTable::default()
            .route("GET", "/", &no_headers)
            .unwrap_err(),
        RouteRefusal::NoRoute
    );
}

#[test]
fn paths_and_methods_are_case_sensitive() {
    let table = build(ROUTES).unwrap();
    assert_eq!(
        route(&table, "GET", "/V1/Documents/d1").unwrap_err(),
        RouteRefusal::NoRoute
    );
    assert_eq!(
        route(&table, "get", "/v1/documents/d1").unwrap_err(),
        RouteRefusal::MethodNotAllowed {
            allowed: vec!["GET".into(), "HEAD".into(), "PATCH".into()]
        }
    );
    // The id keeps its case.
    assert_eq!(
        route(&table, "GET", "/v1/documents/RoadMap")
            .unwrap()
            .resource()
            .id,
        "RoadMap"
    );
}

#[test]
fn trailing_and_duplicate_slashes_and_dot_segments_are_normalised() {
    let table = build(ROUTES).unwrap();
    for path in [
        "/v1/documents/d1/",
        "//v1//documents//d1",
        "/v1/./documents/d1",
        "/v1/documents/x/../d1",
        "/v1/%64ocuments/d1",
    ] {
        assert_eq!(
            route(&table, "GET", path).unwrap().resource(),
            &EntityRef::new("Document", "d1"),
            "{path}"
        );
    }
    // Climbing out of the documents resolves to the path the service serves: the admin route.
    assert_eq!(
        route(&table, "GET", "/v1/documents/%2e%2e/admin/users")
            .unwrap()
            .route()
            .name(),
        "admin catch-all"
    );
}

#[test]
fn encoded_slashes_and_escapes_above_the_root_are_refused_never_rematched() {
    let table = build(ROUTES).unwrap();
    for (path, why) in [
        ("/v1/documents/..%2fadmin", PathRefusal::EncodedSlash),
        ("/v1/documents/..%2Fadmin/users", PathRefusal::EncodedSlash),
        ("/v1/documents/a%2fb", PathRefusal::EncodedSlash),
        ("/v1/documents/..%5cadmin", PathRefusal::Backslash),
        ("/../v1/admin", PathRefusal::AboveRoot),
        ("/v1/documents/%zz", PathRefusal::InvalidPercentEncoding),
        ("/v1/documents/a b", PathRefusal::InvalidCharacter),
        ("/v1/documents/%00", PathRefusal::InvalidParameter),
        ("v1/documents/d1", PathRefusal::NotAbsolute),
    ] {
        assert_eq!(
            route(&table, "GET", path).unwrap_err(),
            RouteRefusal::PathRefused(why),
            "{path}"
        );
    }
}

#[test]
fn parameters_are_percent_decoded_for_the_resource_id() {
    let table = build(ROUTES).unwrap();
    assert_eq!(
        route(&table, "GET", "/v1/documents/caf%C3%A9%20menu")
            .unwrap()
            .resource()
            .id,
        "café menu"
    );
}

#[test]
fn context_comes_from_the_listed_query_parameters_and_headers_only() {
    let table = build(ROUTES).unwrap();
    let headers = |name: &str| match name {
        "x-acme-mfa" => Some("true"),
        "authorization" => Some("Bearer secret"),
        _ => None,
    };
    let m = table
        .route(
            "GET",
            "/v1/documents/d1?scope=documents:read+documents:write&scope=x&lang=en%2DGB&other=1&limit=5",
            &headers,
        )
        .unwrap();
    assert_eq!(
        Value::Object(m.context().clone()),
        serde_json::json!({
            "mfa": true,
            "scopes": ["documents:read", "documents:write", "x"],
            "lang": "en-GB",
            "limit": 5,
        })
    );
    let input = m.into_check_input(EntityRef::new("User", "bob"), vec![]);
    assert_eq!(input.action, "read");
    assert_eq!(input.resource, EntityRef::new("Document", "d1"));
    assert_eq!(input.context.len(), 4);
    // Missing values are absent, for `context has …`.
    let m = route(&table, "GET", "/v1/documents/d1").unwrap();
    assert!(m.context().is_empty());
}

#[test]
fn repeated_or_malformed_context_values_are_refused() {
    let table = build(ROUTES).unwrap();
    let bad = |path: &str, headers: &dyn Fn(&str) -> Option<&'static str>| match table
        .route("GET", path, headers)
        .unwrap_err()
    {
        RouteRefusal::BadContext { key, reason } => format!("{key}: {reason}"),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        bad("/v1/documents/d1?lang=en&lang=fr", &no_headers),
        "lang: the query parameter `lang` is repeated"
    );
    assert_eq!(
        bad("/v1/documents/d1?limit=ten", &no_headers),
        "limit: the query parameter `limit` is not an integer"
    );
    assert_eq!(
        bad("/v1/documents/d1", &|_| Some("yes")),
        "mfa: the header `x-acme-mfa` is not `true` or `false`"
    );
    assert!(bad("/v1/documents/d1?lang=%zz", &no_headers).starts_with("lang: "));
}

#[test]
fn load_errors_name_file_line_and_column() {
    let cases: &[(&str, &str)] = &[
        (
            "routes:\n  - method: GET\n    path: /a\n    action: read\n    resource: Document::\"d\"\n    colour: red\n",
            "b/routes.yaml:6:5: routes[0]: unknown field `colour`, expected one of `name`, `method`, `path`, `action`, `resource`, `context`, `principal`, `properties_from_body`, `properties`, `upstream_headers`",
        ),
        (
            "routes:\n  - method: GET\n    path: /a/{id\n    action: read\n    resource: Document::\"d\"\n",
            "b/routes.yaml:3:11: routes[0].path: `/a/{id`: a parameter is a whole segment, `{name}`",
        ),
        (
            "routes:\n  - method: get\n    path: /a\n    action: read\n    resource: Document::\"d\"\n",
            "b/routes.yaml:2:13: routes[0].method: `get` is not an http method as routes write them: methods are case-sensitive and upper-case, such as `GET`",
        ),
        (
            "routes:\n  - {method: GET, path: /a, action: write, resource: Document::\"d\"}\n",
            "b/routes.yaml:2:37: the action `write` is not declared in the schema",
        ),
        (
            "routes:\n  - method: GET\n    path: /a/{id}\n    action: read\n    resource: {type: Folder, id: \"{id}\"}\n",
            "b/routes.yaml:5:15: the entity type `Folder` is not declared in the schema",
        ),
        (
            "routes:\n  - method: GET\n    path: /a/{id}\n    action: ListUsers\n    resource: {type: Document, id: \"{id}\"}\n",
            "b/routes.yaml:5:15: the action `ListUsers` does not apply to `Document` resources in the schema",
        ),
        (
            "routes:\n  - method: GET\n    path: /a/{id}\n    action: read\n    resource: {type: Document, id: \"{docId}\"}\n",
            "b/routes.yaml:5:15: the resource id `{docId}` names a parameter that `/a/{id}` does not have",
        ),
        (
            "routes:\n  - method: GET\n    path: /a/{id}\n    action: read\n    resource: {type: Document, id: \"{id}\"}\n    properties_from_body: true\n",
            "b/routes.yaml:6:27: `properties_from_body` needs a request body, and `GET` requests have none to check (use it on POST, PUT, PATCH routes)",
        ),
        (
            "routes:\n  - method: GET\n    path: /a\n    action: read\n    resource: Document::\"d\"\n    context:\n      token: {header: Authorization}\n",
            "b/routes.yaml:7:23: routes[0].context.token.header: `Authorization` carries credentials; it is never copied into a context",
        ),
        (
            "routes:\n  - method: GET\n    path: /a\n    action: read\n    resource: Document::\"d\"\n    context:\n      property: {query: p}\n",
            "b/routes.yaml:7:7: routes[0].context: `property` is set by Verdict for property-level checks; a route cannot set it",
        ),
        (
            "routes:\n  - method: GET\n    path: /a\n    action: read\n    resource: Document::\"d\"\n    context:\n      x: {query: p, header: h}\n",
            "b/routes.yaml:7:7: context `x` needs exactly one of `header` and `query`",
        ),
        (
            "routes:\n  - method: GET\n    path: /a\n    action: read\n    resource: Document::\"d\"\n    upstream_headers: {properties: x-p}\n",
            "b/routes.yaml:6:23: `upstream_headers.properties` sends the allowed properties upstream, and this route has none to check: list the candidates in `properties`",
        ),
        (
            "routes:\n  - method: GET\n    path: /a\n    action: read\n    resource: Document::\"d\"\n    properties: [a, b]\n",
            "b/routes.yaml:6:17: `properties` lists the candidates for `upstream_headers.properties`, which this route does not set",
        ),
        (
            "routes:\n  - method: PATCH\n    path: /a\n    action: edit\n    resource: Document::\"d\"\n    properties_from_body: true\n    properties: [a]\n",
            "b/routes.yaml:7:17: `properties` and `properties_from_body` both say which properties are checked: use one",
        ),
        (
            "routes:\n  - method: GET\n    path: /a\n    action: read\n    resource: Document::\"d\"\n    properties: [a, \"b,c\"]\n",
            "b/routes.yaml:6:21: routes[0].properties[1]: `b,c` is not a property name a header can carry: printable ASCII without spaces or commas",
        ),
        (
            "routes:\n  - method: GET\n    path: /a\n    action: read\n    resource: Document::\"d\"\n    properties: [a, a]\n",
            "b/routes.yaml:6:17: routes[0].properties: the property `a` is listed twice",
        ),
    ];
    for (text, wanted) in cases {
        assert_eq!(errors(text), [*wanted], "{text}");
    }
}

#[test]
fn routes_with_the_same_method_and_shape_tie_and_name_both_lines() {
    let text = "routes:
  - method: [GET, PUT]
    path: /v1/documents/{id}
    action: read
    resource: {type: Document, id: \"{id}\"}
  - method: POST
    path: /v1/documents/{docId}
    action: edit
    resource: {type: Document, id: \"{docId}\"}
  - method: [HEAD, PUT]
    path: /v1/documents/{docId}
    action: edit
    resource: {type: Document, id: \"{docId}\"}
";
    assert_eq!(
        errors(text),
        [
            "b/routes.yaml:11:11: `PUT /v1/documents/{docId}` ties with `PUT /v1/documents/{id}` at \
          b/routes.yaml:3: the same method and the same shape, so one of them could never match"
        ]
    );
}

#[test]
fn ties_across_files_name_the_other_file() {
    let one =
        "routes:\n  - {method: GET, path: /a/**, action: ListUsers, resource: Api::\"admin\"}\n";
    let two =
        "\nroutes:\n  - {method: GET, path: /a/**, action: ListUsers, resource: Api::\"admin\"}\n";
    let sources = [
        RouteSource {
            path: Path::new("a.routes.yaml"),
            text: one,
        },
        RouteSource {
            path: Path::new("b.routes.yaml"),
            text: two,
        },
    ];
    let errors = RouteTable::build(&sources, None).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].path, Path::new("b.routes.yaml"));
    assert_eq!(errors[0].position, Some((3, 25)));
    assert!(
        errors[0].message.contains("at a.routes.yaml:2"),
        "{}",
        errors[0].message
    );
}

#[test]
fn without_a_schema_any_action_and_type_are_accepted() {
    let text = "routes:\n  - {method: GET, path: \"/x/{id}\", action: anything, resource: {type: Thing, id: \"{id}\"}}\n";
    let source = RouteSource {
        path: Path::new("routes.yaml"),
        text,
    };
    let table = RouteTable::build(&[source], None).unwrap();
    assert_eq!(
        table.route("GET", "/x/1", &no_headers).unwrap().resource(),
        &EntityRef::new("Thing", "1")
    );
}

#[test]
fn a_syntax_error_has_its_position() {
    assert_eq!(
        errors("routes:\n  - method: GET\n    path: \"/a\n"),
        ["b/routes.yaml:4:1: found unexpected end of stream".to_owned()]
    );
}

#[test]
fn hundreds_of_copies_of_a_route_report_a_bounded_number_of_errors() {
    let route = "  - {method: GET, path: /a, action: ListUsers, resource: Api::\"admin\"}\n";
    let text = format!("routes:\n{}", route.repeat(200));
    let errors = errors(&text);
    assert_eq!(errors.len(), MAX_LOCATED_ERRORS);
    assert!(
        errors[0].starts_with("b/routes.yaml:3:25: "),
        "{}",
        errors[0]
    );
    assert!(errors[0].contains("at b/routes.yaml:2:"), "{}", errors[0]);
}
