//! Counting a request's values on the wire, before it is decoded.
//!
//! Decoding is the cost of a large request: protobuf turns a set of 370,000 strings in a 4 MB
//! `Check` into 370,000 allocated values (about 50 ms here) before any handler could refuse it.
//! This walks the encoded `CheckRequest` (or each check of a `BatchCheckRequest`) once, without
//! allocating, and applies the same [`WorkBudget`] the conversion and `Snapshot::check` apply,
//! so a request over `--max-collection-elements` or `--max-request-work` is refused for the
//! price of reading its bytes. Anything it cannot read is left for the decoder to refuse, and
//! so is nesting deeper than the decoder accepts ([`MAX_NESTING`]): the walk stops there, so a
//! hostile message cannot exhaust the stack.
//!
//! The messages it reads (field numbers from `proto/verdict/v1/authorization.proto` and
//! `google/protobuf/struct.proto`): `BatchCheckRequest.checks = 1`; `CheckRequest.context = 4`
//! (`Struct`), `entities = 5`, `properties = 6`; `Entity.attrs = 2` (`Struct`);
//! `Struct.fields = 1` (map entries: `key = 1`, `value = 2`); `Value.struct_value = 5`,
//! `list_value = 6`, scalars otherwise; `ListValue.values = 1`.

use verdict_core::{ENTITY_WORK, Limit, Limits, RequestError, WorkBudget};

use super::convert::Item;

/// The deepest nesting of records and lists the walk follows: prost refuses to decode messages
/// nested deeper than 100 levels, so beyond that there is nothing to count.
const MAX_NESTING: usize = 100;

/// The gRPC paths whose messages are counted.
pub const CHECK_PATH: &str = "/verdict.v1.Authorization/Check";
/// See [`CHECK_PATH`].
pub const BATCH_CHECK_PATH: &str = "/verdict.v1.Authorization/BatchCheck";

/// Refuses an encoded request (the gRPC message without its 5-byte prefix) whose context or
/// entity attributes break `limits`' collection or work limits. Other paths, and bytes that do
/// not parse, pass: decoding decides about those.
pub fn prescan(path: &str, message: &[u8], limits: &Limits) -> Result<(), RequestError> {
    match path {
        CHECK_PATH => check_request(message, Item::Single, limits),
        BATCH_CHECK_PATH => {
            let mut reader = Reader(message);
            let mut index = 0;
            while let Some((field, value)) = reader.field() {
                if let (1, Wire::Bytes(check)) = (field, value) {
                    check_request(check, Item::Batch(index), limits)?;
                    index += 1;
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn check_request(message: &[u8], item: Item, limits: &Limits) -> Result<(), RequestError> {
    let mut budget = limits.work_budget();
    // Entities and properties first, as `Snapshot::check` counts them.
    let mut entities = 0;
    let mut properties = 0;
    let mut reader = Reader(message);
    while let Some((field, _)) = reader.field() {
        match field {
            5 => entities += 1,
            6 => properties += 1,
            _ => {}
        }
    }
    // The counts first, as `Snapshot::check` checks them, so the same request gets the same
    // error whichever counts it.
    for (count, max, limit, field) in [
        (
            entities,
            limits.max_request_entities,
            Limit::Entities,
            "entities",
        ),
        (
            properties,
            limits.max_properties,
            Limit::Properties,
            "properties",
        ),
    ] {
        if count > max {
            return Err(RequestError::TooLarge {
                field: format!("{item}{field}"),
                limit,
                count,
                max,
            });
        }
    }
    budget.spend(entities * ENTITY_WORK + properties, || {
        format!("{item}entities")
    })?;
    let mut reader = Reader(message);
    let mut entity = 0;
    while let Some((field, value)) = reader.field() {
        match (field, value) {
            (4, Wire::Bytes(context)) => {
                record(
                    context,
                    &mut format!("{item}context"),
                    &mut budget,
                    MAX_NESTING,
                )?;
            }
            (5, Wire::Bytes(bytes)) => {
                let mut fields = Reader(bytes);
                while let Some((field, value)) = fields.field() {
                    if let (2, Wire::Bytes(attrs)) = (field, value) {
                        let path = &mut format!("{item}entities[{entity}].attrs");
                        record(attrs, path, &mut budget, MAX_NESTING)?;
                    }
                }
                entity += 1;
            }
            _ => {}
        }
    }
    Ok(())
}

/// Counts a `Struct`: itself, then each field's value, at most `depth` levels down.
fn record(
    bytes: &[u8],
    path: &mut String,
    budget: &mut WorkBudget,
    depth: usize,
) -> Result<(), RequestError> {
    let Some(depth) = depth.checked_sub(1) else {
        return Ok(());
    };
    let len = Reader(bytes).count(1);
    budget.collection(len, || path.clone())?;
    let mut entries = Reader(bytes);
    let base = path.len();
    while let Some((field, value)) = entries.field() {
        let (1, Wire::Bytes(entry)) = (field, value) else {
            continue;
        };
        let (mut key, mut item) = ("", None);
        let mut parts = Reader(entry);
        while let Some((field, value)) = parts.field() {
            match (field, value) {
                (1, Wire::Bytes(text)) => key = std::str::from_utf8(text).unwrap_or("?"),
                (2, Wire::Bytes(bytes)) => item = Some(bytes),
                _ => {}
            }
        }
        path.push('.');
        path.push_str(key);
        self::value(item.unwrap_or_default(), path, budget, depth)?;
        path.truncate(base);
    }
    Ok(())
}

/// Counts a `Value`: a scalar counts one; a record or a list counts one and its members.
fn value(
    bytes: &[u8],
    path: &mut String,
    budget: &mut WorkBudget,
    depth: usize,
) -> Result<(), RequestError> {
    let Some(depth) = depth.checked_sub(1) else {
        return Ok(());
    };
    let mut reader = Reader(bytes);
    while let Some((field, wire)) = reader.field() {
        match (field, wire) {
            (5, Wire::Bytes(fields)) => return record(fields, path, budget, depth),
            (6, Wire::Bytes(list)) => {
                let len = Reader(list).count(1);
                budget.collection(len, || path.clone())?;
                let base = path.len();
                let mut items = Reader(list);
                let mut index = 0;
                while let Some((field, wire)) = items.field() {
                    if let (1, Wire::Bytes(item)) = (field, wire) {
                        path.push_str(&format!("[{index}]"));
                        self::value(item, path, budget, depth)?;
                        path.truncate(base);
                        index += 1;
                    }
                }
                return Ok(());
            }
            _ => {}
        }
    }
    budget.spend(1, || path.clone())
}

/// A field's payload on the wire.
enum Wire<'a> {
    /// A varint or a fixed-width number (not needed here).
    Scalar,
    /// A length-delimited payload: a message, a string, bytes or a packed list.
    Bytes(&'a [u8]),
}

/// Reads protobuf fields from a buffer; stops (returns `None`) at the end or at anything it
/// cannot read, leaving the refusal of malformed bytes to the decoder.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Option<u64> {
        let mut result = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self.0.split_first()?;
            self.0 = rest;
            result |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(result);
            }
        }
        None
    }

    fn field(&mut self) -> Option<(u64, Wire<'a>)> {
        let key = self.varint()?;
        let wire = match key & 7 {
            0 => {
                self.varint()?;
                Wire::Scalar
            }
            1 => {
                self.0 = self.0.get(8..)?;
                Wire::Scalar
            }
            2 => {
                let len = usize::try_from(self.varint()?).ok()?;
                let (bytes, rest) = (self.0.get(..len)?, self.0.get(len..)?);
                self.0 = rest;
                Wire::Bytes(bytes)
            }
            5 => {
                self.0 = self.0.get(4..)?;
                Wire::Scalar
            }
            _ => return None,
        };
        Some((key >> 3, wire))
    }

    /// Counts the fields numbered `number` (the length of a repeated field or a map).
    fn count(mut self, number: u64) -> usize {
        let mut count = 0;
        while let Some((field, _)) = self.field() {
            if field == number {
                count += 1;
            }
        }
        count
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;
    use prost_types::value::Kind;

    use super::*;
    use crate::api::proto;

    fn string(text: &str) -> prost_types::Value {
        prost_types::Value {
            kind: Some(Kind::StringValue(text.to_owned())),
        }
    }

    fn request(members: usize) -> proto::CheckRequest {
        let list = prost_types::Value {
            kind: Some(Kind::ListValue(prost_types::ListValue {
                values: (0..members).map(|i| string(&i.to_string())).collect(),
            })),
        };
        proto::CheckRequest {
            contextual_tuples: Default::default(),
            principal: None,
            action: "read".to_owned(),
            resource: None,
            context: Some(prost_types::Struct {
                fields: [("ips".to_owned(), list), ("x".to_owned(), string("y"))].into(),
            }),
            entities: Vec::new(),
            properties: Vec::new(),
            token: String::new(),
            consistency: None,
        }
    }

    #[test]
    fn a_large_set_is_refused_on_the_wire_with_the_conversion_s_message() {
        let limits = Limits::default();
        let small = request(1_000).encode_to_vec();
        assert_eq!(prescan(CHECK_PATH, &small, &limits), Ok(()));
        let large = request(370_000).encode_to_vec();
        let error = prescan(CHECK_PATH, &large, &limits).unwrap_err();
        assert_eq!(
            error.to_string(),
            "context.ips: 370000 elements exceed the set and record size limit of 1000"
        );
        let batch = proto::BatchCheckRequest {
            checks: vec![request(1), request(5_000)],
            consistency: None,
        }
        .encode_to_vec();
        let error = prescan(BATCH_CHECK_PATH, &batch, &limits).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("checks[1].context.ips: 5000 elements"),
            "{error}"
        );
    }

    #[test]
    fn work_is_counted_as_the_conversion_counts_it() {
        let limits = Limits {
            max_request_work: 1_003,
            ..Limits::default()
        };
        // The record, the list, its 1,000 members and `x`: 1,003 units.
        assert_eq!(
            prescan(CHECK_PATH, &request(1_000).encode_to_vec(), &limits),
            Ok(())
        );
        let tight = Limits {
            max_request_work: 1_002,
            ..limits
        };
        let error = prescan(CHECK_PATH, &request(1_000).encode_to_vec(), &tight).unwrap_err();
        assert_eq!(error.limit(), Some(verdict_core::Limit::Work));
    }

    #[test]
    fn nesting_deeper_than_the_decoder_accepts_is_not_followed() {
        // 100,000 levels of `{"a": {"a": …}}`, encoded by hand (prost would refuse to encode
        // what it cannot decode).
        let mut value: Vec<u8> = vec![0x1a, 0x01, b'x']; // Value { string_value: "x" }
        for _ in 0..100_000 {
            let mut entry = vec![0x0a, 0x01, b'a', 0x12];
            varint(value.len(), &mut entry);
            entry.extend_from_slice(&value);
            let mut fields = vec![0x0a];
            varint(entry.len(), &mut fields);
            fields.extend_from_slice(&entry);
            let mut wrapped = vec![0x2a];
            varint(fields.len(), &mut wrapped);
            wrapped.extend_from_slice(&fields);
            value = wrapped;
        }
        let mut message = vec![0x22];
        // The context is a Struct: the value's struct_value payload.
        let fields = &value[1 + varint_len(&value[1..])..];
        varint(fields.len(), &mut message);
        message.extend_from_slice(fields);
        assert_eq!(prescan(CHECK_PATH, &message, &Limits::default()), Ok(()));
    }

    fn varint(mut n: usize, out: &mut Vec<u8>) {
        while n >= 0x80 {
            out.push((n as u8) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
    }

    fn varint_len(bytes: &[u8]) -> usize {
        bytes.iter().take_while(|b| **b & 0x80 != 0).count() + 1
    }

    #[test]
    fn bytes_that_do_not_parse_are_left_to_the_decoder() {
        let limits = Limits::default();
        for junk in [&[0xff_u8, 0xff, 0xff][..], &[0x22, 0x7f], &[]] {
            assert_eq!(prescan(CHECK_PATH, junk, &limits), Ok(()));
        }
        assert_eq!(
            prescan("/grpc.health.v1.Health/Check", &[0x22], &limits),
            Ok(())
        );
    }
}
