//! Rebuild cost of a large bundle, and peak memory while the old and the new snapshot coexist
//! (as they do for a moment during a reload swap).
//!
//! `cargo bench --bench reload` generates a seeded bundle of 10,000 policies and 1,000,000
//! tuples and prints wall time and peak RSS (VmHWM, reset before each step) of: a first load
//! on one thread (the baseline), a first load (the serving snapshot), a full rebuild while the
//! first is still alive, a reload after only the tuple file changed (the policies are reused)
//! and one after only the policy file changed (the tuple index is reused). Run without
//! `--bench` (as `cargo test --benches` does) it uses a small bundle, as a smoke test.
//! `RELOAD_BENCH_POLICIES` and `RELOAD_BENCH_TUPLES` set other sizes; `RELOAD_BENCH_WRITE=DIR`
//! only writes the bundle to DIR, for timing the real binary on it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "benches"
)]

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::time::Instant;

use verdict_core::{LoadOptions, Snapshot};

/// The server's allocator (see `src/main.rs`), so that what is measured is what runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A small deterministic generator (xorshift), so every run builds the same bundle.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn generate(dir: &Path, policies: usize, tuples: usize) {
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut text = String::new();
    for i in 0..policies {
        let action = i % 50;
        match i % 4 {
            0 => writeln!(
                text,
                "@id(\"p{i}\")\npermit (principal, action == Action::\"a{action}\", resource is Doc)\nwhen {{ principal in resource.viewer || principal in resource.owner }};"
            ),
            1 => writeln!(
                text,
                "@id(\"p{i}\")\npermit (principal, action == Action::\"a{action}\", resource is Doc)\nwhen {{ principal in resource.owner && context has level && context.level >= {} }};",
                i % 10
            ),
            2 => writeln!(
                text,
                "@id(\"p{i}\")\npermit (principal == User::\"u{}\", action == Action::\"a{action}\", resource);",
                rng.below(100_000)
            ),
            _ => writeln!(
                text,
                "@id(\"p{i}\")\nforbid (principal, action == Action::\"a{action}\", resource is Doc)\nwhen {{ principal in resource.blocked }};"
            ),
        }
        .unwrap();
    }
    std::fs::write(dir.join("policies.cedar"), text).unwrap();

    let users = (tuples / 10).max(10) as u64;
    let teams = (tuples / 100).max(10) as u64;
    let docs = (tuples / 4).max(10) as u64;
    let mut file =
        std::io::BufWriter::new(std::fs::File::create(dir.join("graph.tuples")).unwrap());
    for i in 0..tuples as u64 {
        match i % 10 {
            0..=3 => writeln!(
                file,
                "Doc::\"d{}\"#viewer@User::\"u{}\"",
                rng.below(docs),
                rng.below(users)
            ),
            4..=5 => writeln!(
                file,
                "Team::\"t{}\"#member@User::\"u{}\"",
                rng.below(teams),
                rng.below(users)
            ),
            6 => {
                // Nesting only towards lower indexes, so the team graph is deep but acyclic.
                let child = 1 + rng.below(teams - 1);
                writeln!(
                    file,
                    "Team::\"t{}\"#member@Team::\"t{child}\"#member",
                    rng.below(child)
                )
            }
            7..=8 => writeln!(
                file,
                "Doc::\"d{}\"#viewer@Team::\"t{}\"#member",
                rng.below(docs),
                rng.below(teams)
            ),
            _ => writeln!(
                file,
                "Doc::\"d{}\"#owner@User::\"u{}\"",
                rng.below(docs),
                rng.below(users)
            ),
        }
        .unwrap();
    }
    file.flush().unwrap();
}

/// Peak resident set size of this process since the last [`reset_peak_rss`], in MiB (Linux
/// `VmHWM`).
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

/// Resets the peak to the current resident set (Linux: `5` into `/proc/self/clear_refs`), so
/// that each step's peak is its own.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Runs `step`, printing its wall time and the peak RSS during it (the snapshots still alive
/// included); returns what it built.
fn timed<T>(label: &str, step: impl FnOnce() -> T) -> (T, f64) {
    reset_peak_rss();
    let started = Instant::now();
    let built = step();
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{label:<44} {seconds:>6.2} s   peak RSS {:>5.0} MiB",
        peak_rss_mib()
    );
    (built, seconds)
}

fn main() {
    let full = std::env::args().any(|arg| arg == "--bench");
    let (policies, tuples) = if full {
        (10_000, 1_000_000)
    } else {
        (200, 20_000)
    };
    // Other sizes: RELOAD_BENCH_POLICIES=… RELOAD_BENCH_TUPLES=… cargo bench --bench reload
    let size = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (policies, tuples) = (
        size("RELOAD_BENCH_POLICIES", policies),
        size("RELOAD_BENCH_TUPLES", tuples),
    );
    // RELOAD_BENCH_WRITE=DIR writes the bundle there and stops, for measuring the real
    // binary: `/usr/bin/time -v target/release/verdict validate DIR`.
    if let Ok(out) = std::env::var("RELOAD_BENCH_WRITE") {
        std::fs::create_dir_all(&out).unwrap();
        generate(Path::new(&out), policies, tuples);
        println!("wrote {policies} policies and {tuples} tuples to {out}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    generate(dir.path(), policies, tuples);
    println!(
        "generated {policies} policies and {tuples} tuples in {:.1} s; {} worker threads",
        started.elapsed().as_secs_f64(),
        rayon::current_num_threads()
    );
    let options = LoadOptions::default();

    // The baseline, in the same run: the same load on one thread (what a load was before it
    // was parallel, less the reuse below).
    let one_thread = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let (sequential, sequential_s) = timed("first load, 1 thread (baseline)", || {
        one_thread.install(|| Snapshot::load(dir.path(), &options).unwrap())
    });
    drop(sequential);

    let (serving, _) = timed("first load", || {
        Snapshot::load(dir.path(), &options).unwrap()
    });
    println!(
        "  {} policies, {} tuples, {} usersets",
        serving.policy_count(),
        serving.tuple_count(),
        serving.tuples().userset_count()
    );

    // A full rebuild, while the serving snapshot is still alive: the swap's worst moment.
    let (rebuilt, full_s) = timed("full rebuild (serving snapshot alive)", || {
        Snapshot::load(dir.path(), &options).unwrap()
    });
    assert_eq!(rebuilt.version(), serving.version());
    drop(rebuilt);

    // Only the tuples changed: the policies are reused.
    append(
        &dir.path().join("graph.tuples"),
        "Doc::\"d0\"#viewer@User::\"new\"\n",
    );
    let (tuples_only, tuples_s) = timed("reload, tuple file changed", || {
        Snapshot::reload(dir.path(), &options, &serving).unwrap()
    });
    assert!(tuples_only.shares_policies_with(&serving));
    assert!(!tuples_only.shares_tuples_with(&serving));

    // Only the policies changed: the tuple index is reused.
    append(
        &dir.path().join("policies.cedar"),
        "@id(\"new\")\nforbid (principal, action, resource) when { principal in resource.blocked };\n",
    );
    let (policies_only, policies_s) = timed("reload, policy file changed", || {
        Snapshot::reload(dir.path(), &options, &tuples_only).unwrap()
    });
    assert!(policies_only.shares_tuples_with(&tuples_only));
    assert!(!policies_only.shares_policies_with(&tuples_only));
    println!(
        "ratios to the 1-thread load: full rebuild {:.2}, tuples only {:.2}, policies only {:.2}",
        full_s / sequential_s,
        tuples_s / sequential_s,
        policies_s / sequential_s
    );
    drop((serving, tuples_only, policies_only));
}

/// Appends `text` to the file at `path`.
fn append(path: &Path, text: &str) {
    let mut file = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    file.write_all(text.as_bytes()).unwrap();
}
