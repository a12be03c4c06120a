//! `troved audit verify`: checks the event store's hash chains and says whether the log
//! is intact, or where it was first tampered with.
//!
//! Only formatting lives here; the check is [`crate::store::sqlite::verify`], reusable by
//! tests and an admin endpoint. It never writes to the store.

use anyhow::{bail, Context};

use crate::config::AuditCommand;
use crate::store::sqlite::{self, VerifyReport};

/// Runs `troved audit ...`.
///
/// `verify` prints its report on stdout and returns an error (exit code 1) when it found
/// tampering, so scripts can rely on the exit code alone.
pub async fn run(cmd: AuditCommand) -> anyhow::Result<()> {
    match cmd {
        AuditCommand::Verify { data_dir } => {
            // The file name `troved serve` uses (`ServeConfig::events_path`).
            let path = data_dir.join("events.db");
            let shown = path.display().to_string();
            let report = tokio::task::spawn_blocking(move || sqlite::verify(&path))
                .await
                .context("the verification task failed")?
                .with_context(|| format!("cannot verify the event store {shown}"))?;
            print!("{}", render(&shown, &report));
            if let Some(finding) = &report.finding {
                bail!(
                    "the event store {shown} was tampered with: first bad position {}",
                    finding.position
                );
            }
            Ok(())
        }
    }
}

/// The report, one `key: value` line per fact, so it reads well and greps well:
///
/// ```text
/// event store: data/events.db
/// result: OK
/// events: 42 in 5 streams (positions 1..42)
/// $all digest at position 42: 3c0f…
/// ```
///
/// or, when the chains break (`events` and the digest then cover the intact prefix):
///
/// ```text
/// event store: data/events.db
/// result: TAMPERED
/// first bad position: 17 (instance-…, revision 3)
/// problem: hash mismatch: the event does not match its stream hash, …
/// intact before it: 16 events in 4 streams (positions 1..16)
/// $all digest at position 16: 9a41…
/// ```
fn render(path: &str, report: &VerifyReport) -> String {
    let counts = format!(
        "{} events in {} streams ({})",
        report.events,
        report.streams,
        match report.last_position {
            0 => "no positions".to_string(),
            last => format!("positions 1..{last}"),
        }
    );
    let digest = format!(
        "$all digest at position {}: {}",
        report.last_position,
        // Lower-case hex, the form operators see and compare.
        hex::encode(report.digest)
    );
    match &report.finding {
        None => format!("event store: {path}\nresult: OK\nevents: {counts}\n{digest}\n"),
        Some(f) => {
            let mut at = f.position.to_string();
            match (&f.stream, f.revision) {
                (Some(stream), Some(revision)) => {
                    at.push_str(&format!(" ({stream}, revision {revision})"))
                }
                (Some(stream), None) => at.push_str(&format!(" ({stream})")),
                _ => {}
            }
            format!(
                "event store: {path}\nresult: TAMPERED\nfirst bad position: {at}\n\
                 problem: {}\nintact before it: {counts}\n{digest}\n",
                f.problem
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::{Finding, Problem, GENESIS};

    #[test]
    fn an_intact_empty_store_reports_no_positions_and_the_genesis_digest() {
        let report = VerifyReport {
            events: 0,
            streams: 0,
            last_position: 0,
            digest: GENESIS,
            finding: None,
        };
        assert_eq!(
            render("d/events.db", &report),
            format!(
                "event store: d/events.db\nresult: OK\nevents: 0 events in 0 streams \
                 (no positions)\n$all digest at position 0: {}\n",
                "0".repeat(64)
            )
        );
    }

    #[test]
    fn a_finding_names_the_position_stream_and_revision() {
        let report = VerifyReport {
            events: 4,
            streams: 2,
            last_position: 4,
            digest: [0xab; 32],
            finding: Some(Finding {
                position: 5,
                stream: Some("instance-1".to_string()),
                revision: Some(2),
                problem: Problem::StreamHashMismatch,
            }),
        };
        let text = render("d/events.db", &report);
        assert!(text.contains("result: TAMPERED\n"), "{text}");
        assert!(
            text.contains("first bad position: 5 (instance-1, revision 2)\n"),
            "{text}"
        );
        assert!(text.contains("problem: hash mismatch"), "{text}");
        assert!(
            text.contains("intact before it: 4 events in 2 streams (positions 1..4)\n"),
            "{text}"
        );
    }
}
