//! Tests of reading a bundle's files: classification, hidden entries, the version, the
//! fingerprint, and refusing what a bundle is not (FIFOs, devices, links out, oversized files).

use super::*;

const NO_LIMITS: ReadLimits = ReadLimits {
    max_file_bytes: u64::MAX,
    max_bundle_bytes: u64::MAX,
};

const POLICY: &str = "permit(principal, action, resource);";

fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

fn messages(error: &InvalidBundle) -> Vec<String> {
    error.errors().iter().map(ToString::to_string).collect()
}

#[test]
fn files_are_classified_by_suffix() {
    assert_eq!(classify("a.cedar"), Some(FileKind::Policies));
    assert_eq!(classify("a.cedarschema"), Some(FileKind::Schema));
    assert_eq!(classify("a.cedarschema.json"), Some(FileKind::Schema));
    assert_eq!(classify("a.tuples"), Some(FileKind::Tuples));
    assert_eq!(classify("a.entities.json"), Some(FileKind::Entities));
    assert_eq!(classify("package.json"), None);
    assert_eq!(classify("README.md"), None);
    assert_eq!(classify("cases.yaml"), None);
}

#[test]
fn hidden_entries_are_skipped_and_version_tracks_content() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.cedar"),
        "permit(principal, action, resource);",
    )
    .unwrap();
    std::fs::create_dir(dir.path().join(".git")).unwrap();
    std::fs::write(dir.path().join(".git/x.cedar"), "garbage").unwrap();
    std::fs::write(dir.path().join(".hidden.tuples"), "garbage").unwrap();
    let first = read_bundle_dir(dir.path(), NO_LIMITS).unwrap();
    assert_eq!(first.policies.len(), 1);
    assert!(first.tuples.is_empty());
    assert_eq!(first.version.len(), 16);

    let again = read_bundle_dir(dir.path(), NO_LIMITS).unwrap();
    assert_eq!(first.version, again.version);
    std::fs::write(
        dir.path().join("a.cedar"),
        "forbid(principal, action, resource);",
    )
    .unwrap();
    let changed = read_bundle_dir(dir.path(), NO_LIMITS).unwrap();
    assert_ne!(first.version, changed.version);
}

#[test]
fn fingerprint_changes_with_content_and_names() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.tuples"), "x").unwrap();
    let first = fingerprint(dir.path());
    assert_eq!(first, fingerprint(dir.path()));
    std::fs::write(dir.path().join("a.tuples"), "xy").unwrap();
    let written = fingerprint(dir.path());
    assert_ne!(first, written);
    std::fs::rename(dir.path().join("a.tuples"), dir.path().join("b.tuples")).unwrap();
    assert_ne!(written, fingerprint(dir.path()));
    // Files the loader ignores do not count.
    let before = fingerprint(dir.path());
    std::fs::write(dir.path().join("notes.md"), "x").unwrap();
    assert_eq!(before, fingerprint(dir.path()));
}

#[test]
fn a_byte_order_mark_is_not_content() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.tuples"),
        "\u{feff}Team::\"t\"#member@User::\"u\"\n",
    )
    .unwrap();
    let files = read_bundle_dir(dir.path(), NO_LIMITS).unwrap();
    assert!(files.tuples[0].text.starts_with("Team::"));
}

#[test]
fn missing_directory_is_an_error_naming_it() {
    let err = read_bundle_dir(Path::new("/nonexistent/verdict-bundle"), NO_LIMITS).unwrap_err();
    assert_eq!(
        err.to_string(),
        "/nonexistent/verdict-bundle: cannot read bundle directory: no such file or directory"
    );
}

#[test]
fn a_fifo_is_refused_by_name_without_blocking_and_the_fingerprint_does_not_block() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.cedar"), POLICY).unwrap();
    mkfifo(&dir.path().join("pipe.tuples"));
    // A FIFO under a name the loader does not read is never opened, and not an error.
    mkfifo(&dir.path().join("notes.fifo"));
    let error = read_bundle_dir(dir.path(), NO_LIMITS).unwrap_err();
    assert_eq!(
        messages(&error),
        [format!(
            "{}: is a FIFO; a bundle file must be a regular file",
            dir.path().join("pipe.tuples").display()
        )]
    );
    assert_eq!(error.kind(), LoadErrorKind::Unreadable);
    assert_eq!(fingerprint(dir.path()), fingerprint(dir.path()));
}

#[test]
fn a_fifo_swapped_in_after_the_listing_is_not_read() {
    // The listing saw a regular file; by the time it is opened a FIFO has taken its place.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.tuples");
    std::fs::write(&path, "").unwrap();
    let metadata = std::fs::metadata(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    mkfifo(&path);
    let found = Found {
        kind: FileKind::Tuples,
        path: path.clone(),
        relative: "a.tuples".to_owned(),
        metadata,
    };
    let budget = Budget {
        max_file_bytes: 1024,
        bundle_left: 1024,
        max_bundle_bytes: 1024,
    };
    let error = read_bundle_file(&found, budget).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "{}: is a FIFO; a bundle file must be a regular file",
            path.display()
        )
    );
}

#[test]
fn a_symlink_to_a_device_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.cedar"), POLICY).unwrap();
    std::os::unix::fs::symlink("/dev/zero", dir.path().join("zero.tuples")).unwrap();
    let error = read_bundle_dir(dir.path(), NO_LIMITS).unwrap_err();
    assert_eq!(
        messages(&error),
        [format!(
            "{}: is a symlink that leads out of the bundle directory; only symlinks that resolve inside it are followed",
            dir.path().join("zero.tuples").display()
        )]
    );
}

#[test]
fn symlinks_out_of_the_bundle_are_refused_and_links_inside_are_followed() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), "root:x:0:0\n").unwrap();
    std::fs::create_dir(outside.path().join("shared")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("real")).unwrap();
    std::fs::write(dir.path().join("real/a.cedar"), POLICY).unwrap();
    // Inside: a file link and a directory link, both followed.
    std::os::unix::fs::symlink("real/a.cedar", dir.path().join("b.cedar")).unwrap();
    std::fs::create_dir(dir.path().join("links")).unwrap();
    std::os::unix::fs::symlink("../real", dir.path().join("links/alias")).unwrap();
    let files = read_bundle_dir(dir.path(), NO_LIMITS).unwrap();
    assert_eq!(
        files
            .policies
            .iter()
            .map(|f| f.relative.as_str())
            .collect::<Vec<_>>(),
        ["b.cedar", "real/a.cedar"],
        "a directory reached twice is read once"
    );

    // Out: a file link (to a file whose name is not even a bundle name) and a directory link.
    std::os::unix::fs::symlink(
        outside.path().join("secret.txt"),
        dir.path().join("passwd.tuples"),
    )
    .unwrap();
    std::os::unix::fs::symlink(outside.path().join("shared"), dir.path().join("shared")).unwrap();
    let error = read_bundle_dir(dir.path(), NO_LIMITS).unwrap_err();
    let text = error.to_string();
    assert_eq!(error.errors().len(), 2, "{text}");
    assert!(
        text.contains("passwd.tuples: is a symlink that leads out"),
        "{text}"
    );
    assert!(
        text.contains("shared: is a symlink that leads out"),
        "{text}"
    );
    assert!(!text.contains("root"), "{text}");
}

#[test]
fn a_bundle_reached_through_a_symlink_is_read() {
    let parent = tempfile::tempdir().unwrap();
    std::fs::create_dir(parent.path().join("rev-1")).unwrap();
    std::fs::write(parent.path().join("rev-1/a.cedar"), POLICY).unwrap();
    std::os::unix::fs::symlink("a.cedar", parent.path().join("rev-1/b.cedar")).unwrap();
    std::os::unix::fs::symlink("rev-1", parent.path().join("current")).unwrap();
    let files = read_bundle_dir(&parent.path().join("current"), NO_LIMITS).unwrap();
    assert_eq!(files.policies.len(), 2);
}

#[test]
fn files_and_bundles_over_their_caps_are_refused_with_size_and_cap() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.cedar"), POLICY).unwrap();
    std::fs::write(dir.path().join("b.tuples"), "x".repeat(100)).unwrap();
    let limits = ReadLimits {
        max_file_bytes: 99,
        max_bundle_bytes: u64::MAX,
    };
    let error = read_bundle_dir(dir.path(), limits).unwrap_err();
    assert_eq!(
        messages(&error),
        [format!(
            "{}: the file is 100 bytes, over the limit of 99 bytes per file",
            dir.path().join("b.tuples").display()
        )]
    );
    assert_eq!(error.kind(), LoadErrorKind::TooLarge);

    let limits = ReadLimits {
        max_file_bytes: 100,
        max_bundle_bytes: 120,
    };
    let error = read_bundle_dir(dir.path(), limits).unwrap_err();
    assert_eq!(
        messages(&error),
        [format!(
            "{}: the bundle's files are {} bytes, over the limit of 120 bytes per bundle",
            dir.path().display(),
            100 + POLICY.len()
        )]
    );
    let limits = ReadLimits {
        max_file_bytes: 100,
        max_bundle_bytes: 100 + POLICY.len() as u64,
    };
    assert!(read_bundle_dir(dir.path(), limits).is_ok());
}

#[test]
fn a_file_that_grows_past_its_cap_while_read_is_cut_and_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.tuples");
    std::fs::write(&path, "x".repeat(10)).unwrap();
    let found = Found {
        kind: FileKind::Tuples,
        path: path.clone(),
        relative: "a.tuples".to_owned(),
        metadata: std::fs::metadata(&path).unwrap(),
    };
    // Grown in place after the listing: the same inode, more bytes than the cap.
    std::fs::write(&path, "x".repeat(50)).unwrap();
    let budget = Budget {
        max_file_bytes: 20,
        bundle_left: 1_000,
        max_bundle_bytes: 1_000,
    };
    let error = read_bundle_file(&found, budget).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "{}: the file is over the limit of 20 bytes per file",
            path.display()
        )
    );
    let budget = Budget {
        max_file_bytes: 1_000,
        bundle_left: 30,
        max_bundle_bytes: 1_000,
    };
    let error = read_bundle_file(&found, budget).unwrap_err();
    assert!(
        error
            .to_string()
            .ends_with("over the limit of 1000 bytes per bundle"),
        "{error}"
    );
}
