//! Conversions between SQLite and the store's types, shared by every module of the
//! embedded store (schema, chains, reads, writer): errors and integer ranges.

use rusqlite::ErrorCode;

use crate::store::StoreError;

/// Maps a rusqlite error: damaged files and undecodable values are `Corrupt`, a full disk
/// (`SQLITE_FULL`: a write of the file or its WAL failed with `ENOSPC`) is `Full`,
/// everything else (permissions, locks, I/O) is `Io`.
pub(super) fn sql_err(e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::DiskFull => {
            StoreError::Full(e.to_string())
        }
        // Growing the WAL index (`-shm`), which SQLite creates when the first connection
        // opens the file (it is deleted at a clean close): on Linux this fails only when
        // no block is left for it. Reported as the full disk it is, not as "disk I/O error".
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_IOERR_SHMSIZE =>
        {
            StoreError::Full(format!(
                "cannot create the WAL index (-shm file), is the disk full? ({e})"
            ))
        }
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(f.code, ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) =>
        {
            StoreError::Corrupt(e.to_string())
        }
        rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::IntegralValueOutOfRange(..)
        | rusqlite::Error::Utf8Error(..) => StoreError::Corrupt(e.to_string()),
        _ => StoreError::Io(e.to_string()),
    }
}

/// Converts a sequence number or revision for storage. Values above `i64::MAX` cannot
/// occur in practice (they would need 2^63 appends) but are rejected rather than wrapped.
pub(super) fn to_sql_int(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v)
        .map_err(|_| StoreError::Io(format!("value {v} exceeds the SQLite integer range")))
}

/// Converts a stored integer back; a negative value means the row was not written by us.
pub(super) fn from_sql_int(v: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative {what} {v} in the store")))
}
