//! Processes: running a tool with a bounded wait, and telling whether a recorded pid is
//! still the server of a given data directory.
//!
//! Servers are identified by pid *and* command line: a pid alone may have been reused by
//! an unrelated process after a reboot or a crash, and signalling that process would be a
//! disaster. So every check reads `/proc/<pid>/cmdline` and looks for the data directory
//! among the arguments (`-D <dir>` for PostgreSQL, `--datadir=<dir>` for MariaDB; both
//! servers keep their first process's command line unchanged).

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use super::LocalError;

/// Whether a NUL-separated command line names `data_dir` as an argument, alone or as the
/// value of an `--option=` (so `/x/data` does not match `/x/data2` or `/y/x/data`).
pub fn cmdline_names(cmdline: &[u8], data_dir: &str) -> bool {
    cmdline
        .split(|b| *b == 0)
        .filter_map(|a| std::str::from_utf8(a).ok())
        .any(|a| a == data_dir || a.split_once('=').is_some_and(|(_, v)| v == data_dir))
}

/// Whether process `pid` is alive (not a zombie) and serves `data_dir`.
pub fn serves(pid: u32, data_dir: &Path) -> bool {
    let proc_dir = Path::new("/proc").join(pid.to_string());
    let Ok(stat) = std::fs::read_to_string(proc_dir.join("stat")) else {
        return false;
    };
    // `pid (comm) S ...`: the state follows the last `)` (comm may contain spaces).
    let state = stat
        .rsplit(')')
        .next()
        .and_then(|r| r.split_whitespace().next());
    if matches!(state, Some("Z" | "X" | "x")) {
        return false;
    }
    std::fs::read(proc_dir.join("cmdline"))
        .is_ok_and(|c| cmdline_names(&c, &data_dir.to_string_lossy()))
}

/// The server process of `data_dir` found in the process table, whatever any record
/// says: a server started by a troved that died before recording it. Of several matches
/// (a PostgreSQL child forked a moment ago still has its parent's command line), the one
/// whose parent is not a match.
pub fn find_serving(data_dir: &Path) -> Option<u32> {
    let pids: Vec<u32> = std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|pid| serves(*pid, data_dir))
        .collect();
    pids.iter()
        .copied()
        .find(|pid| !parent(*pid).is_some_and(|p| pids.contains(&p)))
}

/// The parent of `pid` (`/proc/<pid>/stat`: `pid (comm) state ppid ...`).
fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')')
        .next()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Sends `signal` to `pid`; a process that is already gone is not an error.
pub fn signal(pid: u32, signal: rustix::process::Signal) {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return;
    };
    let _ = rustix::process::kill_process(pid, signal);
}

/// Sends `signal` to the process group `pid` leads, if it leads one (a server troved
/// spawned does; an adopted one may not, and then nothing is sent).
pub fn signal_group(pid: u32, signal: rustix::process::Signal) {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return;
    };
    if rustix::process::getpgid(Some(pid)).is_ok_and(|g| g == pid) {
        let _ = rustix::process::kill_process_group(pid, signal);
    }
}

/// Waits until `pid` no longer serves `data_dir`, at most `limit`; true if it stopped.
pub async fn wait_gone(pid: u32, data_dir: &Path, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while serves(pid, data_dir) {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

/// Runs `cmd` to completion within `limit`, feeding it `stdin` (SQL that may carry
/// passwords: it goes through a pipe, never the command line). Returns its stdout; a
/// failure carries its stderr with every string of `secrets` blanked out.
pub async fn run(
    mut cmd: Command,
    stdin: Option<&str>,
    secrets: &[&str],
    limit: Duration,
) -> Result<String, LocalError> {
    let program = program_name(&cmd);
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| LocalError::io(&program, e))?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes())
            .await
            .map_err(|e| LocalError::io(&program, e))?;
    }
    let out = match tokio::time::timeout(limit, child.wait_with_output()).await {
        Ok(out) => out.map_err(|e| LocalError::io(&program, e))?,
        // Dropping the future drops the child, which kills it (`kill_on_drop`).
        Err(_) => return Err(LocalError::Timeout(program, limit)),
    };
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    Err(LocalError::Command {
        program,
        status: out.status.to_string(),
        stderr: redact(String::from_utf8_lossy(&out.stderr).trim(), secrets),
    })
}

fn program_name(cmd: &Command) -> String {
    let program = cmd.as_std().get_program();
    Path::new(program)
        .file_name()
        .unwrap_or(program)
        .to_string_lossy()
        .into_owned()
}

/// `text` with every non-empty `secret` replaced by `***`: tool error messages may quote
/// the statement that failed.
pub fn redact(text: &str, secrets: &[&str]) -> String {
    secrets
        .iter()
        .filter(|s| !s.is_empty())
        .fold(text.to_string(), |t, s| t.replace(s, "***"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_dir_is_named_only_by_an_exact_argument() {
        let pg = b"/usr/lib/postgresql/15/bin/postgres\0-D\0/srv/i/a/data\0-p\0port\0";
        assert!(cmdline_names(pg, "/srv/i/a/data"));
        assert!(!cmdline_names(pg, "/srv/i/a/dat"));
        assert!(!cmdline_names(pg, "/i/a/data"));
        let maria = b"/usr/sbin/mariadbd\0--defaults-file=/x/my.cnf\0--datadir=/srv/i/b/data\0";
        assert!(cmdline_names(maria, "/srv/i/b/data"));
        assert!(!cmdline_names(maria, "/srv/i/b/data2"));
        assert!(!cmdline_names(b"", "/srv/i/b/data"));
    }

    #[test]
    fn secrets_are_blanked_out_of_error_text() {
        assert_eq!(
            redact("near 'pw1' and pw1 again", &["pw1", ""]),
            "near '***' and *** again"
        );
    }

    #[test]
    fn this_process_serves_nothing_and_a_dead_pid_serves_nothing() {
        assert!(!serves(std::process::id(), Path::new("/nonexistent/data")));
        assert!(!serves(u32::MAX - 1, Path::new("/")));
    }

    #[tokio::test]
    async fn a_hanging_tool_is_stopped_at_the_limit() {
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let started = Instant::now();
        let err = run(cmd, None, &[], Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(matches!(err, LocalError::Timeout(..)), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn stdin_reaches_the_tool_and_a_failure_carries_redacted_stderr() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "read x; echo \"bad $x\" >&2; exit 3"]);
        let err = run(cmd, Some("s3cret\n"), &["s3cret"], Duration::from_secs(10))
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("bad ***"), "{text}");
        assert!(!text.contains("s3cret"), "{text}");
    }
}
