//! The `verdict` binary: parses the command line and dispatches; nothing else.

/// mimalloc instead of the system allocator: a decision allocates and frees many small
/// objects (Cedar's entities and values, the slice, the protobuf messages), and glibc's
/// malloc and free were a fifth of a decision's instructions (see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    verdict::cli::main()
}
