//! The decision engine: a pure, synchronous function from (snapshot, request) to decision.
//!
//! Owns: its per-snapshot indexes ([`Index`], derived from a bundle's data), validating a
//! request against a snapshot ([`Prepared`]), building the per-request entity slice (the
//! principal, the resource, the action, the caller's entities, and the usersets they belong to,
//! found by searching the tuple index for this request only), evaluating Cedar, and mapping the
//! answer to a [`Decision`] that says why.
//!
//! Does not own: loading (the bundle's), limits (`crate::limits`, which it calls), networking,
//! metrics, I/O.
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
//! | malformed request | `Err(RequestError)` (`crate::input`); callers treat it as deny |

mod action_scope;
mod context;
mod decide;
mod decision;
mod index;
mod json;
mod references;
mod request;
mod slice;

pub use decision::{Decision, EvaluationError, Outcome, PropertyDecision};
pub(crate) use index::Index;
pub(crate) use references::{PolicyEntities, policy_entities};
pub use request::{PROPERTY_CONTEXT_KEY, Prepared};
