//! Evaluating a prepared request against its snapshot.

use cedar_policy::{AuthorizationError, Response};

use super::decision::{Decision, EvaluationError, Outcome, PropertyDecision};
use super::request::Prepared;
use super::slice;
use crate::diagnostics::error_chain;
use crate::input::RequestError;

impl Prepared<'_> {
    /// Decides the request against the snapshot that prepared it.
    ///
    /// Only a request whose entities cannot form a consistent slice is an error (a bug, since
    /// preparing validated them); everything else, including evaluation errors and a relation
    /// search that hits the depth bound, is a decision.
    pub fn decide(&self) -> Result<Decision, RequestError> {
        decide(self)
    }
}

fn decide(request: &Prepared<'_>) -> Result<Decision, RequestError> {
    let snapshot = request.snapshot;
    // The policies that can apply to this action, and the relations they can read (see
    // `action_scope`); an action the bundle does not know gets all of both.
    let scope = snapshot.index.action_scopes.get(&request.action);
    let policies = scope.map_or(&*snapshot.bundle.policies, |s| &s.policies);
    let slice = slice::build(request, scope)?;
    let evaluate = |cedar_request| {
        snapshot
            .index
            .authorizer
            .is_authorized(cedar_request, policies, &slice.entities)
    };
    let (mut outcome, mut determining_policies, errors) = summarize(&evaluate(&request.cedar));
    if slice.relation_depth_exceeded && outcome == Outcome::Allow {
        // Membership could not be decided: a forbid that depends on it might have matched.
        outcome = Outcome::Deny;
        determining_policies.clear();
    }
    let properties = request
        .properties
        .iter()
        .map(|(name, cedar_request)| {
            if outcome == Outcome::Deny {
                return PropertyDecision {
                    name: name.clone(),
                    outcome: Outcome::Deny,
                    determining_policies: Vec::new(),
                    errors: Vec::new(),
                };
            }
            let (outcome, determining_policies, errors) = summarize(&evaluate(cedar_request));
            PropertyDecision {
                name: name.clone(),
                outcome,
                determining_policies,
                errors,
            }
        })
        .collect();
    Ok(Decision {
        principal: request.principal.clone(),
        action: request.action.clone(),
        resource: request.resource.clone(),
        outcome,
        determining_policies,
        errors,
        properties,
        relation_depth_exceeded: slice.relation_depth_exceeded,
    })
}

fn summarize(response: &Response) -> (Outcome, Vec<String>, Vec<EvaluationError>) {
    let outcome = match response.decision() {
        cedar_policy::Decision::Allow => Outcome::Allow,
        cedar_policy::Decision::Deny => Outcome::Deny,
    };
    let mut determining: Vec<String> = response
        .diagnostics()
        .reason()
        // The id as written (`Display` escapes it).
        .map(|id| AsRef::<str>::as_ref(id).to_owned())
        .collect();
    determining.sort_unstable();
    let mut errors: Vec<EvaluationError> = response
        .diagnostics()
        .errors()
        .map(|error| match error {
            AuthorizationError::PolicyEvaluationError(e) => EvaluationError {
                policy_id: AsRef::<str>::as_ref(e.policy_id()).to_owned(),
                message: error_chain(e.inner()),
            },
        })
        .collect();
    errors.sort_by(|a, b| a.policy_id.cmp(&b.policy_id));
    (outcome, determining, errors)
}
