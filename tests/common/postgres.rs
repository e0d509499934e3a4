//! A real PostgreSQL server for tests: a fresh cluster (`initdb`) in a
//! temporary directory, started with `pg_ctl` on 127.0.0.1 and a free port,
//! one per [`PgServer`]; give each test its own database
//! ([`PgServer::create_database`]).
//!
//! The binaries come from env `TOOLGATE_PG_BIN` (a directory holding
//! `initdb` and `pg_ctl`), else the newest `/usr/lib/postgresql/*/bin`
//! (Debian's `postgresql` package), else `PATH`. Without them
//! [`PgServer::start`] returns `None` so a bare `cargo test` still passes —
//! unless `TOOLGATE_REQUIRE_POSTGRES=1` (tests/run.sh sets it after
//! installing PostgreSQL), which makes it a failure.
//!
//! `initdb` refuses to run as root, so as root every server command runs as
//! the `postgres` OS user (`runuser`, else `su`) in a directory chowned to
//! it. The cluster is throwaway: `-A trust`, `fsync=off`, no sync at initdb.
//!
//! Dropping a [`PgServer`] stops it (`pg_ctl stop -m immediate`) and removes
//! its directory. Should the test process die without dropping it, a
//! watchdog (a shell reading a pipe from this process, in its own process
//! group so a Ctrl-C does not take it down first) sees the pipe close and
//! does the same, so no postgres outlives the tests.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use sqlx::{AssertSqlSafe, Connection};

/// Tries at a port another process took between our probe and the bind.
const PORT_TRIES: usize = 5;
/// How long `pg_ctl -w` waits for the server to accept connections.
const START_TIMEOUT_SECS: &str = "60";

/// A running PostgreSQL cluster on 127.0.0.1; stopped and deleted when dropped.
pub struct PgServer {
    port: u16,
    initdb: PathBuf,
    pg_ctl: PathBuf,
    run_as: RunAs,
    /// `flock`, when there is one: each server command holds `dir/lock`
    /// while it runs, so the watchdog can wait for one this process left
    /// running when it died.
    flock: Option<PathBuf>,
    /// The cluster's data directory, inside `dir`.
    data: PathBuf,
    /// The server's log (`pg_ctl -l`), inside `dir`; kept across restarts.
    log: PathBuf,
    /// Stops the server and removes `dir` should this process die first;
    /// told to stand down (a line on its stdin) by `Drop`.
    watchdog: Option<std::process::Child>,
    /// Holds `data`, `log` and the unix socket; dropped (removed) last.
    dir: tempfile::TempDir,
}

/// How the server's commands are run.
enum RunAs {
    /// As this process's user (not root).
    Me,
    /// As root: `runuser -u postgres -- COMMAND…`.
    Runuser(PathBuf),
    /// As root without `runuser`: `su postgres -s /bin/sh -c 'COMMAND…'`.
    Su(PathBuf),
}

impl PgServer {
    /// Creates and starts a fresh cluster (user `postgres`, trust auth,
    /// UTF8, C locale) on 127.0.0.1 and a free port, and waits until it
    /// accepts connections. Returns `None` when no PostgreSQL binaries are
    /// found, or panics then if `TOOLGATE_REQUIRE_POSTGRES=1`. Panics, with
    /// the command, its output and the server log, on any other failure.
    pub async fn start() -> Option<PgServer> {
        let started = Instant::now();
        let (initdb, pg_ctl) = match find_binaries() {
            Ok(found) => found,
            Err(searched) => {
                let required = std::env::var("TOOLGATE_REQUIRE_POSTGRES").is_ok_and(|v| v == "1");
                assert!(
                    !required,
                    "TOOLGATE_REQUIRE_POSTGRES=1 but no PostgreSQL server binaries (initdb, \
                     pg_ctl) in {searched}: install them (`apt-get install postgresql`) or set \
                     TOOLGATE_PG_BIN to the directory holding them"
                );
                eprintln!(
                    "PostgreSQL not installed (no initdb/pg_ctl in {searched}; \
                     `apt-get install postgresql`, or set TOOLGATE_PG_BIN): skipping"
                );
                return None;
            }
        };
        let run_as = run_as();
        let dir = tempfile::Builder::new()
            .prefix("toolgate-pg-")
            .tempdir()
            .unwrap_or_else(|e| panic!("creating a temporary directory for PostgreSQL: {e}"));
        if !matches!(run_as, RunAs::Me) {
            run_sync(
                std::process::Command::new("chown")
                    .arg("postgres")
                    .arg(dir.path()),
                "chowning the cluster's directory to the postgres user",
            );
        }
        let mut server = PgServer {
            port: 0,
            data: dir.path().join("data"),
            log: dir.path().join("server.log"),
            initdb,
            pg_ctl,
            run_as,
            flock: which("flock"),
            watchdog: None,
            dir,
        };
        server.watchdog = Some(server.spawn_watchdog());

        let data = server.data.display().to_string();
        let initdb_args = [
            "-D",
            &data,
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ];
        if let Err(failure) = server.run(&server.initdb, &initdb_args).await {
            let hint = if matches!(server.run_as, RunAs::Me) {
                String::new()
            } else {
                format!(
                    " (as root it runs as the postgres user, who must be able to reach {})",
                    server.dir.path().display()
                )
            };
            panic!("initdb failed{hint}: {failure}");
        }

        for attempt in 1..=PORT_TRIES {
            server.port = free_port();
            let log_before = std::fs::metadata(&server.log).map_or(0, |m| m.len());
            match server.pg_ctl_start().await {
                Ok(()) => break,
                Err(failure) => {
                    let log = server.log_since(log_before);
                    if attempt < PORT_TRIES && log.contains("Address already in use") {
                        eprintln!("postgres: port {} was taken; trying another", server.port);
                        continue;
                    }
                    panic!(
                        "starting PostgreSQL on 127.0.0.1:{} failed: {failure}\n{}",
                        server.port,
                        server.log_tail()
                    );
                }
            }
        }
        eprintln!(
            "postgres: cluster on 127.0.0.1:{} ready in {} ms ({})",
            server.port,
            started.elapsed().as_millis(),
            server.dir.path().display()
        );
        Some(server)
    }

    /// `postgres://postgres@127.0.0.1:PORT/DATABASE` (trust auth: no password).
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Everything database `name` holds, as `pg_dump` (next to the server
    /// binaries, or on the PATH) writes it: plain SQL, schema and data.
    pub fn dump(&self, name: &str) -> String {
        let beside = self.pg_ctl.with_file_name("pg_dump");
        let pg_dump = if beside.is_file() {
            beside
        } else {
            PathBuf::from("pg_dump")
        };
        let out = std::process::Command::new(&pg_dump)
            .args(["-h", "127.0.0.1", "-U", "postgres", "-p"])
            .arg(self.port.to_string())
            .arg(name)
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", pg_dump.display()));
        assert!(
            out.status.success(),
            "{} {name}: {}",
            pg_dump.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The server's TCP port on 127.0.0.1 (the same after a restart).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates database `name` (lowercase letters, digits and `_`) and
    /// returns its [`url`](Self::url).
    pub async fn create_database(&self, name: &str) -> String {
        let plain = !name.is_empty()
            && name.len() <= 63
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        assert!(
            plain,
            "database name {name:?}: use 1 to 63 of [a-z0-9_], not starting with a digit"
        );
        let admin = self.url("postgres");
        let mut conn = sqlx::postgres::PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| panic!("connecting to {admin}: {e}\n{}", self.log_tail()));
        // An identifier can't be a bind parameter; `name` was checked above.
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name} on {admin}: {e}"));
        let _ = conn.close().await;
        self.url(name)
    }

    /// Stops the server (`pg_ctl stop -m fast`: sessions are cut, the data
    /// is kept), so [`restart`](Self::restart) finds it as it was.
    pub async fn stop(&self) {
        let data = self.data.display().to_string();
        if let Err(failure) = self
            .run(&self.pg_ctl, &["-D", &data, "-m", "fast", "-w", "stop"])
            .await
        {
            panic!("stopping PostgreSQL failed: {failure}\n{}", self.log_tail());
        }
    }

    /// Starts the [stopped](Self::stop) server again, on the same port and
    /// data, and waits until it accepts connections.
    pub async fn restart(&self) {
        if let Err(failure) = self.pg_ctl_start().await {
            panic!(
                "restarting PostgreSQL on 127.0.0.1:{} failed (port taken meanwhile?): \
                 {failure}\n{}",
                self.port,
                self.log_tail()
            );
        }
    }

    /// `pg_ctl start -w` on `self.port`; `Err` describes the failed command.
    async fn pg_ctl_start(&self) -> Result<(), String> {
        // pg_ctl hands -o to `/bin/sh -c`, hence the quoted socket dir.
        let options = format!(
            "-h 127.0.0.1 -p {} -k {} -c fsync=off -c max_connections=200",
            self.port,
            shell_quote(&self.dir.path().display().to_string())
        );
        let data = self.data.display().to_string();
        let log = self.log.display().to_string();
        let args = [
            "-D",
            &data,
            "-l",
            &log,
            "-w",
            "-t",
            START_TIMEOUT_SECS,
            "-o",
            &options,
            "start",
        ];
        self.run(&self.pg_ctl, &args).await
    }

    /// Runs `program args` (as postgres when root) to completion; `Err`
    /// names the command and carries its status and output.
    async fn run(&self, program: &Path, args: &[&str]) -> Result<(), String> {
        let mut argv = self.argv(program, args);
        if let Some(flock) = &self.flock {
            // -o: the lock is not passed on to the server pg_ctl starts.
            let lock = self.dir.path().join("lock").display().to_string();
            let prefix = [flock.display().to_string(), "-o".into(), lock];
            argv.splice(0..0, prefix);
        }
        let output = tokio::process::Command::from(self.command(&argv))
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|e| format!("`{}` did not run: {e}", shell_line(&argv)))?;
        if output.status.success() {
            return Ok(());
        }
        Err(format!(
            "`{}` exited with {}\nstdout: {}\nstderr: {}",
            shell_line(&argv),
            output.status,
            String::from_utf8_lossy(&output.stdout).trim_end(),
            String::from_utf8_lossy(&output.stderr).trim_end()
        ))
    }

    /// The command line running `program args` as the server's user.
    fn argv(&self, program: &Path, args: &[&str]) -> Vec<String> {
        let mut command = vec![program.display().to_string()];
        command.extend(args.iter().map(|a| a.to_string()));
        match &self.run_as {
            RunAs::Me => command,
            RunAs::Runuser(runuser) => {
                let user = ["-u", "postgres", "--"].map(String::from);
                let mut argv = vec![runuser.display().to_string()];
                argv.extend(user.into_iter().chain(command));
                argv
            }
            RunAs::Su(su) => {
                let user = ["postgres", "-s", "/bin/sh", "-c"].map(String::from);
                let mut argv = vec![su.display().to_string()];
                argv.extend(user.into_iter().chain([shell_line(&command)]));
                argv
            }
        }
    }

    fn command(&self, argv: &[String]) -> std::process::Command {
        let mut command = std::process::Command::new(&argv[0]);
        // A directory the postgres user can enter (initdb and pg_ctl
        // complain about an unreadable working directory).
        command.args(&argv[1..]).current_dir(self.dir.path());
        command
    }

    /// A shell that waits for a line on its stdin: given one, it exits;
    /// at end of file (this process died) it waits for a server command
    /// still running (see `flock`), stops the server and removes the
    /// directory.
    fn spawn_watchdog(&self) -> std::process::Child {
        const SCRIPT: &str = r#"dir=$1; shift
if read -r _; then exit 0; fi
if command -v flock >/dev/null; then flock "$dir/lock" "$@"; else "$@"; fi >/dev/null 2>&1
rm -rf "$dir""#;
        let data = self.data.display().to_string();
        let stop = self.argv(
            &self.pg_ctl,
            &["-D", &data, "-m", "immediate", "-w", "stop"],
        );
        std::process::Command::new("/bin/sh")
            .args(["-c", SCRIPT, "toolgate-pg-watchdog"])
            .arg(self.dir.path())
            .args(&stop)
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Out of the test's process group: a Ctrl-C stops the tests,
            // not the cleanup.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("starting the PostgreSQL watchdog (/bin/sh): {e}"))
    }

    /// The log's text after its first `from` bytes.
    fn log_since(&self, from: u64) -> String {
        let text = std::fs::read(&self.log).unwrap_or_default();
        let from = usize::try_from(from).unwrap_or(0).min(text.len());
        String::from_utf8_lossy(&text[from..]).into_owned()
    }

    /// The server log's last lines, for failure messages.
    fn log_tail(&self) -> String {
        let text = self.log_since(0);
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(30)..].join("\n");
        format!("server log {} (last lines):\n{tail}", self.log.display())
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        // Immediate: the data goes with the directory anyway. Fails
        // harmlessly when the server is already stopped.
        let data = self.data.display().to_string();
        let argv = self.argv(
            &self.pg_ctl,
            &["-D", &data, "-m", "immediate", "-w", "stop"],
        );
        let _ = self
            .command(&argv)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if self.data.join("postmaster.pid").exists() {
            eprintln!(
                "postgres: `{}` left {} behind; the server may still run",
                shell_line(&argv),
                self.data.join("postmaster.pid").display()
            );
        }
        if let Some(mut watchdog) = self.watchdog.take() {
            if let Some(mut stdin) = watchdog.stdin.take() {
                let _ = stdin.write_all(b"stand down\n");
            }
            let _ = watchdog.wait();
        }
    }
}

/// `initdb` and `pg_ctl`: from `TOOLGATE_PG_BIN`, else the newest
/// `/usr/lib/postgresql/*/bin`, else `PATH`. `Err` says where it looked.
fn find_binaries() -> Result<(PathBuf, PathBuf), String> {
    let in_dir = |dir: &Path| {
        let (initdb, pg_ctl) = (dir.join("initdb"), dir.join("pg_ctl"));
        (initdb.is_file() && pg_ctl.is_file()).then_some((initdb, pg_ctl))
    };
    if let Some(dir) = std::env::var_os("TOOLGATE_PG_BIN").filter(|v| !v.is_empty()) {
        let dir = PathBuf::from(dir);
        // Named explicitly: a wrong directory is a mistake, not a skip.
        return Ok(in_dir(&dir).unwrap_or_else(|| {
            panic!(
                "TOOLGATE_PG_BIN={} holds no initdb and pg_ctl",
                dir.display()
            )
        }));
    }
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let version = name
                .split('.')
                .map(|part| part.parse::<u32>().ok())
                .collect::<Option<Vec<u32>>>()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    versions.sort_by(|a, b| b.0.cmp(&a.0));
    if let Some(found) = versions.iter().find_map(|(_, bin)| in_dir(bin)) {
        return Ok(found);
    }
    match (which("initdb"), which("pg_ctl")) {
        (Some(initdb), Some(pg_ctl)) => Ok((initdb, pg_ctl)),
        _ => Err(format!("{}/*/bin or PATH", root.display())),
    }
}

/// The first `name` on `PATH`.
fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// How to run the server's commands: as ourselves, or as the `postgres`
/// user when we are root (panics when that user does not exist).
fn run_as() -> RunAs {
    if effective_uid() != 0 {
        return RunAs::Me;
    }
    let postgres_user = std::process::Command::new("id")
        .args(["-u", "postgres"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        postgres_user,
        "running as root, which initdb refuses, and there is no `postgres` OS user to run \
         it as (`apt-get install postgresql` creates one)"
    );
    let sbin = ["/usr/sbin/runuser", "/sbin/runuser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file());
    match which("runuser").or(sbin) {
        Some(runuser) => RunAs::Runuser(runuser),
        None => RunAs::Su(which("su").unwrap_or_else(|| PathBuf::from("/bin/su"))),
    }
}

/// This process's effective uid, from /proc/self/status (else `id -u`).
fn effective_uid() -> u32 {
    let from_proc = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            // "Uid:\treal\teffective\tsaved\tfs"
            let line = status.lines().find(|l| l.starts_with("Uid:"))?;
            line.split_whitespace().nth(2)?.parse().ok()
        });
    from_proc.unwrap_or_else(|| {
        let output = std::process::Command::new("id")
            .arg("-u")
            .output()
            .unwrap_or_else(|e| panic!("`id -u` did not run: {e}"));
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("`id -u` printed no uid ({e})"))
    })
}

/// A port nothing listens on right now (bound to 127.0.0.1:0, released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .unwrap_or_else(|e| panic!("finding a free port on 127.0.0.1: {e}"))
}

/// Runs a short setup command, panicking with its output if it fails.
fn run_sync(command: &mut std::process::Command, what: &str) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{what}: {command:?} did not run: {e}"));
    assert!(
        output.status.success(),
        "{what}: {command:?} exited with {}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim_end()
    );
}

/// `argv` as one would type it, for messages.
fn shell_line(argv: &[String]) -> String {
    let words: Vec<String> = argv
        .iter()
        .map(|a| {
            let plain = !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:@,".contains(c));
            if plain { a.clone() } else { shell_quote(a) }
        })
        .collect();
    words.join(" ")
}

/// `s` as one word for `/bin/sh`.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}
