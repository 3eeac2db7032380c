//! A throwaway PostgreSQL for tests: installed from Debian's `postgresql` package when missing,
//! a fresh cluster in a temporary directory, on a free 127.0.0.1 port, run as the unprivileged
//! `postgres` user (PostgreSQL refuses root), stopped and removed when dropped.
//!
//! Every step is bounded: `pg_ctl -w -t` waits at most its timeout, and a start that loses its
//! port to another process is retried a few times on a new port.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// How long `pg_ctl` may wait for a start or stop, in seconds.
const PG_CTL_TIMEOUT_SECS: &str = "60";

/// Starts on a free port tried at most this many times.
const START_ATTEMPTS: usize = 5;

/// A running throwaway cluster.
pub struct Postgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
}

impl Postgres {
    /// Installs PostgreSQL if needed, creates a cluster and starts it, with a database
    /// `verdict`.
    pub fn start() -> Self {
        let bin = installed_bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("verdict-pg-")
            .tempdir()
            .expect("a temporary directory");
        // The cluster's files belong to `postgres`: the directory must be theirs.
        as_root_chown_to_postgres(dir.path());
        let data = dir.path().join("data");
        run_checked(
            pg_command(&bin, "initdb").args([
                "-D",
                path_str(&data),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ]),
            "initdb",
        );
        let mut cluster = Self { bin, dir, port: 0 };
        let mut last_failure = String::new();
        for _ in 0..START_ATTEMPTS {
            cluster.port = free_port();
            match cluster.try_start() {
                Ok(()) => {
                    run_checked(
                        pg_command(&cluster.bin, "createdb").args([
                            "-h",
                            "127.0.0.1",
                            "-p",
                            &cluster.port.to_string(),
                            "-U",
                            "postgres",
                            "verdict",
                        ]),
                        "createdb",
                    );
                    return cluster;
                }
                Err(failure) => last_failure = failure,
            }
        }
        panic!("PostgreSQL did not start in {START_ATTEMPTS} attempts: {last_failure}");
    }

    /// The connection string of the `verdict` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/verdict", self.port)
    }

    /// Stops the server (fast shutdown: clients are disconnected); the data stays.
    pub fn stop(&self) {
        run_checked(
            pg_command(&self.bin, "pg_ctl").args([
                "-D",
                path_str(&self.dir.path().join("data")),
                "-m",
                "fast",
                "-w",
                "-t",
                PG_CTL_TIMEOUT_SECS,
                "stop",
            ]),
            "pg_ctl stop",
        );
    }

    /// Starts the server again on the same port, after [`Postgres::stop`].
    pub fn restart(&self) {
        self.try_start()
            .unwrap_or_else(|failure| panic!("PostgreSQL did not start again: {failure}"));
    }

    /// Runs SQL with `psql` against the `verdict` database and returns its unaligned output.
    pub fn psql(&self, sql: &str) -> String {
        let output = run_checked(
            pg_command(&self.bin, "psql").args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "verdict",
                "-v",
                "ON_ERROR_STOP=1",
                "-At",
                "-c",
                sql,
            ]),
            "psql",
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    fn try_start(&self) -> Result<(), String> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=100",
            self.port,
            path_str(self.dir.path())
        );
        let output = pg_command(&self.bin, "pg_ctl")
            .args([
                "-D",
                path_str(&self.dir.path().join("data")),
                "-o",
                &options,
                "-l",
                path_str(&self.dir.path().join("log")),
                "-w",
                "-t",
                PG_CTL_TIMEOUT_SECS,
                "start",
            ])
            .output()
            .map_err(|error| format!("cannot run pg_ctl: {error}"))?;
        if output.status.success() {
            Ok(())
        } else {
            let log = std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default();
            Err(format!(
                "{}\n{}\nlog:\n{log}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // Immediate: nothing to keep. Errors (already stopped) do not matter.
        let _ = pg_command(&self.bin, "pg_ctl")
            .args([
                "-D",
                path_str(&self.dir.path().join("data")),
                "-m",
                "immediate",
                "-w",
                "-t",
                PG_CTL_TIMEOUT_SECS,
                "stop",
            ])
            .output();
    }
}

/// The directory of PostgreSQL's programs, installing Debian's package first when there is
/// none. Test binaries run at once may all get here: a lock file serializes the install.
fn installed_bin_dir() -> PathBuf {
    if let Some(bin) = find_bin_dir() {
        return bin;
    }
    let lock = File::create(std::env::temp_dir().join("verdict-postgres-install.lock"))
        .expect("the install lock file");
    lock.lock().expect("the install lock");
    if let Some(bin) = find_bin_dir() {
        return bin;
    }
    let env = [("DEBIAN_FRONTEND", "noninteractive")];
    let update = Command::new("apt-get")
        .args(["update", "-q"])
        .envs(env)
        .output();
    let install = Command::new("apt-get")
        .args([
            "install",
            "-y",
            "-q",
            "--no-install-recommends",
            "postgresql",
        ])
        .envs(env)
        .output();
    match (find_bin_dir(), update, install) {
        (Some(bin), _, _) => bin,
        (None, update, install) => panic!(
            "PostgreSQL is not installed and apt-get could not install it \
             (update: {update:?}; install: {install:?})"
        ),
    }
}

/// The newest `/usr/lib/postgresql/<version>/bin` with `pg_ctl`.
fn find_bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            std::fs::metadata(bin.join("pg_ctl")).ok()?;
            Some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// A PostgreSQL program, run as `postgres` when the tests run as root.
fn pg_command(bin: &Path, program: &str) -> Command {
    let program = bin.join(program);
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn as_root_chown_to_postgres(dir: &Path) {
    if is_root() {
        run_checked(
            Command::new("chown").args(["-R", "postgres:postgres", path_str(dir)]),
            "chown",
        );
    }
}

fn run_checked(command: &mut Command, what: &str) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("cannot run {what}: {error}"));
    assert!(
        output.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
    listener.local_addr().expect("its address").port()
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temporary path")
}
