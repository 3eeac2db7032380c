//! The decision engine: a pure, synchronous function from (snapshot, request) to decision.
//!
//! Owns: validating a request against a snapshot ([`Request::prepare`]), building the
//! per-request entity slice (the principal, the resource, the action, the caller's entities,
//! and the usersets they belong to, found by searching the tuple index for this request only),
//! evaluating Cedar, and mapping the answer to a [`Decision`] that says why.
//!
//! Does not own: networking, limits, metrics, I/O. No tokio, tonic or notify here.
//!
//! Deny by default:
//!
//! | situation | answer |
//! |---|---|
//! | no permit matches | DENY |
//! | any forbid matches | DENY |
//! | a policy errors while evaluating | skipped as Cedar does; reported in `errors` |
//! | unknown entity, no tuples for it | evaluated with no attributes or relations |
//! | a relation search hits the depth bound | DENY, with `relation_depth_exceeded` |
//! | a property, unless the request is allowed and a policy permits the property | DENY |
//! | malformed request | `Err(RequestError)`; callers treat it as deny |

mod decide;
mod decision;
mod json;
mod request;
mod slice;

pub use decide::decide;
pub use decision::{Decision, EvaluationError, Outcome, PropertyDecision};
pub use json::{DEFAULT_MAX_JSON_DEPTH, normalize_json};
pub use request::{
    CheckInput, EntityInput, EntityRef, PROPERTY_CONTEXT_KEY, Request, RequestError,
};
