//! Finds the PostgreSQL server the tests run against, as provided by `cargo xtask test`.

/// The environment variable that names the test database.
pub const DATABASE_URL: &str = "DATABASE_URL";

/// The connection string of the test database, from `DATABASE_URL`.
///
/// `cargo xtask test` always sets it: it keeps a `DATABASE_URL` you set (after checking that it answers),
/// else points it at the server on 127.0.0.1:5432 when one answers, else at a throw-away cluster it starts.
///
/// # Panics
///
/// When `DATABASE_URL` is unset, with a message saying how to provide a database. A test that needs
/// PostgreSQL must fail loudly rather than pass without one.
///
/// # Examples
///
/// ```no_run
/// let url = aqueduct_testkit::postgres::database_url();
/// assert!(url.starts_with("postgres"));
/// ```
pub fn database_url() -> String {
    match std::env::var(DATABASE_URL) {
        Ok(url) if !url.trim().is_empty() => url,
        _ => panic!(
            "this test needs PostgreSQL: run it through `cargo xtask test`, which provides one \
             (the local server on 127.0.0.1:5432, or a throw-away cluster from the installed initdb), \
             or set DATABASE_URL=postgres://user@host:port/database yourself"
        ),
    }
}
