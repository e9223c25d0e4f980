//! Operator commands to the running scheduler loop: the channel, the
//! [`Handle`] the HTTP API and the SIGHUP reloader send through, and why a
//! command was not carried out ([`CommandError`]).

use tokio::sync::{mpsc, oneshot};

use super::Command;

/// A request to the running scheduler and the channel for its answer.
pub type CommandRequest = (Command, oneshot::Sender<Result<(), String>>);

/// Why a command was not carried out.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The scheduler loop is not running (stopping, or not started).
    #[error("the scheduler is not running")]
    NotRunning,
    /// The scheduler refused; the text says why (e.g. the provider's restart
    /// slots are busy, the session is not paused).
    #[error("{0}")]
    Refused(String),
}

/// Sends commands to a running scheduler loop.
#[derive(Clone, Debug)]
pub struct Handle {
    tx: mpsc::Sender<CommandRequest>,
}

/// A handle and the receiving end the loop reads (`Scheduler::run`).
pub fn channel(capacity: usize) -> (Handle, mpsc::Receiver<CommandRequest>) {
    let (tx, rx) = mpsc::channel(capacity);
    (Handle { tx }, rx)
}

impl Handle {
    /// Sends a command and waits for the scheduler's answer.
    pub async fn command(&self, cmd: Command) -> Result<(), CommandError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send((cmd, reply))
            .await
            .map_err(|_| CommandError::NotRunning)?;
        match rx.await {
            Ok(result) => result.map_err(CommandError::Refused),
            Err(_) => Err(CommandError::NotRunning),
        }
    }
}
