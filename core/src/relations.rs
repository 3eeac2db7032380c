//! Relationship tuples: their syntax, the frozen in-memory index, and userset membership search.
//!
//! Owns: parsing Zanzibar-style tuples (`Document::"roadmap"#viewer@Team::"eng"#member`), the
//! [`TupleIndex`] built from them, and the bounded graph search that answers "is this subject in
//! that userset?" for one request.
//!
//! Does not own: Cedar. This module knows entity types and ids only as strings; the engine turns
//! search results into Cedar entities. It is pure and synchronous: no I/O, no async.
//!
//! Invariants: a [`TupleIndex`] is immutable once built; a [`TupleGraph`] (what searches ask)
//! is a shared index plus a small overlay of tuples added and removed since it was built, and
//! answers as an index rebuilt from the same tuples would; a search touches only the usersets
//! reachable from the one it starts at, never a precomputed closure of the whole graph.

mod check;
mod graph;
mod index;
mod lookup;
mod model;
mod search;
mod tuple;

pub use check::{CheckSubject, MAX_VISITS, RelationCheck};
pub use graph::{GraphEdit, TupleGraph};
pub use index::{
    EntityIdx, IndexFull, RelationId, TupleIndex, TupleIndexBuilder, TypeId, UsersetId,
};
pub use lookup::{
    FoundSubject, LookupError, LookupPage, MAX_CANDIDATES_PER_PAGE, lookup_resources,
    lookup_subjects,
};
pub use model::{ModelError, ModelSource, RelationModel};
pub use search::{Membership, SearchScratch, Subject};
pub use tuple::{
    EntityUidText, SubjectText, TupleParseError, TupleText, display_uid, is_identifier,
    parse_entity_type, parse_entity_uid, parse_tuple_line,
};
