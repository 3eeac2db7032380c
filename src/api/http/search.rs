//! AuthZEN search: which subjects (`/access/v1/search/subject`), resources (`…/resource`) or
//! actions (`…/action`) a request would permit, in pages.
//!
//! How a page is answered:
//!
//! 1. Candidates: every entity of the searched type the bundle knows (its entity files, its
//!    tuples, its policies: `Snapshot::entity_ids_of_type`), or every action of the mapped
//!    action type the bundle knows (`Snapshot::known_actions`), sorted by id. An unknown type
//!    has none: the answer is empty, not an error.
//! 2. Each candidate, from where the page starts, is put in the searched place and decided by
//!    `Snapshot::check`, the code a single evaluation goes through; a permitted one is a
//!    result. A candidate the core refuses because of the searched place or the names in the
//!    request (an unknown action, a type the schema does not allow there) is left out, as an
//!    evaluation of it would not be permitted; a refusal of the context or of the
//!    properties is the request's fault and answers 400.
//! 3. The page ends when it holds `page.limit` results (the request's, at most
//!    `--authzen-max-page`, which is also the default) or after [`MAX_CHECKS_PER_PAGE`]
//!    candidates. If candidates remain, `page.next_token` resumes after the last candidate
//!    looked at; otherwise it is empty. Nothing is ever cut silently: a page may hold fewer
//!    results than the limit, even none, and still have a next token.
//!
//! Tokens never mix snapshots. A token carries the version of the snapshot that answered the
//! first page and a digest of the request (without `page.token`); a later page answered by
//! another snapshot (the bundle was reloaded), or asked with a different request, is a 400
//! naming `page.token` and saying why, and the PEP starts over. Tokens are not secret: every
//! candidate a forged one reaches is still checked.

use std::sync::Arc;

use base64::Engine as _;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::authzen::{
    Asking, Entity, EntitySlots, Evaluation, Id, authzen_field, check_input, parse_action,
    parse_context, parse_entity,
};
use super::error::HttpError;
use super::json::{as_object, get};

/// The most candidates one page decides, whatever its limit: bounds a page's work.
pub const MAX_CHECKS_PER_PAGE: usize = 10_000;

/// What is searched for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Searched {
    Subject,
    Resource,
    Action,
}

/// A parsed search request.
#[derive(Debug, Clone)]
pub struct Search {
    searched: Searched,
    /// The request with the searched place to be filled in (its id or name empty).
    template: Evaluation,
    limit: usize,
    token: Option<String>,
    /// Digest of the request without `page.token`: a token must come with the same request.
    digest: String,
}

/// Parses a search request; `max_page` is `--authzen-max-page`.
pub fn parse(
    searched: Searched,
    body: &Map<String, Value>,
    max_page: usize,
) -> Result<Search, HttpError> {
    let required = |key: &str| get(body, key).ok_or_else(|| HttpError::missing(key));
    let subject = parse_entity(
        required("subject")?,
        "subject",
        if searched == Searched::Subject {
            Id::Ignored
        } else {
            Id::Required
        },
    )?;
    let resource = parse_entity(
        required("resource")?,
        "resource",
        if searched == Searched::Resource {
            Id::Ignored
        } else {
            Id::Required
        },
    )?;
    // The action search request has no action; one sent anyway is ignored.
    let action = match searched {
        Searched::Action => super::authzen::Action {
            name: String::new(),
        },
        _ => parse_action(required("action")?, "action")?,
    };
    let context = parse_context(get(body, "context"), "context")?;
    let (limit, token) = match get(body, "page") {
        None => (max_page, None),
        Some(page) => {
            let page = as_object(page, "page")?;
            let limit = match get(page, "limit") {
                None => max_page,
                Some(Value::Number(n)) => match n.as_u64() {
                    // 0 asks for no particular size: the server's.
                    Some(0) => max_page,
                    Some(n) => usize::try_from(n).unwrap_or(usize::MAX).min(max_page),
                    None => {
                        return Err(HttpError::invalid(
                            "page.limit: expected a non-negative integer",
                        ));
                    }
                },
                Some(other) => {
                    return Err(HttpError::wrong_type(
                        "page.limit",
                        "a non-negative integer",
                        other,
                    ));
                }
            };
            let token = match get(page, "token") {
                None => None,
                Some(Value::String(t)) if t.is_empty() => None,
                Some(Value::String(t)) => Some(t.clone()),
                Some(other) => return Err(HttpError::wrong_type("page.token", "a string", other)),
            };
            (limit, token)
        }
    };
    Ok(Search {
        searched,
        template: Evaluation {
            subject: Entity {
                properties: if searched == Searched::Subject {
                    Map::new()
                } else {
                    subject.properties
                },
                ..subject
            },
            action,
            resource: Entity {
                properties: if searched == Searched::Resource {
                    Map::new()
                } else {
                    resource.properties
                },
                ..resource
            },
            context,
        },
        limit,
        token,
        digest: digest(body),
    })
}

/// Digest of the request without `page.token`.
fn digest(body: &Map<String, Value>) -> String {
    let mut body = body.clone();
    if let Some(Value::Object(page)) = body.get_mut("page") {
        page.remove("token");
    }
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    let hash = Sha256::digest(&bytes);
    hash.iter().take(12).map(|b| format!("{b:02x}")).collect()
}

/// Where a page starts: after the candidate `after`, for the request with `digest`, answered by
/// the snapshot `version`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Token {
    v: String,
    q: String,
    a: String,
}

fn encode_token(token: &Token) -> String {
    let json = serde_json::to_vec(token).unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
}

fn decode_token(text: &str) -> Option<Token> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Answers one page of `search` from the snapshot in `asking`.
pub fn answer(asking: &Asking, search: &Search) -> Result<Value, HttpError> {
    let snapshot = &asking.served.snapshot;
    let after = match &search.token {
        None => None,
        Some(text) => {
            let token = decode_token(text)
                .ok_or_else(|| HttpError::invalid("page.token: not a token this server issued"))?;
            if token.q != search.digest {
                return Err(HttpError::invalid(
                    "page.token: the request differs from the one that started this search (only \
                     page.token may change between pages)",
                ));
            }
            if token.v != snapshot.version() {
                return Err(HttpError::new(
                    axum::http::StatusCode::BAD_REQUEST,
                    "snapshot_changed",
                    format!(
                        "page.token: the policy bundle was reloaded since this search began \
                         (snapshot {} answered it, {} serves now); start the search again without \
                         a token",
                        token.v,
                        snapshot.version()
                    ),
                ));
            }
            Some(token.a)
        }
    };
    let mapping = &asking.mapping;
    let candidates: Vec<String> = match search.searched {
        Searched::Subject => {
            snapshot.entity_ids_of_type(mapping.cedar_type(&search.template.subject.kind))
        }
        Searched::Resource => {
            snapshot.entity_ids_of_type(mapping.cedar_type(&search.template.resource.kind))
        }
        Searched::Action => {
            let mut names: Vec<String> = snapshot
                .known_actions()
                .iter()
                .filter(|uid| uid.type_name().to_string() == mapping.action_type)
                .map(|uid| uid.id().unescaped().to_owned())
                .collect();
            names.sort_unstable();
            names.dedup();
            names
        }
    };
    let start = after.map_or(0, |after| {
        candidates.partition_point(|candidate| candidate.as_str() <= after.as_str())
    });
    let mut results = Vec::new();
    let mut checked = 0;
    let mut last = None;
    for candidate in &candidates[start..] {
        if results.len() == search.limit || checked == MAX_CHECKS_PER_PAGE {
            break;
        }
        checked += 1;
        last = Some(candidate);
        let mut evaluation = search.template.clone();
        match search.searched {
            Searched::Subject => evaluation.subject.id.clone_from(candidate),
            Searched::Resource => evaluation.resource.id.clone_from(candidate),
            Searched::Action => evaluation.action.name.clone_from(candidate),
        }
        let (input, slots) = check_input(&evaluation, mapping);
        match snapshot.check(input, &asking.limits) {
            Ok(decision) if decision.is_allowed() => results.push(match search.searched {
                Searched::Subject => json!({"type": search.template.subject.kind, "id": candidate}),
                Searched::Resource => {
                    json!({"type": search.template.resource.kind, "id": candidate})
                }
                Searched::Action => json!({"name": candidate}),
            }),
            Ok(_) => {}
            Err(error) => {
                // A refusal of the names in the request (the candidate's, or the unknown
                // type or action it is asked with): not permitted, as an evaluation would not
                // be. Anything else (context, properties) is the request's fault.
                if let Some(field) = refused_field(&error)
                    && ["principal", "resource", "action"]
                        .iter()
                        .any(|name| field.starts_with(name))
                {
                    continue;
                }
                return Err(request_error(error, slots));
            }
        }
    }
    let consumed = start + checked;
    let next_token = match last {
        Some(last) if consumed < candidates.len() => encode_token(&Token {
            v: snapshot.version().to_owned(),
            q: search.digest.clone(),
            a: last.clone(),
        }),
        _ => String::new(),
    };
    Ok(json!({
        "page": {"next_token": next_token, "count": results.len()},
        "results": results,
    }))
}

/// The field a refusal names, unless it is internal.
fn refused_field(error: &verdict_core::RequestError) -> Option<&str> {
    use verdict_core::RequestError;
    match error {
        RequestError::Invalid { field, .. }
        | RequestError::TooLarge { field, .. }
        | RequestError::TooDeep { field } => Some(field),
        RequestError::Internal(_) => None,
    }
}

fn request_error(error: verdict_core::RequestError, slots: EntitySlots) -> HttpError {
    HttpError::from_request(error, &|field| authzen_field(field, slots, ""))
}

/// Runs `search` on a blocking thread (a page decides up to [`MAX_CHECKS_PER_PAGE`]
/// candidates: milliseconds, not for an async worker).
pub async fn answer_off_the_runtime(asking: Asking, search: Search) -> Result<Value, HttpError> {
    let asking = Arc::new(asking);
    tokio::task::spawn_blocking(move || answer(&asking, &search))
        .await
        .map_err(|error| {
            tracing::error!(%error, "search worker failed");
            HttpError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error; see the server log",
            )
        })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_garbage_is_refused() {
        let token = Token {
            v: "abc".to_owned(),
            q: "0011".to_owned(),
            a: "record \"x\"".to_owned(),
        };
        assert_eq!(decode_token(&encode_token(&token)), Some(token));
        assert_eq!(decode_token("not a token"), None);
        assert_eq!(decode_token(""), None);
    }

    #[test]
    fn the_digest_ignores_the_token_only() {
        let body = |text: &str| serde_json::from_str::<Map<String, Value>>(text).unwrap();
        let first = digest(&body(
            r#"{"subject": {"type": "user"}, "page": {"limit": 1}}"#,
        ));
        let later = digest(&body(
            r#"{"subject": {"type": "user"}, "page": {"limit": 1, "token": "t"}}"#,
        ));
        let other = digest(&body(
            r#"{"subject": {"type": "user"}, "page": {"limit": 2}}"#,
        ));
        assert_eq!(first, later);
        assert_ne!(first, other);
    }

    #[test]
    fn page_limits_are_checked_and_capped() {
        let body = |text: &str| serde_json::from_str::<Map<String, Value>>(text).unwrap();
        let request = |page: &str| {
            body(&format!(
                r#"{{"subject": {{"type": "user"}}, "action": {{"name": "view"}},
                     "resource": {{"type": "record", "id": "1"}}{page}}}"#
            ))
        };
        assert_eq!(
            parse(Searched::Subject, &request(""), 50).unwrap().limit,
            50
        );
        let limited = request(r#", "page": {"limit": 7}"#);
        assert_eq!(parse(Searched::Subject, &limited, 50).unwrap().limit, 7);
        let large = request(r#", "page": {"limit": 7000}"#);
        assert_eq!(parse(Searched::Subject, &large, 50).unwrap().limit, 50);
        for bad in [r#", "page": {"limit": -1}"#, r#", "page": {"limit": "3"}"#] {
            let error = parse(Searched::Subject, &request(bad), 50).unwrap_err();
            assert!(error.message().starts_with("page.limit: "), "{error:?}");
        }
        let error =
            parse(Searched::Subject, &request(r#", "page": {"token": 3}"#), 50).unwrap_err();
        assert!(error.message().starts_with("page.token: "), "{error:?}");
    }
}
