//! Generated protobuf and gRPC types for `verdict.v1`, and the encoded descriptor set that
//! server reflection serves.

#![allow(missing_docs, clippy::all, reason = "generated code")]

tonic::include_proto!("verdict.v1");

/// The encoded `FileDescriptorSet` of `proto/verdict/v1`, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("verdict_descriptor");
