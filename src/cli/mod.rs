//! Operator and auditor commands that work from the log itself (not through the HTTP
//! API). They may use `anyhow` (STYLE §5: binaries and CLI code).

pub mod audit;
pub mod backups;
pub mod history;
pub mod log;
pub mod migrate;
pub mod projections;
pub mod sim;
