//! The PostgreSQL provider: `DATABASE_URL`, else the local server, else a throw-away cluster.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::command;

/// The local servers tried when `DATABASE_URL` is unset, in order.
const LOCAL_CANDIDATES: [&str; 4] = [
    "postgres://postgres@127.0.0.1:5432/test",
    "postgres://postgres@127.0.0.1:5432/postgres",
    "postgres://root@127.0.0.1:5432/test",
    "postgres://root@127.0.0.1:5432/postgres",
];

/// A database the tests can use; a throw-away cluster behind it stops when this is dropped.
#[derive(Debug)]
pub(crate) struct Database {
    url: String,
    description: String,
    // Held for its `Drop`, which stops the cluster.
    _cluster: Option<Cluster>,
}

impl Database {
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    pub(crate) fn description(&self) -> &str {
        &self.description
    }
}

/// Finds or starts a PostgreSQL server, in this order:
/// 1. `DATABASE_URL`, when set (it must answer);
/// 2. the local server on 127.0.0.1:5432 (users `postgres` or `root`, databases `test` or `postgres`);
/// 3. a throw-away cluster from the installed `initdb`/`pg_ctl`, as an unprivileged user, on a free port.
pub(crate) fn provide() -> anyhow::Result<Database> {
    if let Some(url) = std::env::var("DATABASE_URL").ok().filter(|url| !url.trim().is_empty()) {
        select_one(&url).with_context(|| {
            format!("DATABASE_URL is set to {url} but that server does not answer SELECT 1; fix or unset it")
        })?;
        return Ok(Database {
            description: format!("{url} (from DATABASE_URL)"),
            url,
            _cluster: None,
        });
    }
    for url in LOCAL_CANDIDATES {
        if select_one(url).is_ok() {
            return Ok(Database {
                url: url.to_owned(),
                description: format!("{url} (local server)"),
                _cluster: None,
            });
        }
    }
    let cluster = Cluster::start().context(
        "no PostgreSQL for the tests: DATABASE_URL is unset, nothing answers on 127.0.0.1:5432, and a \
         throw-away cluster could not be started. Install PostgreSQL (e.g. `apt-get install postgresql`) \
         or set DATABASE_URL=postgres://user@host:port/database",
    )?;
    let url = cluster.url();
    Ok(Database {
        description: format!("{url} (throw-away cluster in {})", cluster.root.display()),
        url,
        _cluster: Some(cluster),
    })
}

/// Connects to `url` and runs `SELECT 1`, within a few seconds.
pub(crate) fn select_one(url: &str) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(5), async {
            let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
            let connection = tokio::spawn(connection);
            let row = client.query_one("SELECT 1::INT4", &[]).await?;
            let one: i32 = row.get(0);
            drop(client);
            let _ = connection.await;
            anyhow::ensure!(one == 1, "SELECT 1 returned {one}");
            Ok(())
        })
        .await
        .context("PostgreSQL did not answer within 5 s")?
    })
}

/// Runs one SQL statement on `url`.
fn execute(url: &str, statement: &str) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
        let connection = tokio::spawn(connection);
        client.batch_execute(statement).await?;
        drop(client);
        let _ = connection.await;
        Ok(())
    })
}

/// A throw-away PostgreSQL cluster in a temporary folder, stopped and deleted on drop.
#[derive(Debug)]
pub(crate) struct Cluster {
    root: PathBuf,
    bin_dir: PathBuf,
    port: u16,
    run_as: Option<String>,
}

impl Cluster {
    /// Creates and starts a cluster on a free loopback port, with trust auth and a `test` database.
    pub(crate) fn start() -> anyhow::Result<Self> {
        let bin_dir = find_bin_dir()?;
        let run_as = if is_root() { Some(unprivileged_user()?) } else { None };
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let root = std::env::temp_dir().join(format!("aqueduct-pg-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&root)
            .with_context(|| format!("cannot create {}", root.display()))?;
        let port = free_port()?;
        let cluster = Self { root, bin_dir, port, run_as };
        if let Some(user) = &cluster.run_as {
            command::output(Command::new("chown").args(["-R", user]).arg(&cluster.root))?;
        }
        let data = cluster.data_dir();
        // `--no-locale`: a fresh machine often has LANG naming a locale that is not generated, which
        // initdb rejects; the tests need no collation of their own.
        cluster.run(
            "initdb",
            &[
                "-D",
                path_str(&data)?,
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ],
        )?;
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c synchronous_commit=off -c max_connections=200",
            cluster.port,
            path_str(&cluster.root)?
        );
        let log = cluster.root.join("server.log");
        let started = cluster.run(
            "pg_ctl",
            &[
                "-D",
                path_str(&data)?,
                "-l",
                path_str(&log)?,
                "-o",
                &options,
                "-w",
                "-t",
                "30",
                "start",
            ],
        );
        if let Err(error) = started {
            // pg_ctl says only "examine the log output", and the log goes with the folder on drop.
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(20)..].join("\n");
            return Err(error
                .context(format!("the throw-away server did not start; its log ends:\n{tail}")));
        }
        let admin_url = format!("postgres://postgres@127.0.0.1:{}/postgres", cluster.port);
        execute(&admin_url, "CREATE DATABASE test")?;
        select_one(&cluster.url())?;
        Ok(cluster)
    }

    pub(crate) fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/test", self.port)
    }

    fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    fn run(&self, program: &str, arguments: &[&str]) -> anyhow::Result<String> {
        let binary = self.bin_dir.join(program);
        let mut command = match &self.run_as {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(&binary);
                command
            }
            None => Command::new(&binary),
        };
        // Run inside the cluster folder: the unprivileged user may not be able to enter the caller's
        // working directory (a checkout under /root), which PostgreSQL's tools complain about.
        command.args(arguments).current_dir(&self.root);
        command::output(&mut command)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Ok(data) = path_str(&self.data_dir()) {
            let _ = self.run("pg_ctl", &["-D", data, "-m", "immediate", "-w", "stop"]);
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// The folder holding `initdb` and `pg_ctl`: from `pg_config --bindir`, the Debian layout, or `PATH`.
fn find_bin_dir() -> anyhow::Result<PathBuf> {
    let has_tools = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Ok(bindir) = command::output(Command::new("pg_config").arg("--bindir")) {
        let dir = PathBuf::from(bindir.trim());
        if has_tools(&dir) {
            return Ok(dir);
        }
    }
    let mut debian: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries.filter_map(Result::ok).map(|entry| entry.path().join("bin")).collect()
        })
        .unwrap_or_default();
    debian.sort_by_key(|dir| {
        dir.parent().and_then(|version| version.file_name()?.to_str()?.parse::<u32>().ok())
    });
    if let Some(dir) = debian.into_iter().rev().find(|dir| has_tools(dir)) {
        return Ok(dir);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).find(|dir| has_tools(dir)).context(
        "PostgreSQL's initdb and pg_ctl are not installed (looked in `pg_config --bindir`, \
         /usr/lib/postgresql/*/bin and PATH)",
    )
}

fn is_root() -> bool {
    command::output(Command::new("id").arg("-u")).is_ok_and(|uid| uid.trim() == "0")
}

/// `initdb` refuses to run as root: use the `postgres` account where it exists, else `nobody`.
fn unprivileged_user() -> anyhow::Result<String> {
    for user in ["postgres", "nobody"] {
        if command::output(Command::new("id").args(["-u", user])).is_ok() {
            return Ok(user.to_owned());
        }
    }
    bail!(
        "running as root, and neither a `postgres` nor a `nobody` account exists to run initdb as"
    )
}

fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot bind a loopback port")?;
    Ok(listener.local_addr()?.port())
}

fn path_str(path: &Path) -> anyhow::Result<&str> {
    path.to_str().with_context(|| format!("{} is not UTF-8", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_provider_answers_select_one() {
        let database = provide().expect("a database is provided");
        select_one(database.url()).expect("SELECT 1 answers");
    }

    #[test]
    fn a_throw_away_cluster_starts_answers_and_is_removed() {
        let cluster =
            Cluster::start().expect("a throw-away cluster starts where PostgreSQL is installed");
        let root = cluster.root.clone();
        select_one(&cluster.url()).expect("SELECT 1 answers on the throw-away cluster");
        drop(cluster);
        assert!(!root.exists(), "the cluster folder {} is removed", root.display());
    }
}
