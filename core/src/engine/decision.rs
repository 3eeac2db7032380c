//! What the engine answers: the outcome and why.

use cedar_policy::EntityUid;

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// A permit matched and no forbid did.
    Allow,
    /// Anything else.
    Deny,
}

impl Outcome {
    /// Returns `allow` or `deny`, for logs, metrics and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
        }
    }
}

/// A policy that failed while evaluating (Cedar skips it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvaluationError {
    /// The policy's id.
    pub policy_id: String,
    /// What went wrong.
    pub message: String,
}

/// The decision for one requested property.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropertyDecision {
    /// The property name, as asked.
    pub name: String,
    /// Allow only if the request is allowed and a policy permits this property.
    pub outcome: Outcome,
    /// The policies that determined the outcome.
    pub determining_policies: Vec<String>,
    /// Policies that failed while evaluating this property.
    pub errors: Vec<EvaluationError>,
}

/// The engine's answer to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The principal, as the request was read (`User::"alice"`).
    pub principal: EntityUid,
    /// The action, as the request was read (`Action::"read"`).
    pub action: EntityUid,
    /// The resource, as the request was read.
    pub resource: EntityUid,
    /// Allow or deny.
    pub outcome: Outcome,
    /// The matching permits for an allow, the matching forbids for an explicit deny, none for a
    /// default deny. Sorted.
    pub determining_policies: Vec<String>,
    /// Policies that failed while evaluating, sorted by policy id.
    pub errors: Vec<EvaluationError>,
    /// One decision per requested property, in the order asked.
    pub properties: Vec<PropertyDecision>,
    /// A relation search hit the depth bound before it could conclude; the outcome is deny.
    pub relation_depth_exceeded: bool,
}

impl Decision {
    /// Returns whether the outcome is allow.
    pub fn is_allowed(&self) -> bool {
        self.outcome == Outcome::Allow
    }
}
