//! `verdict relation check|lookup-resources|lookup-subjects`: the relation questions of
//! `verdict.v1` (issue 17) over a bundle directory, without a server, so a model author can try
//! a model. Answers come from the same core calls the RPCs use; lookups print every page.

use std::path::PathBuf;

use verdict_core::{
    ContextualTuples, DEFAULT_MAX_RELATION_DEPTH, EntityRef, RelationSubject, Snapshot,
};

use super::{EXIT_DENY, EXIT_FAILURE, EXIT_INVALID_BUNDLE, EXIT_OK, EXIT_USAGE, out};
use crate::config::BundleArgs;

/// Arguments of `verdict relation`.
#[derive(Debug, Clone, clap::Args)]
pub struct RelationArgs {
    #[command(subcommand)]
    question: Question,
    /// The bundle directory.
    #[arg(long, global = true, env = "VERDICT_POLICIES", default_value = crate::config::DEFAULT_POLICIES)]
    policies: PathBuf,
    /// A contextual tuple for this question only (repeatable), such as
    /// `Document::"d"#viewer@User::"anne"`.
    #[arg(long = "tuple", global = true)]
    tuples: Vec<String>,
    /// Most nested hops one relation search follows.
    #[arg(long, global = true, env = "VERDICT_MAX_RELATION_DEPTH", default_value_t = DEFAULT_MAX_RELATION_DEPTH)]
    max_relation_depth: u32,
    #[command(flatten)]
    bundle: BundleArgs,
}

#[derive(Debug, Clone, clap::Subcommand)]
enum Question {
    /// Does SUBJECT hold RELATION on OBJECT? Prints `allowed` (exit 0) or `denied` (exit 2).
    Check {
        /// The object, such as `Document::"roadmap"`.
        object: String,
        /// The relation, such as `viewer`.
        relation: String,
        /// The subject: `User::"anne"`, `Team::"eng"#member` or `User::*`.
        subject: String,
    },
    /// The objects of TYPE on which SUBJECT holds RELATION, one id a line.
    LookupResources {
        /// The subject.
        subject: String,
        /// The relation.
        relation: String,
        /// The object type, such as `Document`.
        resource_type: String,
    },
    /// The subjects of TYPE (usersets `TYPE#REL` with --subject-relation) holding RELATION on
    /// OBJECT, one a line.
    LookupSubjects {
        /// The object.
        object: String,
        /// The relation.
        relation: String,
        /// The subject type, such as `User`.
        subject_type: String,
        /// List usersets of this relation instead of entities.
        #[arg(long)]
        subject_relation: Option<String>,
    },
}

fn entity(text: &str) -> Result<EntityRef, String> {
    match RelationSubject::parse(text)? {
        RelationSubject::Entity(entity) => Ok(entity),
        _ => Err(format!("`{text}` is not an entity uid")),
    }
}

pub(super) fn run(args: RelationArgs) -> u8 {
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
    let view = match snapshot.with_contextual_tuples(args.tuples.clone()) {
        Ok(view) => view,
        Err(error) => {
            eprintln!("error: {error}");
            return EXIT_USAGE;
        }
    };
    match ask(&view, &args.question) {
        Ok(code) => code,
        Err(Failure::Usage(message)) => {
            eprintln!("error: {message}");
            EXIT_USAGE
        }
        Err(Failure::Other(message)) => {
            eprintln!("error: {message}");
            EXIT_FAILURE
        }
    }
}

enum Failure {
    Usage(String),
    Other(String),
}

impl From<verdict_core::RelationError> for Failure {
    fn from(error: verdict_core::RelationError) -> Self {
        match error {
            verdict_core::RelationError::Request(verdict_core::RequestError::Internal(_)) => {
                Self::Other(error.to_string())
            }
            other => Self::Usage(other.to_string()),
        }
    }
}

fn ask(view: &ContextualTuples<'_>, question: &Question) -> Result<u8, Failure> {
    match question {
        Question::Check {
            object,
            relation,
            subject,
        } => {
            let object = entity(object).map_err(Failure::Usage)?;
            let subject = RelationSubject::parse(subject).map_err(Failure::Usage)?;
            let answer = view.check_relation(&object, relation, &subject)?;
            if answer.relation_depth_exceeded {
                out!("denied (the relation depth bound was reached)");
            } else {
                out!("{}", if answer.allowed { "allowed" } else { "denied" });
            }
            Ok(if answer.allowed { EXIT_OK } else { EXIT_DENY })
        }
        Question::LookupResources {
            subject,
            relation,
            resource_type,
        } => {
            let subject = RelationSubject::parse(subject).map_err(Failure::Usage)?;
            let mut cursor = None;
            loop {
                let page =
                    view.lookup_resources(&subject, relation, resource_type, 0, cursor.as_deref())?;
                for id in page.ids {
                    out!(
                        "{}",
                        verdict_core::relations::display_uid(resource_type, &id)
                    );
                }
                if page.relation_depth_exceeded {
                    eprintln!(
                        "warning: some candidates reached the relation depth bound (left out)"
                    );
                }
                match page.next_cursor {
                    Some(next) => cursor = Some(next.as_str().to_owned()),
                    None => return Ok(EXIT_OK),
                }
            }
        }
        Question::LookupSubjects {
            object,
            relation,
            subject_type,
            subject_relation,
        } => {
            let object = entity(object).map_err(Failure::Usage)?;
            let mut cursor = None;
            loop {
                let page = view.lookup_subjects(
                    &object,
                    relation,
                    (subject_type, subject_relation.as_deref()),
                    0,
                    cursor.as_deref(),
                )?;
                for subject in page.subjects {
                    out!("{}", subject.text());
                }
                if page.relation_depth_exceeded {
                    eprintln!(
                        "warning: some candidates reached the relation depth bound (left out)"
                    );
                }
                match page.next_cursor {
                    Some(next) => cursor = Some(next.as_str().to_owned()),
                    None => return Ok(EXIT_OK),
                }
            }
        }
    }
}
