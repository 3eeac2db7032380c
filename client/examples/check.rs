//! Asks Verdict one question and prints the answer as `verdict check` does (without the
//! policies' file:line, which only the bundle on disk knows):
//!
//! ```sh
//! cargo run -p verdict-client --example check -- http://127.0.0.1:50051 \
//!     User bob read Document roadmap '{"scopes": ["documents:read"]}'
//! ```
//!
//! ```text
//! ALLOW
//!   determining policy: document-read
//!   snapshot: a9ad369067764895
//! ```
//!
//! The same example in Python and TypeScript: `examples/clients/` in the repository.

use verdict_client::{Check, Client, Entity};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [
        endpoint,
        principal_type,
        principal_id,
        action,
        resource_type,
        resource_id,
        rest @ ..,
    ] = args.as_slice()
    else {
        return Err("usage: check ENDPOINT TYPE ID ACTION TYPE ID [CONTEXT_JSON]".into());
    };
    let mut check = Check::new(
        Entity::new(principal_type, principal_id),
        action,
        Entity::new(resource_type, resource_id),
    );
    if let Some(context) = rest.first() {
        check = check.context(serde_json::from_str(context)?)?;
    }
    let verdict = Client::connect(endpoint.clone()).await?;
    let answer = verdict.check(check).await?;
    println!("{}", if answer.allowed { "ALLOW" } else { "DENY" });
    for policy in &answer.determining_policies {
        println!("  determining policy: {policy}");
    }
    if answer.determining_policies.is_empty() {
        println!("  determining policies: none (default deny)");
    }
    println!("  snapshot: {}", answer.snapshot_version);
    Ok(())
}
