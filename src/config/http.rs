//! The HTTP/JSON API listener (`--http-addr`): AuthZEN 1.0 and `verdict.v1` over HTTP, and how
//! AuthZEN's subjects, resources and actions map to Cedar (docs/authzen.md).

use std::net::SocketAddr;

use clap::ArgAction;

use super::{ConfigError, in_range};
use crate::api::http::{AuthzenMapping, HttpSettings};

/// Default largest request body on the HTTP API: 1 MiB (an AuthZEN request is a few hundred
/// bytes; a batch of 100 checks with entities a few tens of KiB).
pub const DEFAULT_HTTP_MAX_BODY_BYTES: usize = 1 << 20;
/// Default Cedar entity type of AuthZEN action names: `Action::"<name>"`.
pub const DEFAULT_AUTHZEN_ACTION_TYPE: &str = "Action";
/// Default largest page of an AuthZEN search (also the page size when none is asked for).
pub const DEFAULT_AUTHZEN_MAX_PAGE: usize = 1000;

/// The HTTP API listener and the AuthZEN mapping.
#[derive(Debug, Clone, clap::Args)]
pub struct HttpArgs {
    /// Address of the HTTP/JSON API listener (AuthZEN 1.0 and `verdict.v1` over HTTP/1.1 and
    /// h2c, or HTTPS with the `--tls-*` settings); off unless set (`off` is off too).
    #[arg(long, env = "VERDICT_HTTP_ADDR")]
    pub http_addr: Option<String>,
    /// Largest request body on the HTTP API, in bytes; a larger one is answered 413.
    #[arg(long, env = "VERDICT_HTTP_MAX_BODY_BYTES", default_value_t = DEFAULT_HTTP_MAX_BODY_BYTES)]
    pub http_max_body_bytes: usize,
    /// AuthZEN entity types that have another name in Cedar, as `authzen=Cedar` pairs
    /// separated by commas (`user=Todo::User,todo=Todo::Item`); any other type is used as
    /// written.
    #[arg(long, env = "VERDICT_AUTHZEN_TYPES", default_value = "")]
    pub authzen_types: String,
    /// Cedar entity type of AuthZEN action names: `action.name` `read` is `<type>::"read"`.
    #[arg(long, env = "VERDICT_AUTHZEN_ACTION_TYPE", default_value = DEFAULT_AUTHZEN_ACTION_TYPE)]
    pub authzen_action_type: String,
    /// Put the determining policies (and evaluation errors) of each AuthZEN decision in its
    /// `context` (`reason_policies`, `errors`); off by default, as policy ids can say more
    /// than a PEP needs.
    #[arg(long, env = "VERDICT_AUTHZEN_REASONS", default_value_t = false, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub authzen_reasons: bool,
    /// Largest page of an AuthZEN search, and the page size when a request sets no
    /// `page.limit`.
    #[arg(long, env = "VERDICT_AUTHZEN_MAX_PAGE", default_value_t = DEFAULT_AUTHZEN_MAX_PAGE)]
    pub authzen_max_page: usize,
    /// The PDP identifier published in `/.well-known/authzen-configuration`
    /// (`https://pdp.example.com`); by default the scheme and `Host` of the metadata request.
    #[arg(long, env = "VERDICT_AUTHZEN_PDP_URL")]
    pub authzen_pdp_url: Option<String>,
}

/// The HTTP API settings, validated.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// The listener's address; `None` is off.
    pub addr: Option<SocketAddr>,
    /// What the handlers need.
    pub settings: HttpSettings,
}

impl HttpArgs {
    /// Checks the address, the body limit, the type mapping and the page size.
    pub fn validate(self) -> Result<HttpConfig, ConfigError> {
        let addr = match self.http_addr.as_deref().map(str::trim) {
            None | Some("" | "off") => None,
            Some(text) => Some(
                text.parse::<SocketAddr>()
                    .map_err(|_| ConfigError::Invalid {
                        arg: arg_id!(Self, http_addr),
                        reason: format!("`{text}` is not an ip:port address or `off`"),
                    })?,
            ),
        };
        let types = parse_type_map(&self.authzen_types).map_err(|reason| ConfigError::Invalid {
            arg: arg_id!(Self, authzen_types),
            reason,
        })?;
        let action_type = self.authzen_action_type.trim();
        if let Err(error) = verdict_core::relations::parse_entity_type(action_type) {
            return Err(ConfigError::Invalid {
                arg: arg_id!(Self, authzen_action_type),
                reason: format!("`{action_type}` is not an entity type: {}", error.reason),
            });
        }
        if action_type != "Action" && !action_type.ends_with("::Action") {
            return Err(ConfigError::Invalid {
                arg: arg_id!(Self, authzen_action_type),
                reason: format!("`{action_type}` is not `Action` or a type ending in `::Action`"),
            });
        }
        let pdp_url = match self.authzen_pdp_url.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(url) if url.starts_with("https://") || url.starts_with("http://") => {
                if url.contains(['?', '#', ' ']) {
                    return Err(ConfigError::Invalid {
                        arg: arg_id!(Self, authzen_pdp_url),
                        reason: format!("`{url}` has a query, a fragment or a space"),
                    });
                }
                Some(url.trim_end_matches('/').to_owned())
            }
            Some(url) => {
                return Err(ConfigError::Invalid {
                    arg: arg_id!(Self, authzen_pdp_url),
                    reason: format!("`{url}` is not an https:// (or http://) URL"),
                });
            }
        };
        Ok(HttpConfig {
            addr,
            settings: HttpSettings {
                max_body_bytes: in_range(
                    self.http_max_body_bytes,
                    1024,
                    64 << 20,
                    arg_id!(Self, http_max_body_bytes),
                )?,
                mapping: AuthzenMapping {
                    types,
                    action_type: action_type.to_owned(),
                    reasons: self.authzen_reasons,
                },
                max_page: in_range(
                    self.authzen_max_page,
                    1,
                    100_000,
                    arg_id!(Self, authzen_max_page),
                )?,
                pdp_url,
            },
        })
    }
}

/// Parses `user=Todo::User,todo=Todo::Item` into pairs.
fn parse_type_map(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((authzen, cedar)) = pair.split_once('=') else {
            return Err(format!("`{pair}` is not `authzen=Cedar`"));
        };
        let (authzen, cedar) = (authzen.trim(), cedar.trim());
        if authzen.is_empty() {
            return Err(format!("`{pair}` has an empty AuthZEN type"));
        }
        if let Err(error) = verdict_core::relations::parse_entity_type(cedar) {
            return Err(format!("`{cedar}` is not an entity type: {}", error.reason));
        }
        if pairs.iter().any(|(seen, _)| seen == authzen) {
            return Err(format!("`{authzen}` is mapped twice"));
        }
        pairs.push((authzen.to_owned(), cedar.to_owned()));
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_maps_are_pairs_of_a_name_and_a_cedar_type() {
        assert_eq!(
            parse_type_map(" user=Todo::User , todo=Item").unwrap(),
            vec![
                ("user".to_owned(), "Todo::User".to_owned()),
                ("todo".to_owned(), "Item".to_owned())
            ]
        );
        assert!(parse_type_map("").unwrap().is_empty());
        assert!(parse_type_map("user").unwrap_err().contains("`user`"));
        assert!(parse_type_map("user=Todo:User").is_err());
        assert!(parse_type_map("a=A,a=B").unwrap_err().contains("twice"));
    }
}
