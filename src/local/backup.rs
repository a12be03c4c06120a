//! Physical backups of a running server, and data directories rebuilt from them (issue
//! #14): the engines' side ([`Backups`]); the provider streams the artifacts to and from
//! the backup store (`crate::local::provider`).
//!
//! - PostgreSQL: `pg_basebackup` in tar format to its standard output, gzip'ed, with the
//!   WAL the copy needs inside (`-X fetch`, a replication slot keeping that WAL while
//!   the copy runs). A restore extracts it and starts: the server replays the WAL to the
//!   end of the backup. No incrementals (PostgreSQL 17 has them; 15 does not).
//! - MariaDB: `mariadb-backup --backup --stream=xbstream`, full or incremental from the
//!   parent's `to_lsn`. A restore extracts each artifact (`mbstream -x`), prepares the
//!   full one and applies each incremental in order, then moves the result into place.
//!
//! Tools run as the database user, over the server's private socket, like every other
//! administration ([`super::user::DbUser`]). What this module must not do: hold an
//! artifact whole in memory or on disk (bodies are pipes), or know where artifacts live.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use async_trait::async_trait;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader, ReadBuf};
use tokio::process::{Child, ChildStderr, ChildStdout, Command};

use super::{Instance, LocalError};
use crate::backup_store::Body;

/// A datastore's backup operations.
#[async_trait]
pub trait Backups: Send + Sync {
    /// Whether a backup can count its changes from a parent's position.
    fn incremental(&self) -> bool;

    /// Starts a backup of the running server of `inst`: the artifact's bytes as they
    /// come from the tool, ending in an error if the tool fails. `scratch` is an empty
    /// directory of the database user for the tool's small files, kept until
    /// [`Backups::finish`]. `since` is the parent's position, for an incremental.
    async fn backup(
        &self,
        inst: &Instance,
        scratch: &Path,
        since: Option<&str>,
    ) -> Result<ToolStream, LocalError>;

    /// After the stream ended (or failed): releases what the backup held on the server
    /// and returns where it ended in the engine's log, for a later incremental.
    async fn finish(&self, inst: &Instance, scratch: &Path) -> Result<Option<String>, LocalError>;

    /// Extracts one artifact into `into`, an empty directory of the database user.
    async fn unpack(&self, into: &Path, artifact: Body) -> Result<(), LocalError>;

    /// Makes the data directory `data` (which does not exist) from the unpacked
    /// artifacts, the full one first, and removes what the source's data would impose
    /// on the new server before its first start (replication state, configuration).
    async fn assemble(&self, parts: &[PathBuf], data: &Path) -> Result<(), LocalError>;

    /// With the restored server running: drops what belongs to the source alone
    /// (replication accounts, a primary to follow) and returns the users `(name, host)`
    /// the data brought, to which the new server's access rules apply.
    async fn adopt(&self, inst: &Instance) -> Result<Vec<(String, String)>, LocalError>;
}

/// How many lines of a tool's standard error a failure quotes.
const STDERR_LINES: usize = 8;

/// A tool's standard output as a reader that, at its end, waits for the tool and turns
/// a failed exit into an error: a store reading it never commits what a failed tool
/// left half written. Dropping it kills the tool.
pub struct ToolStream {
    stdout: ChildStdout,
    exit: Option<Pin<Box<dyn Future<Output = io::Result<()>> + Send>>>,
    failure: Arc<Mutex<Option<String>>>,
}

impl ToolStream {
    /// Spawns `cmd` (stdin closed) and streams its output.
    pub fn spawn(mut cmd: Command) -> Result<ToolStream, LocalError> {
        let program = program_name(&cmd);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| LocalError::io(&program, e))?;
        let stdout = child.stdout.take().ok_or_else(|| no_pipe(&program))?;
        let tail = stderr_tail(child.stderr.take());
        let failure: Arc<Mutex<Option<String>>> = Arc::default();
        let slot = failure.clone();
        let exit = async move {
            let status = child.wait().await?;
            if status.success() {
                return Ok(());
            }
            let text = format!("{program} failed ({status}): {}", tail.await);
            *slot
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(text.clone());
            Err(io::Error::other(text))
        };
        Ok(ToolStream {
            stdout,
            exit: Some(Box::pin(exit)),
            failure,
        })
    }

    /// A handle that tells, once the stream ended in an error, whether the tool failed
    /// and how (its status and the end of its standard error).
    pub fn failure(&self) -> ToolFailure {
        ToolFailure(self.failure.clone())
    }
}

/// See [`ToolStream::failure`].
#[derive(Clone)]
pub struct ToolFailure(Arc<Mutex<Option<String>>>);

impl ToolFailure {
    /// The tool's failure, if it failed.
    pub fn message(&self) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl AsyncRead for ToolStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        if self.exit.is_none() {
            // Ended: the tool's verdict was given by the read that found the end.
            return Poll::Ready(Ok(()));
        }
        match Pin::new(&mut self.stdout).poll_read(cx, buf) {
            Poll::Ready(Ok(())) if buf.filled().len() == before && buf.remaining() > 0 => {}
            other => return other,
        }
        // The end of the output: the end of the stream only once the tool exited well.
        let Some(exit) = self.exit.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let done = std::task::ready!(exit.as_mut().poll(cx));
        self.exit = None;
        Poll::Ready(done)
    }
}

/// Runs `cmd` with `body` as its standard input, to the end of both. A body that ends
/// in an error (a checksum that does not match) fails the run with that error, and so
/// does a tool that fails; when the tool stops reading early, the rest of the body is
/// still read, so that a corrupted artifact is reported as such rather than as whatever
/// the tool made of it.
pub async fn feed(mut cmd: Command, mut body: Body) -> Result<(), LocalError> {
    let program = program_name(&cmd);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| LocalError::io(&program, e))?;
    let mut stdin = child.stdin.take().ok_or_else(|| no_pipe(&program))?;
    let tail = stderr_tail(child.stderr.take());
    let copied = async {
        tokio::io::copy(&mut body, &mut stdin).await?;
        stdin.shutdown().await
    }
    .await;
    drop(stdin);
    if let Err(e) = &copied {
        if e.kind() != io::ErrorKind::BrokenPipe {
            let _ = child.start_kill();
            let _ = child.wait().await;
            return Err(LocalError::io("read the backup artifact", clone_error(e)));
        }
        // The tool stopped reading: the artifact's own verdict first.
        if let Err(e) = tokio::io::copy(&mut body, &mut tokio::io::sink()).await {
            let _ = child.wait().await;
            return Err(LocalError::io("read the backup artifact", e));
        }
    }
    finish_tool(&program, &mut child, tail).await
}

/// Waits for a tool whose input is done; its failure with the end of its stderr.
async fn finish_tool(
    program: &str,
    child: &mut Child,
    tail: impl Future<Output = String>,
) -> Result<(), LocalError> {
    let status = child.wait().await.map_err(|e| LocalError::io(program, e))?;
    let stderr = tail.await;
    if status.success() {
        return Ok(());
    }
    Err(LocalError::Command {
        program: program.to_string(),
        status: status.to_string(),
        stderr,
    })
}

/// The last [`STDERR_LINES`] lines of a tool's standard error, read as it runs (a tool
/// blocked on a full stderr pipe would never finish): resolves once the pipe closes.
fn stderr_tail(stderr: Option<ChildStderr>) -> impl Future<Output = String> + Send {
    let task = tokio::spawn(async move {
        let mut lines = std::collections::VecDeque::new();
        let Some(stderr) = stderr else {
            return String::new();
        };
        let mut reader = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            if lines.len() == STDERR_LINES {
                lines.pop_front();
            }
            lines.push_back(line.chars().take(500).collect::<String>());
        }
        Vec::from(lines).join("\n")
    });
    async move { task.await.unwrap_or_default() }
}

fn program_name(cmd: &Command) -> String {
    let program = cmd.as_std().get_program();
    Path::new(program)
        .file_name()
        .unwrap_or(program)
        .to_string_lossy()
        .into_owned()
}

fn no_pipe(program: &str) -> LocalError {
    LocalError::io(program, io::Error::other("no pipe to the tool"))
}

fn clone_error(e: &io::Error) -> io::Error {
    io::Error::new(e.kind(), e.to_string())
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    fn sh(script: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]);
        cmd
    }

    #[tokio::test]
    async fn a_tool_stream_ends_well_only_if_the_tool_exits_well() {
        let mut out = String::new();
        ToolStream::spawn(sh("printf data; echo noise >&2"))
            .unwrap()
            .read_to_string(&mut out)
            .await
            .unwrap();
        assert_eq!(out, "data");
        let stream = ToolStream::spawn(sh("printf half; echo 'disk on fire' >&2; exit 3")).unwrap();
        let failure = stream.failure();
        let mut stream = stream;
        let err = stream.read_to_end(&mut Vec::new()).await.unwrap_err();
        assert!(err.to_string().contains("disk on fire"), "{err}");
        assert!(failure.message().unwrap().contains("exit status: 3"));
    }

    #[tokio::test]
    async fn feeding_reports_the_tool_or_the_artifact_whichever_failed() {
        let body = |b: &'static [u8]| -> Body { Box::new(std::io::Cursor::new(b)) };
        feed(sh("cat >/dev/null"), body(b"abc")).await.unwrap();
        let err = feed(
            sh("head -c1 >/dev/null; echo bad >&2; exit 2"),
            body(b"abc"),
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("bad"), "{err}");
        let corrupt = crate::backup_store::verified(body(b"abc"), &"0".repeat(64));
        let err = feed(sh("exit 0"), corrupt).await.unwrap_err();
        assert!(err.to_string().contains("checksum mismatch"), "{err}");
    }
}
