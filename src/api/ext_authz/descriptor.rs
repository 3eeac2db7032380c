//! The descriptors gRPC server reflection serves for `envoy.service.auth.v3.Authorization`.
//!
//! `envoy-types` ships the compiled Rust types but no descriptor set, and its `.proto` files
//! are not reachable from a build script (a crate's sources have no stable path for another
//! crate's build). So the descriptors are assembled here with `prost-types`: a **subset** of
//! Envoy's files with Envoy's file names, packages, message names and field numbers, holding
//! the fields Verdict reads and writes (the others, such as `metadata_context` or
//! `dynamic_metadata`, are left out together with the files they would pull in: `Struct`,
//! `Timestamp`, `Address`, the validation annotations). A client that learns the service by
//! reflection (grpcurl) can list it, describe it and call it with every field Verdict uses;
//! a field left out is one Verdict ignores anyway. The unit tests decode messages encoded
//! with `envoy-types` through these descriptors, so a field number that drifted would fail.

use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{
    DescriptorProto, EnumDescriptorProto, EnumValueDescriptorProto, FieldDescriptorProto,
    FileDescriptorProto, FileDescriptorSet, MessageOptions, MethodDescriptorProto,
    OneofDescriptorProto, ServiceDescriptorProto,
};

const BASE: &str = "envoy/config/core/v3/base.proto";
const HTTP_STATUS: &str = "envoy/type/v3/http_status.proto";
const RPC_STATUS: &str = "google/rpc/status.proto";
const ATTRIBUTE_CONTEXT: &str = "envoy/service/auth/v3/attribute_context.proto";
const EXTERNAL_AUTH: &str = "envoy/service/auth/v3/external_auth.proto";

/// Returns the descriptor set of the ext_authz service: its file and the files it imports.
pub fn file_descriptor_set() -> FileDescriptorSet {
    FileDescriptorSet {
        file: vec![
            rpc_status(),
            http_status(),
            base(),
            attribute_context(),
            external_auth(),
        ],
    }
}

fn file(
    name: &str,
    package: &str,
    dependencies: &[&str],
    messages: Vec<DescriptorProto>,
    enums: Vec<EnumDescriptorProto>,
) -> FileDescriptorProto {
    FileDescriptorProto {
        name: Some(name.to_owned()),
        package: Some(package.to_owned()),
        dependency: dependencies.iter().map(|d| (*d).to_owned()).collect(),
        message_type: messages,
        enum_type: enums,
        syntax: Some("proto3".to_owned()),
        ..FileDescriptorProto::default()
    }
}

fn message(name: &str, field: Vec<FieldDescriptorProto>) -> DescriptorProto {
    DescriptorProto {
        name: Some(name.to_owned()),
        field,
        ..DescriptorProto::default()
    }
}

/// A singular scalar field.
fn scalar(name: &str, number: i32, ty: Type) -> FieldDescriptorProto {
    FieldDescriptorProto {
        name: Some(name.to_owned()),
        number: Some(number),
        label: Some(Label::Optional as i32),
        r#type: Some(ty as i32),
        json_name: Some(json_name(name)),
        ..FieldDescriptorProto::default()
    }
}

/// A field of a message or enum type (`type_name` fully qualified, without the dot).
fn typed(name: &str, number: i32, ty: Type, type_name: &str) -> FieldDescriptorProto {
    FieldDescriptorProto {
        type_name: Some(format!(".{type_name}")),
        ..scalar(name, number, ty)
    }
}

fn repeated(field: FieldDescriptorProto) -> FieldDescriptorProto {
    FieldDescriptorProto {
        label: Some(Label::Repeated as i32),
        ..field
    }
}

/// A `map<string, string>` field `name` of `parent`, and the entry message it needs.
fn string_map(parent: &str, name: &str, number: i32) -> (FieldDescriptorProto, DescriptorProto) {
    let entry = format!("{}Entry", upper_camel(name));
    let field = repeated(typed(
        name,
        number,
        Type::Message,
        &format!("{parent}.{entry}"),
    ));
    let message = DescriptorProto {
        options: Some(MessageOptions {
            map_entry: Some(true),
            ..MessageOptions::default()
        }),
        ..self::message(
            &entry,
            vec![
                scalar("key", 1, Type::String),
                scalar("value", 2, Type::String),
            ],
        )
    };
    (field, message)
}

fn enumeration(name: &str, values: &[(&str, i32)]) -> EnumDescriptorProto {
    EnumDescriptorProto {
        name: Some(name.to_owned()),
        value: values
            .iter()
            .map(|(name, number)| EnumValueDescriptorProto {
                name: Some((*name).to_owned()),
                number: Some(*number),
                options: None,
            })
            .collect(),
        ..EnumDescriptorProto::default()
    }
}

/// protoc's JSON name: `raw_body` is `rawBody`.
fn json_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// `context_extensions` is `ContextExtensions`, the map entry's prefix.
fn upper_camel(name: &str) -> String {
    let camel = json_name(name);
    let mut chars = camel.chars();
    chars
        .next()
        .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

fn rpc_status() -> FileDescriptorProto {
    file(
        RPC_STATUS,
        "google.rpc",
        &[],
        vec![message(
            "Status",
            vec![
                scalar("code", 1, Type::Int32),
                scalar("message", 2, Type::String),
            ],
        )],
        vec![],
    )
}

fn http_status() -> FileDescriptorProto {
    file(
        HTTP_STATUS,
        "envoy.type.v3",
        &[],
        vec![message(
            "HttpStatus",
            vec![typed("code", 1, Type::Enum, "envoy.type.v3.StatusCode")],
        )],
        vec![enumeration(
            "StatusCode",
            &[
                ("Empty", 0),
                ("OK", 200),
                ("BadRequest", 400),
                ("Unauthorized", 401),
                ("Forbidden", 403),
                ("InternalServerError", 500),
                ("ServiceUnavailable", 503),
            ],
        )],
    )
}

fn base() -> FileDescriptorProto {
    let option = DescriptorProto {
        enum_type: vec![enumeration(
            "HeaderAppendAction",
            &[
                ("APPEND_IF_EXISTS_OR_ADD", 0),
                ("ADD_IF_ABSENT", 1),
                ("OVERWRITE_IF_EXISTS_OR_ADD", 2),
                ("OVERWRITE_IF_EXISTS", 3),
            ],
        )],
        ..message(
            "HeaderValueOption",
            vec![
                typed(
                    "header",
                    1,
                    Type::Message,
                    "envoy.config.core.v3.HeaderValue",
                ),
                typed(
                    "append_action",
                    3,
                    Type::Enum,
                    "envoy.config.core.v3.HeaderValueOption.HeaderAppendAction",
                ),
                scalar("keep_empty_value", 4, Type::Bool),
            ],
        )
    };
    file(
        BASE,
        "envoy.config.core.v3",
        &[],
        vec![
            message(
                "HeaderValue",
                vec![
                    scalar("key", 1, Type::String),
                    scalar("value", 2, Type::String),
                    scalar("raw_value", 3, Type::Bytes),
                ],
            ),
            option,
            message(
                "HeaderMap",
                vec![repeated(typed(
                    "headers",
                    1,
                    Type::Message,
                    "envoy.config.core.v3.HeaderValue",
                ))],
            ),
        ],
        vec![],
    )
}

fn attribute_context() -> FileDescriptorProto {
    const CONTEXT: &str = "envoy.service.auth.v3.AttributeContext";
    let peer_name = format!("{CONTEXT}.Peer");
    let (labels, labels_entry) = string_map(&peer_name, "labels", 3);
    let peer = DescriptorProto {
        nested_type: vec![labels_entry],
        ..message(
            "Peer",
            vec![
                scalar("service", 2, Type::String),
                labels,
                scalar("principal", 4, Type::String),
                scalar("certificate", 5, Type::String),
            ],
        )
    };
    let request = message(
        "Request",
        vec![typed(
            "http",
            2,
            Type::Message,
            &format!("{CONTEXT}.HttpRequest"),
        )],
    );
    let (headers, headers_entry) = string_map(&format!("{CONTEXT}.HttpRequest"), "headers", 3);
    let http_request = DescriptorProto {
        nested_type: vec![headers_entry],
        ..message(
            "HttpRequest",
            vec![
                scalar("id", 1, Type::String),
                scalar("method", 2, Type::String),
                headers,
                scalar("path", 4, Type::String),
                scalar("host", 5, Type::String),
                scalar("scheme", 6, Type::String),
                scalar("query", 7, Type::String),
                scalar("fragment", 8, Type::String),
                scalar("size", 9, Type::Int64),
                scalar("protocol", 10, Type::String),
                scalar("body", 11, Type::String),
                scalar("raw_body", 12, Type::Bytes),
                typed(
                    "header_map",
                    13,
                    Type::Message,
                    "envoy.config.core.v3.HeaderMap",
                ),
            ],
        )
    };
    let (extensions, extensions_entry) = string_map(CONTEXT, "context_extensions", 10);
    let context = DescriptorProto {
        nested_type: vec![peer, request, http_request, extensions_entry],
        ..message(
            "AttributeContext",
            vec![
                typed("source", 1, Type::Message, &peer_name),
                typed("destination", 2, Type::Message, &peer_name),
                typed("request", 4, Type::Message, &format!("{CONTEXT}.Request")),
                extensions,
            ],
        )
    };
    file(
        ATTRIBUTE_CONTEXT,
        "envoy.service.auth.v3",
        &[BASE],
        vec![context],
        vec![],
    )
}

fn external_auth() -> FileDescriptorProto {
    const OPTION: &str = "envoy.config.core.v3.HeaderValueOption";
    let in_oneof = |field: FieldDescriptorProto| FieldDescriptorProto {
        oneof_index: Some(0),
        ..field
    };
    let check_response = DescriptorProto {
        oneof_decl: vec![OneofDescriptorProto {
            name: Some("http_response".to_owned()),
            options: None,
        }],
        ..message(
            "CheckResponse",
            vec![
                typed("status", 1, Type::Message, "google.rpc.Status"),
                in_oneof(typed(
                    "denied_response",
                    2,
                    Type::Message,
                    "envoy.service.auth.v3.DeniedHttpResponse",
                )),
                in_oneof(typed(
                    "ok_response",
                    3,
                    Type::Message,
                    "envoy.service.auth.v3.OkHttpResponse",
                )),
                in_oneof(typed(
                    "error_response",
                    5,
                    Type::Message,
                    "envoy.service.auth.v3.DeniedHttpResponse",
                )),
            ],
        )
    };
    FileDescriptorProto {
        service: vec![ServiceDescriptorProto {
            name: Some("Authorization".to_owned()),
            method: vec![MethodDescriptorProto {
                name: Some("Check".to_owned()),
                input_type: Some(".envoy.service.auth.v3.CheckRequest".to_owned()),
                output_type: Some(".envoy.service.auth.v3.CheckResponse".to_owned()),
                ..MethodDescriptorProto::default()
            }],
            options: None,
        }],
        ..file(
            EXTERNAL_AUTH,
            "envoy.service.auth.v3",
            &[BASE, ATTRIBUTE_CONTEXT, HTTP_STATUS, RPC_STATUS],
            vec![
                message(
                    "CheckRequest",
                    vec![typed(
                        "attributes",
                        1,
                        Type::Message,
                        "envoy.service.auth.v3.AttributeContext",
                    )],
                ),
                message(
                    "DeniedHttpResponse",
                    vec![
                        typed("status", 1, Type::Message, "envoy.type.v3.HttpStatus"),
                        repeated(typed("headers", 2, Type::Message, OPTION)),
                        scalar("body", 3, Type::String),
                    ],
                ),
                message(
                    "OkHttpResponse",
                    vec![
                        repeated(typed("headers", 2, Type::Message, OPTION)),
                        repeated(scalar("headers_to_remove", 5, Type::String)),
                        repeated(typed("response_headers_to_add", 6, Type::Message, OPTION)),
                        repeated(scalar("query_parameters_to_remove", 8, Type::String)),
                    ],
                ),
                check_response,
            ],
            vec![],
        )
    }
}
