//! The SQLite store: one database file in WAL mode with `synchronous=FULL`, so a commit is on disk when
//! `commit` returns; one transaction per management call. Rows are keyed by what the server compares
//! (a group's [`UrlPrefix::key`](crate::UrlPrefix::key), its segment ignoring case; a URL's suffix,
//! lowercased; a port) and hold the serde JSON of the configuration types, so adding a field to a
//! configuration type needs no migration.
//!
//! The schema version is SQLite's `user_version`; `open` migrates older databases forward in one
//! transaction and refuses newer ones.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::de::DeserializeOwned;

use super::{Audit, Delta, Store, StoreError, Stored};
use crate::config::{GroupConfig, TlsBinding, UrlConfig};

/// The schema this program writes.
const VERSION: i64 = 4;

/// Each migration takes the schema from its index to the next version.
const MIGRATIONS: &[&str] = &[
    // 0 → 1
    "CREATE TABLE url_groups (
         prefix TEXT PRIMARY KEY NOT NULL,
         position INTEGER NOT NULL,
         settings TEXT NOT NULL
     );
     CREATE TABLE urls (
         prefix TEXT NOT NULL REFERENCES url_groups (prefix) ON DELETE CASCADE,
         suffix_key TEXT NOT NULL,
         url TEXT NOT NULL,
         PRIMARY KEY (prefix, suffix_key)
     );
     CREATE TABLE tls_bindings (port INTEGER PRIMARY KEY NOT NULL, binding TEXT NOT NULL);
     CREATE TABLE principals (id INTEGER PRIMARY KEY CHECK (id = 1), principals TEXT NOT NULL);
     CREATE TABLE audit (
         id INTEGER PRIMARY KEY AUTOINCREMENT,
         at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
         who TEXT NOT NULL,
         what TEXT NOT NULL
     );",
    // 1 → 2: the service's download jobs (`super::job_rows`): the job's JSON (without secrets) and its
    // credentials' password sealed with the state directory's job key.
    "CREATE TABLE jobs (
         id TEXT PRIMARY KEY NOT NULL,
         job TEXT NOT NULL,
         secret BLOB
     );",
    // 2 → 3: a job's progress in rows of its own (`super::job_rows`), so that a progress save rewrites
    // neither the job's names nor its settings. Jobs saved before keep their whole JSON in `jobs`.
    "CREATE TABLE job_progress (
         id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
         part INTEGER NOT NULL,
         progress TEXT NOT NULL,
         PRIMARY KEY (id, part)
     ) WITHOUT ROWID;",
    // 3 → 4: final jobs (`super::ended_rows`), kept for the retention period once the job manager has
    // forgotten them: when each ended (milliseconds since the epoch) and its JSON.
    "CREATE TABLE ended_jobs (
         id TEXT PRIMARY KEY NOT NULL,
         ended INTEGER NOT NULL,
         job TEXT NOT NULL
     );
     CREATE INDEX ended_jobs_by_end ON ended_jobs (ended);",
];

/// The configuration in one SQLite database.
#[derive(Debug)]
pub struct SqliteStore {
    db: Connection,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, with mode 0600, and migrates it to this
    /// program's schema.
    ///
    /// SECURITY: the database holds password hashes and may hold TLS keys: it is created readable by its
    /// owner only.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let db = connect(path.as_ref())?;
        Ok(SqliteStore { db })
    }

    /// The audit trail, oldest first: (when, who, what).
    pub fn audit_log(&self) -> Result<Vec<(String, String, String)>, StoreError> {
        let mut stmt = self
            .db
            .prepare("SELECT at, who, what FROM audit ORDER BY id")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// Opens (creating it 0600 if needed) the database at `path` in WAL mode with `synchronous=FULL`, and
/// migrates it to this program's schema; the configuration store and the job store each hold one.
pub(super) fn connect(path: &Path) -> Result<Connection, StoreError> {
    let open_err = |source| StoreError::Open {
        path: path.to_owned(),
        source,
    };
    if !path.exists() {
        create_private(path).map_err(|e| {
            open_err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
                Some(e.to_string()),
            ))
        })?;
    }
    let db = Connection::open(path).map_err(open_err)?;
    db.pragma_update(None, "journal_mode", "WAL")
        .map_err(open_err)?;
    db.pragma_update(None, "synchronous", "FULL")
        .map_err(open_err)?;
    db.pragma_update(None, "foreign_keys", true)
        .map_err(open_err)?;
    db.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(open_err)?;
    let mut db = db;
    migrate(&mut db)?;
    Ok(db)
}

/// Takes the schema to this program's version. The transaction takes the write lock first (waiting out
/// the busy timeout): begun as a read, its write would fail at once were another connection to the file
/// (the job store's writer) to commit in between.
fn migrate(db: &mut Connection) -> Result<(), StoreError> {
    let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let found: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if found > VERSION {
        return Err(StoreError::TooNew {
            found,
            known: VERSION,
        });
    }
    for step in MIGRATIONS.iter().skip(usize::try_from(found).unwrap_or(0)) {
        tx.execute_batch(step)?;
    }
    tx.pragma_update(None, "user_version", VERSION)?;
    tx.commit()?;
    Ok(())
}

/// Creates an empty file only its owner may read and write.
fn create_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map(drop)
}

impl Store for SqliteStore {
    fn load(&mut self) -> Result<Stored, StoreError> {
        let tx = self.db.transaction()?;
        let mut groups: Vec<GroupConfig> = Vec::new();
        {
            let mut stmt = tx.prepare("SELECT settings FROM url_groups ORDER BY position")?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
            for text in rows {
                groups.push(parse("URL group", &text?)?);
            }
            let mut stmt =
                tx.prepare("SELECT url FROM urls WHERE prefix = ?1 ORDER BY suffix_key")?;
            for group in &mut groups {
                let rows = stmt.query_map([group.prefix.key()], |r| r.get::<_, String>(0))?;
                group.urls = rows
                    .map(|text| parse::<UrlConfig>("URL", &text?))
                    .collect::<Result<_, _>>()?;
            }
        }
        let tls = {
            let mut stmt = tx.prepare("SELECT binding FROM tls_bindings ORDER BY port")?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
            rows.map(|text| parse::<TlsBinding>("TLS binding", &text?))
                .collect::<Result<Vec<_>, _>>()?
        };
        let principals: Option<String> = tx
            .query_row("SELECT principals FROM principals WHERE id = 1", [], |r| {
                r.get(0)
            })
            .optional()?;
        let principals = principals
            .map(|text| parse("principals", &text))
            .transpose()?;
        tx.commit()?;
        Ok(Stored {
            groups,
            tls,
            principals,
        })
    }

    fn commit(&mut self, deltas: &[Delta], audit: &Audit) -> Result<(), StoreError> {
        let tx = self.db.transaction()?;
        for delta in deltas {
            write(&tx, delta)?;
        }
        tx.execute(
            "INSERT INTO audit (who, what) VALUES (?1, ?2)",
            params![audit.who, audit.what],
        )?;
        tx.commit()?;
        Ok(())
    }
}

fn write(tx: &Transaction<'_>, delta: &Delta) -> Result<(), StoreError> {
    match delta {
        Delta::PutGroup(group) => {
            let settings = group.settings_only();
            tx.execute(
                "INSERT INTO url_groups (prefix, position, settings)
                 VALUES (?1, (SELECT COALESCE(MAX(position), 0) + 1 FROM url_groups), ?2)
                 ON CONFLICT (prefix) DO UPDATE SET settings = excluded.settings",
                params![group.prefix.key(), json(&settings)],
            )?;
        }
        Delta::DeleteGroup(prefix) => {
            tx.execute("DELETE FROM url_groups WHERE prefix = ?1", [prefix.key()])?;
        }
        Delta::PutUrl(prefix, url) => {
            tx.execute(
                "INSERT INTO urls (prefix, suffix_key, url) VALUES (?1, ?2, ?3)
                 ON CONFLICT (prefix, suffix_key) DO UPDATE SET url = excluded.url",
                params![prefix.key(), url.suffix.to_lowercase(), json(url)],
            )?;
        }
        Delta::DeleteUrl(prefix, suffix) => {
            tx.execute(
                "DELETE FROM urls WHERE prefix = ?1 AND suffix_key = ?2",
                params![prefix.key(), suffix.to_lowercase()],
            )?;
        }
        Delta::PutTls(binding) => {
            tx.execute(
                "INSERT INTO tls_bindings (port, binding) VALUES (?1, ?2)
                 ON CONFLICT (port) DO UPDATE SET binding = excluded.binding",
                params![binding.port, json(binding)],
            )?;
        }
        Delta::DeleteTls(port) => {
            tx.execute("DELETE FROM tls_bindings WHERE port = ?1", [port])?;
        }
        Delta::PutPrincipals(Some(principals)) => {
            tx.execute(
                "INSERT INTO principals (id, principals) VALUES (1, ?1)
                 ON CONFLICT (id) DO UPDATE SET principals = excluded.principals",
                [json(principals)],
            )?;
        }
        Delta::PutPrincipals(None) => {
            tx.execute("DELETE FROM principals", [])?;
        }
    }
    Ok(())
}

/// The JSON of a configuration value; these types always serialise.
fn json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

fn parse<T: DeserializeOwned>(what: &'static str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
        what,
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::UrlPrefix;

    fn group(prefix: &str) -> GroupConfig {
        GroupConfig {
            prefix: prefix.parse().unwrap(),
            auth: vec![crate::AuthScheme::Ntlm],
            allow_basic_over_http: false,
            default_sddl: Some("D:(A;;GA;;;WD)".into()),
            connection_limit: crate::ConnectionLimit::new(3).unwrap(),
            bandwidth_limit: crate::ByteRate::per_second(4096).unwrap(),
            cache_max_age_secs: None,
            index: true,
            urls: Vec::new(),
        }
    }

    fn url(suffix: &str) -> UrlConfig {
        UrlConfig {
            suffix: suffix.into(),
            file: format!("/srv/{suffix}").into(),
            sddl: None,
            content: None,
        }
    }

    fn audit() -> Audit {
        Audit {
            who: "test".into(),
            what: "change".into(),
        }
    }

    #[test]
    fn commits_survive_reopening_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.db");
        let b: UrlPrefix = "http://+:81/b/".parse().unwrap();
        {
            let mut store = SqliteStore::open(&path).unwrap();
            assert_eq!(store.load().unwrap(), Stored::default());
            store
                .commit(
                    &[
                        Delta::PutGroup(group("http://+:81/b/")),
                        Delta::PutGroup(group("http://+:80/a/")),
                        Delta::PutUrl(b.clone(), url("x.bin")),
                        Delta::PutUrl(b.clone(), url("Y.bin")),
                    ],
                    &audit(),
                )
                .unwrap();
            // Changing a group's settings keeps its place and its URLs.
            let mut changed = group("http://+:81/b/");
            changed.index = false;
            store.commit(&[Delta::PutGroup(changed)], &audit()).unwrap();
            store
                .commit(&[Delta::DeleteUrl(b.clone(), "y.BIN".into())], &audit())
                .unwrap();
        }
        let mut store = SqliteStore::open(&path).unwrap();
        let stored = store.load().unwrap();
        let prefixes: Vec<String> = stored.groups.iter().map(|g| g.prefix.to_string()).collect();
        assert_eq!(prefixes, ["http://+:81/b/", "http://+:80/a/"]);
        assert!(!stored.groups[0].index);
        assert_eq!(stored.groups[0].urls, vec![url("x.bin")]);
        assert_eq!(store.audit_log().unwrap().len(), 3);
        store.commit(&[Delta::DeleteGroup(b)], &audit()).unwrap();
        let stored = store.load().unwrap();
        assert_eq!(stored.groups.len(), 1);
        let orphans: i64 = store
            .db
            .query_row("SELECT COUNT(*) FROM urls", [], |r| r.get(0))
            .unwrap();
        assert_eq!(orphans, 0, "a deleted group's URLs go with it");
    }

    #[test]
    fn prefixes_that_differ_only_in_the_segments_case_are_one_group() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = SqliteStore::open(dir.path().join("config.db")).unwrap();
        let upper: UrlPrefix = "http://+:80/App/".parse().unwrap();
        let lower: UrlPrefix = "http://+:80/app/".parse().unwrap();
        store
            .commit(&[Delta::PutGroup(group("http://+:80/App/"))], &audit())
            .unwrap();
        store
            .commit(&[Delta::PutUrl(lower.clone(), url("a"))], &audit())
            .unwrap();
        store
            .commit(&[Delta::DeleteUrl(upper.clone(), "A".into())], &audit())
            .unwrap();
        store
            .commit(&[Delta::PutUrl(upper, url("b"))], &audit())
            .unwrap();
        let stored = store.load().unwrap();
        assert_eq!(stored.groups.len(), 1);
        assert_eq!(stored.groups[0].prefix.to_string(), "http://+:80/App/");
        assert_eq!(stored.groups[0].urls, vec![url("b")]);
        store
            .commit(&[Delta::DeleteGroup(lower)], &audit())
            .unwrap();
        assert_eq!(store.load().unwrap(), Stored::default());
    }

    #[test]
    fn a_failed_commit_stores_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = SqliteStore::open(dir.path().join("config.db")).unwrap();
        let missing: UrlPrefix = "http://+:80/none/".parse().unwrap();
        let err = store.commit(
            &[
                Delta::PutGroup(group("http://+:80/a/")),
                // No such group: the foreign key refuses it, and the whole call with it.
                Delta::PutUrl(missing, url("a")),
            ],
            &audit(),
        );
        assert!(err.is_err());
        assert_eq!(store.load().unwrap(), Stored::default());
        assert!(store.audit_log().unwrap().is_empty());
    }

    #[test]
    fn a_newer_schema_is_refused_and_the_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.db");
        drop(SqliteStore::open(&path).unwrap());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let db = Connection::open(&path).unwrap();
        db.pragma_update(None, "user_version", 99).unwrap();
        drop(db);
        let err = SqliteStore::open(&path).unwrap_err();
        assert!(matches!(err, StoreError::TooNew { found: 99, .. }), "{err}");
    }

    #[test]
    fn a_damaged_row_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = SqliteStore::open(dir.path().join("config.db")).unwrap();
        store
            .db
            .execute(
                "INSERT INTO url_groups (prefix, position, settings) VALUES ('x', 1, '{')",
                [],
            )
            .unwrap();
        let err = store.load().unwrap_err();
        assert!(err.to_string().contains("URL group is unreadable"), "{err}");
    }
}
