//! Whether PostgreSQL could start with the configuration files as they are on disk.
//!
//! A running server's `pg_file_settings` says "setting could not be applied" alike for a
//! value that only a restart can change and for a value no start would take
//! (`shared_buffers = 'lots'`), so it cannot tell the two apart. `postgres -C` can: it
//! reads the configuration files as a start would (also while the server runs, without
//! touching it), and exits with `invalid value for parameter …` when a value is bad.

use super::Postgres;
use crate::local::{proc, Instance, LocalError};

/// What `postgres -C` said about the files.
fn bad_values(stderr: &str) -> Option<String> {
    let lines: Vec<&str> = stderr
        .lines()
        .filter_map(|l| {
            let at = l
                .find("invalid value for parameter")
                .or_else(|| l.find("unrecognized configuration parameter"))
                .or_else(|| l.find("is outside the valid range for parameter"))?;
            Some(l[at..].trim())
        })
        .collect();
    if lines.is_empty() {
        return None;
    }
    Some(lines.join("; "))
}

impl Postgres {
    /// Refuses the configuration files of `inst` if a start would refuse them: an
    /// `Invalid` error naming the values (the server's own words).
    pub(super) async fn check_files(&self, inst: &Instance) -> Result<(), LocalError> {
        let mut cmd = self
            .opts
            .user
            .command(&self.install.tool("postgres"), &inst.dir);
        cmd.arg("-D")
            .arg(inst.data_dir())
            .args(["-C", "data_directory"]);
        match proc::run(cmd, None, &[], self.opts.timeout).await {
            Ok(_) => Ok(()),
            Err(LocalError::Command { stderr, .. }) if bad_values(&stderr).is_some() => Err(
                LocalError::invalid("configuration", bad_values(&stderr).unwrap_or_default()),
            ),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bad_values_are_named_in_the_servers_words() {
        let stderr = "2026-12-07 18:47:28.461 UTC [25200] LOG:  invalid value for parameter \"shared_buffers\": \"lots\"\n\
                      2026-12-07 18:47:28.461 UTC [25200] LOG:  invalid value for parameter \"TimeZone\": \"Mars/Olympus\"\n\
                      2026-12-07 18:47:28.461 UTC [25200] FATAL:  configuration file \"/x/troved.conf\" contains errors\n";
        assert_eq!(
            bad_values(stderr).unwrap(),
            "invalid value for parameter \"shared_buffers\": \"lots\"; \
             invalid value for parameter \"TimeZone\": \"Mars/Olympus\""
        );
        assert_eq!(bad_values("FATAL:  could not open file"), None);
    }
}
