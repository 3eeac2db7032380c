//! The configuration file (`--config verdict.yaml`, `VERDICT_CONFIG`): `serve`'s settings by
//! their flag names, as a flat YAML map. A setting given as a flag or as its `VERDICT_*`
//! variable wins over the file; the file wins over the defaults.
//!
//! ```yaml
//! policies: /etc/verdict/policies
//! grpc-addr: 0.0.0.0:50051
//! log-format: json
//! tls-allowed-clients: [spiffe://td/ns/gw/sa/envoy, "*.ops.svc"]
//! ```
//!
//! The file becomes command-line arguments that clap parses with the rest (`--grpc-addr=…`), so
//! a value means exactly what the same flag means, and is checked by the same code. Lists give
//! a repeatable flag once per item, and a single-valued one its items joined by commas. What
//! the file gets wrong is reported with its file:line: an unknown name (with the nearest known
//! one), a value that is not a scalar or a list of scalars, and, through [`ConfigOrigins`], a
//! value the flag's parser or the settings' validation refuses.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Where the settings read from a configuration file came from, to locate an error about one.
#[derive(Debug, Clone, Default)]
pub struct ConfigOrigins {
    /// The file, when one was read.
    path: Option<PathBuf>,
    /// The line of each setting read from it, by clap id.
    lines: HashMap<String, usize>,
}

impl ConfigOrigins {
    /// `"verdict.yaml:12: "` when the setting with clap id `id` came from the file, else empty.
    pub fn locate(&self, id: &str) -> String {
        match (&self.path, self.lines.get(id)) {
            (Some(path), Some(line)) => format!("{}:{line}: ", path.display()),
            _ => String::new(),
        }
    }

    /// The location of the setting behind a `--flag` name (`--grpc-addr`), as [`Self::locate`].
    pub fn locate_flag(&self, flag: &str) -> String {
        self.locate(&flag.trim_start_matches('-').replace('-', "_"))
    }
}

/// What a configuration file holds, as arguments, and where each came from.
#[derive(Debug)]
pub struct FromFile {
    /// `--name=value` arguments for the settings not given as flags or variables.
    pub arguments: Vec<OsString>,
    /// Where they came from.
    pub origins: ConfigOrigins,
}

/// Reads `path` against `command`'s arguments (`serve`'s), skipping the settings that
/// `given` (the command line) or the environment (`env_set`) already sets. Errors name the
/// file and line.
pub fn read(
    path: &Path,
    command: &clap::Command,
    given: &[OsString],
    env_set: &dyn Fn(&str) -> bool,
) -> Result<FromFile, String> {
    let shown = path.display();
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("{shown}: cannot read it: {e}"))?;
    parse(&text, path, command, given, env_set)
}

fn parse(
    text: &str,
    path: &Path,
    command: &clap::Command,
    given: &[OsString],
    env_set: &dyn Fn(&str) -> bool,
) -> Result<FromFile, String> {
    let shown = path.display();
    let document: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(text).map_err(|e| match e.location() {
            Some(at) => format!("{shown}:{}:{}: {e}", at.line(), at.column()),
            None => format!("{shown}: {e}"),
        })?;
    let map = match document {
        serde_yaml_ng::Value::Mapping(map) => map,
        serde_yaml_ng::Value::Null => serde_yaml_ng::Mapping::new(),
        _ => {
            return Err(format!(
                "{shown}:1: the configuration must be a map of settings (`grpc-addr: 0.0.0.0:50051`)"
            ));
        }
    };
    let settings: Vec<&clap::Arg> = command
        .get_arguments()
        .filter(|arg| arg.get_long().is_some() && arg.get_id() != "config")
        .collect();
    let lines = key_lines(text);
    let mut arguments = Vec::new();
    let mut origins = HashMap::new();
    for (key, value) in map {
        let serde_yaml_ng::Value::String(name) = key else {
            return Err(format!(
                "{shown}: a setting's name must be text, not {key:?}"
            ));
        };
        let line = lines.get(name.as_str()).copied().unwrap_or(1);
        let at = format!("{shown}:{line}");
        let Some(arg) = settings
            .iter()
            .find(|arg| arg.get_long() == Some(name.as_str()))
        else {
            let near = settings
                .iter()
                .filter_map(|arg| arg.get_long())
                .map(|long| (strsim::levenshtein(long, &name.replace('_', "-")), long))
                .filter(|(distance, _)| *distance <= 3)
                .min();
            let hint = near.map_or_else(String::new, |(_, long)| {
                format!(" (did you mean `{long}`?)")
            });
            return Err(format!(
                "{at}: unknown setting `{name}`{hint}; settings are `verdict serve`'s flags without `--`"
            ));
        };
        let values = scalars(&value).ok_or_else(|| {
            format!("{at}: `{name}` must be a text, number or boolean, or a list of them")
        })?;
        let flag = format!("--{name}");
        let on_command_line = given.iter().any(|a| {
            a.to_str()
                .is_some_and(|a| a == flag || a.starts_with(&format!("{flag}=")))
        });
        let in_environment = arg
            .get_env()
            .and_then(|env| env.to_str())
            .is_some_and(env_set);
        if on_command_line || in_environment {
            continue;
        }
        origins.insert(arg.get_id().to_string(), line);
        let repeatable = matches!(arg.get_action(), clap::ArgAction::Append);
        if repeatable {
            arguments.extend(values.iter().map(|v| OsString::from(format!("{flag}={v}"))));
        } else {
            arguments.push(OsString::from(format!("{flag}={}", values.join(","))));
        }
    }
    Ok(FromFile {
        arguments,
        origins: ConfigOrigins {
            path: Some(path.to_owned()),
            lines: origins,
        },
    })
}

/// A scalar as its text, or a list of scalars; `None` for anything else.
fn scalars(value: &serde_yaml_ng::Value) -> Option<Vec<String>> {
    use serde_yaml_ng::Value;
    let scalar = |value: &Value| match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    match value {
        Value::Sequence(items) => items.iter().map(scalar).collect(),
        other => scalar(other).map(|s| vec![s]),
    }
}

/// The line (1-based) of each top-level key, from the document's own spans (serde_yaml_ng
/// reports positions for errors only).
fn key_lines(text: &str) -> HashMap<String, usize> {
    use saphyr::{LoadableYamlNode, MarkedYaml, YamlData};
    let Ok(documents) = MarkedYaml::load_from_str(text) else {
        return HashMap::new();
    };
    match documents.first().map(|document| &document.data) {
        Some(YamlData::Mapping(map)) => map
            .keys()
            .filter_map(|key| Some((key.data.as_str()?.to_owned(), key.span.start.line())))
            .collect(),
        _ => HashMap::new(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use clap::Args as _;

    use super::*;
    use crate::config::ServeArgs;

    fn read_text(text: &str, given: &[&str], env: &[&str]) -> Result<FromFile, String> {
        let command = ServeArgs::augment_args(clap::Command::new("verdict"));
        let given: Vec<OsString> = given.iter().map(OsString::from).collect();
        parse(text, Path::new("verdict.yaml"), &command, &given, &|name| {
            env.contains(&name)
        })
    }

    fn arguments(file: &FromFile) -> Vec<String> {
        file.arguments
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn settings_become_flags_unless_a_flag_or_variable_sets_them() {
        let file = read_text(
            "# comment\ngrpc-addr: 127.0.0.1:7000\nmax-batch: 50\nwatch: false\n\
             tls-allowed-clients: [a.svc, b.svc]\nlog-format: json\n",
            &["--max-batch", "10"],
            &["VERDICT_LOG_FORMAT"],
        )
        .unwrap();
        assert_eq!(
            arguments(&file),
            [
                "--grpc-addr=127.0.0.1:7000",
                "--watch=false",
                "--tls-allowed-clients=a.svc",
                "--tls-allowed-clients=b.svc"
            ]
        );
        assert_eq!(file.origins.locate("grpc_addr"), "verdict.yaml:2: ");
        assert_eq!(file.origins.locate_flag("--watch"), "verdict.yaml:4: ");
        assert_eq!(file.origins.locate("max_batch"), "", "given as a flag");
        assert_eq!(file.origins.locate("log_format"), "", "given as a variable");
    }

    #[test]
    fn mistakes_are_reported_with_file_and_line() {
        let error = |text: &str| read_text(text, &[], &[]).err().unwrap();
        assert_eq!(
            error("grpc-addr: 127.0.0.1:1\ngrpc-adr: x\n"),
            "verdict.yaml:2: unknown setting `grpc-adr` (did you mean `grpc-addr`?); settings are `verdict serve`'s flags without `--`"
        );
        assert!(error("max_batch: 3\n").contains("(did you mean `max-batch`?)"));
        assert_eq!(
            error("\n\nmax-batch: {a: 1}\n"),
            "verdict.yaml:3: `max-batch` must be a text, number or boolean, or a list of them"
        );
        assert!(error("- a\n- b\n").starts_with("verdict.yaml:1: the configuration must be a map"));
        assert!(
            error("grpc-addr: [\n").starts_with("verdict.yaml:"),
            "{}",
            error("grpc-addr: [\n")
        );
        assert!(error("config: other.yaml\n").contains("unknown setting `config`"));
        // Lines come from the document, whatever the key's style: quoted, after a block value,
        // in a flow map.
        assert!(
            error("# settings\n\"log-format\": json\ntls-allowed-clients:\n  - a\n  - b\n'grpc-adr': x\n")
                .starts_with("verdict.yaml:6: unknown setting `grpc-adr`")
        );
        assert!(
            error("{log-format: json,\n grpc-adr: x}\n")
                .starts_with("verdict.yaml:2: unknown setting `grpc-adr`")
        );
    }

    #[test]
    fn an_empty_file_sets_nothing() {
        assert!(read_text("", &[], &[]).unwrap().arguments.is_empty());
        assert!(
            read_text("# nothing\n", &[], &[])
                .unwrap()
                .arguments
                .is_empty()
        );
    }
}
