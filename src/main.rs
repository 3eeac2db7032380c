//! The `verdict` binary: parses the command line and dispatches; nothing else.

fn main() -> std::process::ExitCode {
    verdict::cli::main()
}
