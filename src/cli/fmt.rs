//! `verdict fmt [PATH…] [--check]`: format a bundle's Cedar policy files with Cedar's own
//! formatter (`cedar-policy-formatter`, what `cedar format` runs), in place; `--check` only
//! reports the files that are not formatted (for CI).
//!
//! A file that does not parse is left alone and reported at file:line:column, as the loader
//! reports it. A formatted file replaces the old one by a rename, so a server watching the
//! bundle never reads half a file.

use std::path::{Path, PathBuf};

use cedar_policy_formatter::{Config, policies_str_to_pretty};

use super::{EXIT_FAILURE, EXIT_INVALID_BUNDLE, EXIT_OK, out};

/// Directories nested deeper than this are not formatted (the loader's bound).
const MAX_DIR_DEPTH: usize = 16;

/// Arguments of `verdict fmt`.
#[derive(Debug, Clone, clap::Args)]
pub struct FmtArgs {
    /// Bundle directories or `.cedar` files.
    #[arg(default_value = crate::config::DEFAULT_POLICIES)]
    pub paths: Vec<PathBuf>,
    /// Changes nothing; lists the files that are not formatted and exits 1 if there are any.
    #[arg(long)]
    pub check: bool,
    /// The line width the formatter aims for.
    #[arg(long, default_value_t = 80)]
    pub line_width: usize,
    /// Spaces per indentation level.
    #[arg(long, default_value_t = 2)]
    pub indent_width: u8,
}

pub(super) fn run(args: FmtArgs) -> u8 {
    let config = Config {
        line_width: args.line_width,
        indent_width: isize::from(args.indent_width),
    };
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for path in &args.paths {
        let is_dir = std::fs::metadata(path).is_ok_and(|m| m.is_dir());
        if is_dir {
            collect_policy_files(path, 0, &mut files, &mut errors);
        } else {
            files.push(path.clone());
        }
    }
    files.sort();
    let (mut unformatted, mut invalid) = (0usize, 0usize);
    for file in &files {
        match format_file(file, &config, args.check) {
            Ok(false) => {}
            Ok(true) if args.check => {
                unformatted += 1;
                out!("{}: not formatted", file.display());
            }
            Ok(true) => out!("formatted {}", file.display()),
            Err(error) => {
                invalid += 1;
                eprintln!("{error}");
            }
        }
    }
    for error in &errors {
        eprintln!("{error}");
    }
    if invalid > 0 || !errors.is_empty() {
        EXIT_INVALID_BUNDLE
    } else if unformatted > 0 {
        eprintln!("{unformatted} file(s) not formatted; `verdict fmt` formats them");
        EXIT_FAILURE
    } else {
        EXIT_OK
    }
}

/// Lists the `.cedar` files below `dir`, skipping names that start with `.` as the loader
/// does.
fn collect_policy_files(
    dir: &Path,
    depth: usize,
    files: &mut Vec<PathBuf>,
    errors: &mut Vec<String>,
) {
    if depth > MAX_DIR_DEPTH {
        return;
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) => {
            errors.push(format!(
                "{}: cannot read directory: {}",
                dir.display(),
                verdict_core::io_reason(&error)
            ));
            return;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') {
            continue;
        }
        let metadata = std::fs::metadata(&path);
        if metadata.as_ref().is_ok_and(|m| m.is_dir()) {
            collect_policy_files(&path, depth + 1, files, errors);
        } else if name.ends_with(".cedar") && metadata.is_ok_and(|m| m.is_file()) {
            files.push(path);
        }
    }
}

/// Formats one file; returns whether it was (or, with `check`, would be) changed.
fn format_file(path: &Path, config: &Config, check: bool) -> Result<bool, String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "{}: cannot read: {}",
            path.display(),
            verdict_core::io_reason(&e)
        )
    })?;
    let formatted = match policies_str_to_pretty(&text, config) {
        Ok(formatted) => ensure_final_newline(formatted),
        Err(report) => return Err(locate_parse_error(path, &text, &report)),
    };
    if formatted == text {
        return Ok(false);
    }
    if !check {
        replace(path, &formatted).map_err(|e| {
            format!(
                "{}: cannot write: {}",
                path.display(),
                verdict_core::io_reason(&e)
            )
        })?;
    }
    Ok(true)
}

fn ensure_final_newline(mut text: String) -> String {
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text
}

/// Writes `text` beside `path` under a hidden name (which the loader skips) and renames it
/// over `path`.
fn replace(path: &Path, text: &str) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = path.with_file_name(format!(".{name}.verdict-fmt"));
    if let Ok(metadata) = std::fs::metadata(path) {
        std::fs::write(&temporary, text)?;
        std::fs::set_permissions(&temporary, metadata.permissions())?;
    } else {
        std::fs::write(&temporary, text)?;
    }
    std::fs::rename(&temporary, path)
}

/// The formatter's error says only "cannot parse input policies": Cedar's parser says where.
fn locate_parse_error(path: &Path, text: &str, report: &miette::Report) -> String {
    match text.parse::<cedar_policy::PolicySet>() {
        Err(errors) => {
            let offset = miette::Diagnostic::labels(&errors)
                .and_then(|mut labels| labels.next())
                .map(|label| label.offset());
            let (line, column) = verdict_core::line_column(text, offset.unwrap_or(0));
            format!(
                "{}:{line}:{column}: {}",
                path.display(),
                verdict_core::error_chain(&errors)
            )
        }
        Ok(_) => format!("{}: cannot format: {report}", path.display()),
    }
}
