#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::path::Path;

use super::*;
use crate::relations::parse_tuple_line;

fn build(files: &[&str]) -> Result<RelationModel, Vec<String>> {
    let paths: Vec<PathBuf> = (0..files.len())
        .map(|i| PathBuf::from(format!("m{i}.fga")))
        .collect();
    let sources: Vec<ModelSource<'_>> = files
        .iter()
        .zip(&paths)
        .map(|(text, path)| ModelSource { path, text })
        .collect();
    match RelationModel::build(&sources) {
        Ok(model) => Ok(model.unwrap()),
        Err(errors) => Err(errors.iter().map(ToString::to_string).collect()),
    }
}

const HEADER: &str = "model\n  schema 1.1\n";

fn rewrite_of(model: &RelationModel, entity_type: &str, relation: &str) -> String {
    fn show(rewrite: &Rewrite) -> String {
        match rewrite {
            Rewrite::Direct(r) => format!(
                "[{}]",
                r.iter()
                    .map(restriction_text)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Rewrite::Computed(n) => n.text.to_string(),
            Rewrite::TupleToUserset { tupleset, computed } => {
                format!("({computed} from {tupleset})")
            }
            Rewrite::Union(c) => {
                format!("({})", c.iter().map(show).collect::<Vec<_>>().join(" or "))
            }
            Rewrite::Intersection(c) => {
                format!("({})", c.iter().map(show).collect::<Vec<_>>().join(" and "))
            }
            Rewrite::Exclusion(b, s) => format!("({} but not {})", show(b), show(s)),
        }
    }
    show(&model.relation(entity_type, relation).unwrap().rewrite)
}

#[test]
fn no_model_files_means_no_model() {
    assert!(RelationModel::build(&[]).unwrap().is_none());
}

#[test]
fn every_operator_parses_with_openfga_grouping() {
    let text = format!(
        "{HEADER}type User\ntype Team\n  relations\n    define member: [User, User:*, Team#member]\n\
         # a comment line\n\
         type Folder\n  relations\n    define viewer: [User]  # a trailing comment\n\
         type Acme::Doc\n  relations\n\n    define parent: [Folder]\n    define owner: [User]\n    define blocked: [User]\n\
         \x20   define editor: [User, Team#member] or owner\n\
         \x20   define viewer: ([User:*] or editor or viewer from parent) but not blocked\n\
         \x20   define both: (editor and owner) or (viewer but not (owner or editor))\n\
         \x20   define multi: [\n      User,\n      Team#member\n    ]\n"
    );
    let model = build(&[&text]).unwrap();
    assert_eq!(
        rewrite_of(&model, "Team", "member"),
        "[User, User:*, Team#member]"
    );
    assert_eq!(
        rewrite_of(&model, "Acme::Doc", "editor"),
        "([User, Team#member] or owner)"
    );
    assert_eq!(
        rewrite_of(&model, "Acme::Doc", "viewer"),
        "(([User:*] or editor or (viewer from parent)) but not blocked)"
    );
    assert_eq!(
        rewrite_of(&model, "Acme::Doc", "both"),
        "((editor and owner) or (viewer but not (owner or editor)))"
    );
    assert_eq!(
        rewrite_of(&model, "Acme::Doc", "multi"),
        "[User, Team#member]"
    );
    let types: Vec<&str> = model.types().map(|(t, _)| t).collect();
    assert_eq!(types, ["User", "Team", "Folder", "Acme::Doc"]);
}

#[test]
fn several_files_form_one_model() {
    let users = format!("{HEADER}type User\ntype Team\n  relations\n    define member: [User]\n");
    let docs = format!("{HEADER}type Doc\n  relations\n    define viewer: [User, Team#member]\n");
    let model = build(&[&users, &docs]).unwrap();
    assert!(model.has_relation("Doc", "viewer"));
    assert!(model.has_relation("Team", "member"));
    // The other file alone does not define `Team`.
    let errors = build(&[&docs]).unwrap_err();
    assert_eq!(
        errors,
        [
            "m0.fga:5:21: type `User` is not defined in the relation model",
            "m0.fga:5:27: type `Team` is not defined in the relation model",
        ]
    );
}

#[test]
fn tuples_are_checked_against_type_restrictions() {
    let model = build(&[&format!(
        "{HEADER}type User\ntype Team\n  relations\n    define member: [User, Team#member]\n\
         type Doc\n  relations\n    define owner: [User]\n    define viewer: [User:*] or owner\n    define can_read: viewer\n"
    )])
    .unwrap();
    let check = |line: &str| model.check_tuple(&parse_tuple_line(line).unwrap().unwrap());
    assert_eq!(check(r##"Team::"a"#member@User::"u""##), Ok(()));
    assert_eq!(check(r##"Team::"a"#member@Team::"b"#member"##), Ok(()));
    assert_eq!(check(r##"Doc::"d"#viewer@User::*"##), Ok(()));
    assert_eq!(check(r##"Doc::"d"#owner@User::"u""##), Ok(()));
    assert_eq!(
        check(r##"Robot::"r"#owner@User::"u""##).unwrap_err(),
        "type `Robot` is not defined in the relation model"
    );
    assert_eq!(
        check(r##"Doc::"d"#editor@User::"u""##).unwrap_err(),
        "type `Doc` has no relation `editor` in the relation model"
    );
    assert_eq!(
        check(r##"Doc::"d"#can_read@User::"u""##).unwrap_err(),
        "relation `can_read` of `Doc` is not directly assignable (it has no type restriction \
         `[…]`), so no tuple can grant it"
    );
    assert_eq!(
        check(r##"Doc::"d"#viewer@User::"u""##).unwrap_err(),
        "relation `viewer` of `Doc` cannot hold an entity of type `User`; its type restriction \
         is `[User:*]`"
    );
    assert_eq!(
        check(r##"Doc::"d"#owner@User::*"##).unwrap_err(),
        "relation `owner` of `Doc` cannot hold the wildcard `User::*`; its type restriction is \
         `[User]`"
    );
    assert_eq!(
        check(r##"Team::"a"#member@Team::"b"#owner"##).unwrap_err(),
        "relation `member` of `Team` cannot hold the userset `Team::\"b\"#owner`; its type \
         restriction is `[User, Team#member]`"
    );
    assert_eq!(
        check(r##"Team::"a"#member@Team::"a"#member"##).unwrap_err(),
        "the tuple says `Team::\"a\"#member` holds itself, which is always true; OpenFGA \
         refuses such an implicit tuple"
    );
    assert_eq!(
        check(r##"Team::"a"#member@Doc::"b""##).unwrap_err(),
        "relation `member` of `Team` cannot hold an entity of type `Doc`; its type restriction \
         is `[User, Team#member]`"
    );
}

#[test]
fn hostile_models_are_answered_quickly() {
    // Intersections that each need two earlier relations: a depth-first entry-point search
    // would take 2^n steps; the fixpoint takes n^2.
    let mut text = format!(
        "{HEADER}type User\ntype Doc\n  relations\n    define r0: [User]\n    define r1: [User]\n"
    );
    for i in 2..200 {
        text.push_str(&format!("    define r{i}: r{} and r{}\n", i - 1, i - 2));
    }
    // OpenFGA refuses from `r5` on (its search marks `r3` as met while it searches `r4`):
    // Verdict refuses what OpenFGA refuses, and answers quickly.
    let errors = build(&[&text]).unwrap_err();
    assert_eq!(errors.len(), 195, "{errors:?}");
    assert!(
        errors[0].starts_with("m0.fga:11:12: relation `r5` of `Doc` can never hold"),
        "{errors:?}"
    );
    // Unbalanced parentheses and a very long line are errors, not a crash.
    let deep = format!(
        "{HEADER}type User\ntype Doc\n  relations\n    define v: {}[User]\n",
        "(".repeat(10_000)
    );
    let errors = build(&[&deep]).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:?}");
}

/// Every refused model under `core/testdata/models/bad/` (one directory per case, its `*.fga`
/// files and `expected.txt`) is refused with exactly its golden messages. Regenerate with
/// `UPDATE_GOLDEN=1`.
#[test]
fn each_refused_model_reports_its_golden_errors() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/models/bad");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut cases: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(cases.len() >= 30, "{cases:?}");
    let mut mismatches = Vec::new();
    for case in cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let mut files: Vec<_> = std::fs::read_dir(&case)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "fga"))
            .collect();
        files.sort();
        let texts: Vec<(PathBuf, String)> = files
            .iter()
            .map(|p| {
                (
                    PathBuf::from(&name).join(p.file_name().unwrap()),
                    std::fs::read_to_string(p).unwrap(),
                )
            })
            .collect();
        let sources: Vec<ModelSource<'_>> = texts
            .iter()
            .map(|(path, text)| ModelSource { path, text })
            .collect();
        let got = match RelationModel::build(&sources) {
            Ok(_) => "accepted\n".to_owned(),
            Err(errors) => errors.iter().map(|e| format!("{e}\n")).collect(),
        };
        let golden = case.join("expected.txt");
        if update {
            std::fs::write(&golden, &got).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&golden).unwrap_or_default();
        if expected != got {
            mismatches.push(format!("{name}:\n--- expected\n{expected}--- got\n{got}"));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}
