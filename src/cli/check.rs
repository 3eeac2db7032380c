//! `verdict check`: one decision, from flags or a JSON request, printed with its reasons.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::{EXIT_DENY, EXIT_FAILURE, EXIT_INVALID_BUNDLE, EXIT_OK, EXIT_USAGE, out};
use verdict_core::{CheckInput, DEFAULT_MAX_RELATION_DEPTH, Decision, Limits, Snapshot};

use crate::config::BundleArgs;

/// Arguments of `verdict check`.
#[derive(Debug, Clone, clap::Args)]
pub struct CheckArgs {
    /// The bundle directory.
    #[arg(long, env = "VERDICT_POLICIES", default_value = crate::config::DEFAULT_POLICIES)]
    pub policies: PathBuf,
    /// A JSON request (`-` for stdin): {principal, action, resource, context, entities, properties}.
    #[arg(long, conflicts_with_all = ["principal", "action", "resource", "context", "entities", "properties"])]
    pub request: Option<PathBuf>,
    /// The principal, such as `User::"alice"`.
    #[arg(long, required_unless_present = "request")]
    pub principal: Option<String>,
    /// The action id (`read`) or uid (`Acme::Action::"read"`).
    #[arg(long, required_unless_present = "request")]
    pub action: Option<String>,
    /// The resource, such as `Document::"roadmap"`.
    #[arg(long, required_unless_present = "request")]
    pub resource: Option<String>,
    /// The context, a JSON object.
    #[arg(long)]
    pub context: Option<String>,
    /// Entities for this request only, a JSON array in Cedar's entity format.
    #[arg(long)]
    pub entities: Option<String>,
    /// A property to decide (repeatable).
    #[arg(long = "property")]
    pub properties: Vec<String>,
    /// Print the decision as JSON.
    #[arg(long)]
    pub json: bool,
    /// Most nested usersets one relation search follows.
    #[arg(long, env = "VERDICT_MAX_RELATION_DEPTH", default_value_t = DEFAULT_MAX_RELATION_DEPTH)]
    pub max_relation_depth: u32,
    /// What a bundle may be, as `serve` would accept it.
    #[command(flatten)]
    pub bundle: BundleArgs,
}

pub(super) fn run(args: CheckArgs) -> u8 {
    let input = match read_input(&args) {
        Ok(input) => input,
        Err(message) => {
            eprintln!("error: {message}");
            return EXIT_USAGE;
        }
    };
    let options = match args.bundle.clone().validate() {
        Ok(bundle) => bundle.load_options(args.max_relation_depth),
        Err(error) => {
            eprintln!("error: {error}");
            return EXIT_USAGE;
        }
    };
    let snapshot = match Snapshot::load(&args.policies, &options) {
        Ok(snapshot) => snapshot,
        Err(invalid) => {
            eprintln!("{invalid}");
            return EXIT_INVALID_BUNDLE;
        }
    };
    // The server's default limits, so a request this command accepts is one the server does.
    let decision = match snapshot.check(input, &Limits::default()) {
        Ok(decision) => decision,
        Err(error) => {
            eprintln!("error: invalid request: {error}");
            return EXIT_USAGE;
        }
    };
    if args.json {
        match serde_json::to_string_pretty(&decision_json(&decision, &snapshot)) {
            Ok(text) => out!("{text}"),
            Err(error) => {
                eprintln!("error: {error}");
                return EXIT_FAILURE;
            }
        }
    } else {
        print_decision(&decision, &snapshot);
    }
    if decision.is_allowed() {
        EXIT_OK
    } else {
        EXIT_DENY
    }
}

fn read_input(args: &CheckArgs) -> Result<CheckInput, String> {
    let value = match &args.request {
        Some(path) => read_json(path)?,
        None => {
            let context = match &args.context {
                Some(text) => parse_json("--context", text)?,
                None => json!({}),
            };
            let entities = match &args.entities {
                Some(text) => parse_json("--entities", text)?,
                None => json!([]),
            };
            json!({
                "principal": args.principal,
                "action": args.action,
                "resource": args.resource,
                "context": context,
                "entities": entities,
                "properties": args.properties,
            })
        }
    };
    serde_json::from_value(value).map_err(|e| format!("invalid request: {e}"))
}

fn read_json(path: &Path) -> Result<Value, String> {
    let mut text = String::new();
    let read = if path == Path::new("-") {
        std::io::stdin().read_to_string(&mut text).map(|_| ())
    } else {
        std::fs::read_to_string(path).map(|t| text = t)
    };
    read.map_err(|e| format!("{}: {}", path.display(), verdict_core::io_reason(&e)))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn parse_json(flag: &str, text: &str) -> Result<Value, String> {
    serde_json::from_str(text).map_err(|e| format!("{flag}: not valid JSON: {e}"))
}

fn with_location(id: &str, snapshot: &Snapshot) -> String {
    match snapshot.policy_location(id) {
        Some(at) => format!("{id} ({}:{})", at.path.display(), at.line),
        None => id.to_owned(),
    }
}

fn print_decision(decision: &Decision, snapshot: &Snapshot) {
    out!("{}", decision.outcome.as_str().to_uppercase());
    if decision.determining_policies.is_empty() {
        out!("  determining policies: none (default deny)");
    } else {
        for id in &decision.determining_policies {
            out!("  determining policy: {}", with_location(id, snapshot));
        }
    }
    for error in &decision.errors {
        out!(
            "  evaluation error in {}: {}",
            with_location(&error.policy_id, snapshot),
            error.message
        );
    }
    if decision.relation_depth_exceeded {
        out!("  relation search hit the depth bound: denied");
    }
    for property in &decision.properties {
        out!(
            "  property {}: {} ({})",
            property.name,
            property.outcome.as_str().to_uppercase(),
            if property.determining_policies.is_empty() {
                "no permit".to_owned()
            } else {
                property.determining_policies.join(", ")
            }
        );
    }
    out!("  snapshot: {}", snapshot.version());
}

fn decision_json(decision: &Decision, snapshot: &Snapshot) -> Value {
    let errors = |errors: &[verdict_core::EvaluationError]| -> Vec<Value> {
        errors
            .iter()
            .map(|e| json!({"policy_id": e.policy_id, "message": e.message}))
            .collect()
    };
    json!({
        "decision": decision.outcome.as_str(),
        "determining_policies": decision.determining_policies,
        "errors": errors(&decision.errors),
        "properties": decision.properties.iter().map(|p| json!({
            "name": p.name,
            "decision": p.outcome.as_str(),
            "determining_policies": p.determining_policies,
            "errors": errors(&p.errors),
        })).collect::<Vec<_>>(),
        "relation_depth_exceeded": decision.relation_depth_exceeded,
        "snapshot_version": snapshot.version(),
    })
}
