//! Operator commands to the running scheduler loop: the channel, the
//! [`Handle`] the HTTP API and the SIGHUP reloader send through, and why a
//! command was not carried out ([`CommandError`]).

use tokio::sync::{mpsc, oneshot};

use super::Command;

/// A request to the running scheduler and the channel for its answer.
pub type CommandRequest = (Command, oneshot::Sender<Result<(), Refusal>>);

/// Why the scheduler refused a command.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no provider named \"{0}\"")]
    NoProvider(String),
    #[error("provider \"{provider}\" has no session \"{session}\"")]
    NoSession { provider: String, session: String },
    /// The session's state machine refused; the text says why (the
    /// provider's restart slots are busy, the session is not paused).
    #[error("{0}")]
    Machine(String),
    /// The new configuration could not be applied (nothing changed).
    #[error("{0}")]
    Reload(ReloadError),
}

/// Why a new configuration could not be applied (nothing changed).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReloadError {
    /// A provider's client could not be built.
    #[error("provider {name:?}: {error}")]
    Client {
        name: String,
        error: crate::provider::ClientError,
    },
    /// The store could not give the sessions to restore.
    #[error("cannot read the sessions to restore: {0}")]
    Store(String),
}

/// Why a command was not carried out.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The scheduler loop is not running (stopping, or not started).
    #[error("the scheduler is not running")]
    NotRunning,
    /// The scheduler refused, and why.
    #[error("{0}")]
    Refused(Refusal),
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
