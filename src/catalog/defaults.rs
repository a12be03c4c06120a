//! Default configuration templates: what `GET /instances/{id}/configuration` answers
//! (spec `supporting-resources.md` §5).
//!
//! Upstream renders a Jinja template per datastore (`mysql/config.template`, ...) with
//! the flavor's RAM and parses the text back into key/value pairs. We compute the same
//! pairs directly, with the JSON type upstream's parsers give each value (§5.6), so no
//! template engine or INI parser is needed. Pure: no clock, no I/O.

use serde_json::{json, Value};
use uuid::Uuid;

/// The inputs of the template (spec §5.1).
#[derive(Clone, Debug)]
pub struct TemplateInput<'a> {
    /// Datastore name (`datastore.type`), tried before the manager to pick a template.
    pub datastore_name: &'a str,
    /// The engine: selects the parser.
    pub manager: &'a str,
    /// Version name (e.g. `8.0`), used when `version_number` is empty.
    pub version_name: &'a str,
    /// Version number (e.g. `8.0.36`): drives version-dependent keys.
    pub version_number: &'a str,
    /// The instance's current flavor RAM, MB.
    pub ram_mb: u32,
    /// The instance id: seeds `server_id`.
    pub instance_id: Uuid,
}

/// Why no configuration can be rendered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// Upstream has no configuration parser for this manager (400).
    #[error("No configuration parser found for datastore {0}.")]
    NoParser(String),
}

/// A semantic version, parsed leniently (spec §5.1 step 2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct SemVer {
    /// Selects version-dependent keys (MySQL 8.4+, PostgreSQL 13+).
    pub major: u64,
    /// Second component; 0 when absent.
    pub minor: u64,
    /// Third component; 0 when absent.
    pub patch: u64,
}

impl SemVer {
    /// `"5.7"` → 5.7.0, `"12"` → 12.0.0, `"8.0.30"` → 8.0.30, `"10.11.8-MariaDB"` →
    /// 10.11.8; text that does not start with a number → 0.0.0.
    pub fn lenient(text: &str) -> SemVer {
        let mut parts = [0u64; 3];
        let text = text.trim();
        let text = text.strip_prefix(['v', 'V']).unwrap_or(text);
        for (i, part) in text.split('.').take(3).enumerate() {
            let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
            match digits.parse::<u64>() {
                Ok(n) => parts[i] = n,
                Err(_) if i == 0 => return SemVer::default(),
                Err(_) => break,
            }
            if digits.len() != part.len() {
                break; // "8.0-rc1": the pre-release text ends the numeric part.
            }
        }
        SemVer {
            major: parts[0],
            minor: parts[1],
            patch: parts[2],
        }
    }
}

/// Which built-in template applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Template {
    MySql,
    MariaDb,
    PostgreSql,
}

impl Template {
    fn named(name: &str) -> Option<Template> {
        match name {
            "mysql" => Some(Template::MySql),
            "mariadb" => Some(Template::MariaDb),
            "postgresql" => Some(Template::PostgreSql),
            _ => None,
        }
    }
}

/// The default configuration of an instance, as ordered (key, value) pairs.
///
/// The parser is chosen by manager (one we cannot parse → [`TemplateError::NoParser`]);
/// the template by datastore name, then by manager, as upstream's search path ends with
/// `<datastore name>/config.template`, `<manager>/config.template`. Version-specific
/// templates do not exist among the built-in ones (upstream's only one is a test
/// fixture for a mysql version named `mysql-test`).
pub fn default_configuration(input: &TemplateInput) -> Result<Vec<(String, Value)>, TemplateError> {
    let Some(by_manager) = Template::named(input.manager) else {
        return Err(TemplateError::NoParser(input.manager.to_string()));
    };
    let template = Template::named(input.datastore_name).unwrap_or(by_manager);
    let number = if input.version_number.trim().is_empty() {
        input.version_name
    } else {
        input.version_number
    };
    let version = SemVer::lenient(number);
    let ram = u64::from(input.ram_mb);
    let pairs = match template {
        Template::MySql => mysql(ram, version, server_id(input.instance_id)),
        Template::MariaDb => mariadb(ram, server_id(input.instance_id)),
        Template::PostgreSql => postgresql(ram, version),
    };
    Ok(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

/// `server_id`: upstream uses Python's per-process randomized string hash, so any
/// stable value in [0, 2^31) is as faithful; we take CRC-32 (IEEE) of the hyphenated id
/// (spec §5.4), so it never changes across restarts.
pub fn server_id(instance_id: Uuid) -> u32 {
    crc32(instance_id.hyphenated().to_string().as_bytes()) & 0x7fff_ffff
}

/// CRC-32 (IEEE 802.3, reflected, poly 0xEDB88320), bitwise: a few dozen bytes per
/// request do not justify a table or a dependency.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

/// `⌊k × R / 512⌋`: every RAM-scaled value of the MySQL-family templates.
fn scaled(k: u64, ram: u64) -> u64 {
    k * ram / 512
}

type Pairs = Vec<(&'static str, Value)>;

/// Keys shared by the MySQL and MariaDB `[mysqld]` sections, in file order, with the
/// RAM-scaled ones computed. `pid_key` differs between the two templates.
fn mysqld_common(ram: u64, pid_key: &'static str) -> (Pairs, Pairs) {
    let head: Pairs = vec![
        ("port", json!(3306)),
        ("basedir", json!("/usr")),
        ("datadir", json!("/var/lib/mysql/data")),
    ];
    let mut tail: Pairs = vec![
        ("tmpdir", json!("/var/tmp")),
        (pid_key, json!("/var/run/mysqld/mysqld.pid")),
        ("socket", json!("/var/run/mysqld/mysqld.sock")),
    ];
    tail.extend([
        ("skip-external-locking", json!(1)),
        ("key_buffer_size", json!(format!("{}M", scaled(50, ram)))),
        (
            "max_allowed_packet",
            json!(format!("{}K", scaled(1024, ram))),
        ),
        ("thread_stack", json!("192K")),
        ("thread_cache_size", json!(scaled(4, ram))),
        ("myisam-recover-options", json!("BACKUP,FORCE")),
        ("innodb_data_file_path", json!("ibdata1:10M:autoextend")),
        (
            "innodb_buffer_pool_size",
            json!(format!("{}M", scaled(150, ram))),
        ),
        ("innodb_file_per_table", json!(1)),
        ("innodb_log_files_in_group", json!(2)),
        ("innodb_log_file_size", json!("50M")),
        ("innodb_log_buffer_size", json!("25M")),
        ("connect_timeout", json!(15)),
        ("wait_timeout", json!(120)),
        ("join_buffer_size", json!("1M")),
        ("read_buffer_size", json!("512K")),
        ("read_rnd_buffer_size", json!("512K")),
        ("sort_buffer_size", json!("1M")),
        ("tmp_table_size", json!(format!("{}M", scaled(16, ram)))),
        (
            "max_heap_table_size",
            json!(format!("{}M", scaled(16, ram))),
        ),
        ("table_open_cache", json!(scaled(256, ram))),
        ("table_definition_cache", json!(scaled(256, ram))),
        ("open_files_limit", json!(scaled(512, ram))),
        ("max_user_connections", json!(scaled(100, ram))),
        ("max_connections", json!(scaled(100, ram))),
        ("default_storage_engine", json!("innodb")),
        ("local-infile", json!(0)),
    ]);
    (head, tail)
}

/// `mysql/config.template`, `[mysqld]` section (spec §5.2).
fn mysql(ram: u64, version: SemVer, server_id: u32) -> Pairs {
    let (mut pairs, tail) = mysqld_common(ram, "pid-file");
    pairs.push(("secure-file-priv", json!("NULL")));
    pairs.extend(tail);
    // mysql_native_password is gone from MySQL 8.4 on.
    if version.major < 8 || (version.major == 8 && version.minor < 4) {
        let at = pairs
            .iter()
            .position(|(k, _)| *k == "skip-external-locking")
            .unwrap_or(pairs.len());
        pairs.insert(
            at,
            (
                "default_authentication_plugin",
                json!("mysql_native_password"),
            ),
        );
    }
    pairs.push(("server_id", json!(server_id)));
    pairs.push(("performance_schema", json!("ON")));
    pairs
}

/// `mariadb/config.template`, `[mysqld]` section (spec §5.3).
fn mariadb(ram: u64, server_id: u32) -> Pairs {
    let (mut pairs, tail) = mysqld_common(ram, "pid_file");
    pairs.extend(tail);
    let at = pairs
        .iter()
        .position(|(k, _)| *k == "default_storage_engine")
        .unwrap_or(pairs.len());
    pairs.splice(
        at..at,
        [
            ("query_cache_type", json!(1)),
            ("query_cache_limit", json!("1M")),
            ("query_cache_size", json!(format!("{}M", scaled(8, ram)))),
        ],
    );
    pairs.push(("server_id", json!(server_id)));
    pairs
}

const PG_ARCHIVE_COMMAND: &str = "'test ! -f /var/lib/postgresql/data/wal_archive/%f && cp %p /var/lib/postgresql/data/wal_archive/%f.tmp && mv /var/lib/postgresql/data/wal_archive/%f.tmp /var/lib/postgresql/data/wal_archive/%f'";
const PG_RESTORE_COMMAND: &str = "'cp /var/lib/postgresql/data/wal_archive/%f \"%p\"'";

/// `postgresql/config.template` (spec §5.5). Quoted values keep their quotes.
fn postgresql(ram: u64, version: SemVer) -> Pairs {
    // Upstream multiplies in floating point and truncates (`(ram * 0.25)|int`); done
    // the same way so every RAM size gives upstream's exact figure.
    let ram_f = ram as f64;
    let shared = if ram >= 3072 {
        ram_f * 0.25
    } else {
        ram_f * 0.10
    };
    let effective_cache = ram.saturating_sub(512).max(512);
    let mut pairs: Pairs = vec![
        ("listen_addresses", json!("'*'")),
        ("max_connections", json!(100)),
        (
            "shared_buffers",
            json!(format!("{}MB", shared.trunc() as u64)),
        ),
        ("max_stack_depth", json!("7MB")),
        ("dynamic_shared_memory_type", json!("posix")),
        ("wal_level", json!("replica")),
        ("wal_log_hints", json!("on")),
        ("max_wal_size", json!("1GB")),
        ("min_wal_size", json!("80MB")),
        ("archive_mode", json!("on")),
        ("archive_command", json!(PG_ARCHIVE_COMMAND)),
        ("restore_command", json!(PG_RESTORE_COMMAND)),
    ];
    if version.major < 13 {
        pairs.push(("wal_keep_segments", json!(5)));
    } else {
        // Upstream's parser splits the template line on every `=`, including the one in
        // its trailing comment, and answers this array. Reproduced for fidelity: clients
        // print values as they come, and a scalar here would differ from upstream.
        pairs.push((
            "wal_keep_size",
            json!([80, "wal_keep_segments x wal_keep_size"]),
        ));
    }
    pairs.extend([
        (
            "effective_cache_size",
            json!(format!("{effective_cache}MB")),
        ),
        ("log_timezone", json!("'Etc/UTC'")),
        ("update_process_title", json!("off")),
        ("datestyle", json!("'iso, mdy'")),
        ("timezone", json!("'Etc/UTC'")),
        ("lc_messages", json!("'en_US.utf8'")),
        ("lc_monetary", json!("'en_US.utf8'")),
        ("lc_numeric", json!("'en_US.utf8'")),
        ("lc_time", json!("'en_US.utf8'")),
        ("default_text_search_config", json!("'pg_catalog.english'")),
        ("include_dir", json!("'/etc/postgresql/conf.d'")),
    ]);
    pairs
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    const ID: Uuid = Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);

    fn render(ds: &str, manager: &str, number: &str, ram: u32) -> BTreeMap<String, Value> {
        default_configuration(&TemplateInput {
            datastore_name: ds,
            manager,
            version_name: "x",
            version_number: number,
            ram_mb: ram,
            instance_id: ID,
        })
        .unwrap()
        .into_iter()
        .collect()
    }

    #[test]
    fn semver_is_lenient() {
        let v = |s| {
            let v = SemVer::lenient(s);
            (v.major, v.minor, v.patch)
        };
        assert_eq!(v("5.7"), (5, 7, 0));
        assert_eq!(v("12"), (12, 0, 0));
        assert_eq!(v("8.0.30"), (8, 0, 30));
        assert_eq!(v("10.11.8-MariaDB"), (10, 11, 8));
        assert_eq!(v("8.4-rc1.3"), (8, 4, 0));
        assert_eq!(v("latest"), (0, 0, 0));
        assert_eq!(v(""), (0, 0, 0));
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert!(server_id(ID) < 1 << 31);
        assert_eq!(server_id(ID), server_id(ID));
    }

    #[test]
    fn mysql_8_0_at_1024_mb_is_the_worked_example() {
        let mut expected: BTreeMap<String, Value> = serde_json::from_value(json!({
         "basedir": "/usr", "connect_timeout": 15, "datadir": "/var/lib/mysql/data",
         "default_authentication_plugin": "mysql_native_password",
         "default_storage_engine": "innodb", "innodb_buffer_pool_size": "300M",
         "innodb_data_file_path": "ibdata1:10M:autoextend", "innodb_file_per_table": 1,
         "innodb_log_buffer_size": "25M", "innodb_log_file_size": "50M",
         "innodb_log_files_in_group": 2, "join_buffer_size": "1M", "key_buffer_size": "100M",
         "local-infile": 0, "max_allowed_packet": "2048K", "max_connections": 200,
         "max_heap_table_size": "32M", "max_user_connections": 200,
         "myisam-recover-options": "BACKUP,FORCE", "open_files_limit": 1024,
         "performance_schema": "ON", "pid-file": "/var/run/mysqld/mysqld.pid", "port": 3306,
         "read_buffer_size": "512K", "read_rnd_buffer_size": "512K",
         "secure-file-priv": "NULL", "server_id": 123456789, "skip-external-locking": 1,
         "socket": "/var/run/mysqld/mysqld.sock", "sort_buffer_size": "1M",
         "table_definition_cache": 512, "table_open_cache": 512, "thread_cache_size": 8,
         "thread_stack": "192K", "tmp_table_size": "32M", "tmpdir": "/var/tmp",
         "wait_timeout": 120}))
        .unwrap();
        expected.insert("server_id".into(), json!(server_id(ID)));
        assert_eq!(render("mysql", "mysql", "8.0.30", 1024), expected);
    }

    #[test]
    fn mysql_scales_with_ram_per_the_table() {
        // R, key_buffer, max_allowed_packet, thread_cache, buffer_pool, tmp/heap,
        // table caches, open_files_limit, connections.
        let rows = [
            (512, "50M", "1024K", 4, "150M", "16M", 256, 512, 100),
            (2048, "200M", "4096K", 16, "600M", "64M", 1024, 2048, 400),
            (4096, "400M", "8192K", 32, "1200M", "128M", 2048, 4096, 800),
            (
                8192, "800M", "16384K", 64, "2400M", "256M", 4096, 8192, 1600,
            ),
        ];
        for (ram, kb, pkt, tc, bp, tmp, cache, files, conns) in rows {
            for (ds, manager) in [("mysql", "mysql"), ("mariadb", "mariadb")] {
                let c = render(ds, manager, "5.7.29", ram);
                assert_eq!(c["key_buffer_size"], json!(kb), "{ds} {ram}");
                assert_eq!(c["max_allowed_packet"], json!(pkt));
                assert_eq!(c["thread_cache_size"], json!(tc));
                assert_eq!(c["innodb_buffer_pool_size"], json!(bp));
                assert_eq!(c["tmp_table_size"], json!(tmp));
                assert_eq!(c["max_heap_table_size"], json!(tmp));
                assert_eq!(c["table_open_cache"], json!(cache));
                assert_eq!(c["table_definition_cache"], json!(cache));
                assert_eq!(c["open_files_limit"], json!(files));
                assert_eq!(c["max_connections"], json!(conns));
                assert_eq!(c["max_user_connections"], json!(conns));
            }
        }
    }

    #[test]
    fn mysql_8_4_drops_the_native_password_plugin() {
        assert!(
            !render("mysql", "mysql", "8.4.0", 1024).contains_key("default_authentication_plugin")
        );
        assert!(render("mysql", "mysql", "5.7", 1024).contains_key("default_authentication_plugin"));
        assert!(
            !render("mysql", "mysql", "9.1", 1024).contains_key("default_authentication_plugin")
        );
    }

    #[test]
    fn mariadb_differs_from_mysql_as_specified() {
        for (ram, qcs) in [(512, "8M"), (1024, "16M"), (8192, "128M")] {
            let c = render("mariadb", "mariadb", "10.11.8", ram);
            let m = render("mysql", "mysql", "5.7.29", ram);
            for gone in [
                "secure-file-priv",
                "default_authentication_plugin",
                "performance_schema",
                "pid-file",
            ] {
                assert!(!c.contains_key(gone), "{gone}");
            }
            assert_eq!(c["pid_file"], json!("/var/run/mysqld/mysqld.pid"));
            assert_eq!(c["query_cache_type"], json!(1));
            assert_eq!(c["query_cache_limit"], json!("1M"));
            assert_eq!(c["query_cache_size"], json!(qcs));
            assert_eq!(c.len(), m.len() - 4 + 1 + 3);
            assert!(c["server_id"].is_u64());
        }
    }

    #[test]
    fn postgresql_scales_with_ram_per_the_table() {
        let rows = [
            (512, "51MB", "512MB"),
            (1024, "102MB", "512MB"),
            (2048, "204MB", "1536MB"),
            (4096, "1024MB", "3584MB"),
            (8192, "2048MB", "7680MB"),
        ];
        for (ram, shared, effective) in rows {
            let c = render("postgresql", "postgresql", "16.3", ram);
            assert_eq!(c["shared_buffers"], json!(shared), "{ram}");
            assert_eq!(c["effective_cache_size"], json!(effective), "{ram}");
            assert_eq!(c["max_connections"], json!(100));
            assert_eq!(c["listen_addresses"], json!("'*'"));
            assert_eq!(c["include_dir"], json!("'/etc/postgresql/conf.d'"));
            assert!(!c.contains_key("server_id"));
        }
        assert_eq!(
            render("postgresql", "postgresql", "16.3", 100)["effective_cache_size"],
            json!("512MB")
        );
    }

    #[test]
    fn postgresql_wal_keep_depends_on_the_major_version() {
        let old = render("postgresql", "postgresql", "12.19", 1024);
        assert_eq!(old["wal_keep_segments"], json!(5));
        assert!(!old.contains_key("wal_keep_size"));
        let new = render("postgresql", "postgresql", "13.15", 1024);
        assert_eq!(
            new["wal_keep_size"],
            json!([80, "wal_keep_segments x wal_keep_size"])
        );
        assert!(!new.contains_key("wal_keep_segments"));
        assert_eq!(new.len(), 24);
    }

    #[test]
    fn unknown_manager_has_no_parser_and_template_follows_the_datastore_name() {
        let e = default_configuration(&TemplateInput {
            datastore_name: "redis",
            manager: "redis",
            version_name: "7",
            version_number: "",
            ram_mb: 1024,
            instance_id: ID,
        })
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "No configuration parser found for datastore redis."
        );
        // A datastore named after no template uses its manager's.
        let c = render("percona-like", "mysql", "8.0.36", 1024);
        assert_eq!(c["pid-file"], json!("/var/run/mysqld/mysqld.pid"));
    }

    #[test]
    fn empty_version_number_falls_back_to_the_name() {
        let c: BTreeMap<String, Value> = default_configuration(&TemplateInput {
            datastore_name: "postgresql",
            manager: "postgresql",
            version_name: "12",
            version_number: " ",
            ram_mb: 1024,
            instance_id: ID,
        })
        .unwrap()
        .into_iter()
        .collect();
        assert!(c.contains_key("wal_keep_segments"));
    }
}
