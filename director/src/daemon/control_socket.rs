//! The control socket xvsadm talks to, as a part: bound at start, its
//! requests sent to the main thread, closed (and its file removed) at stop.

use std::path::PathBuf;

use crossbeam::channel::Sender;
use log::info;
use serde_json::{Value, json};

use crate::control::plane::ControlMsg;
use crate::control::socket::{ConnSource, ControlSocket};

use super::Error;
use super::part::{Part, Running};

/// The control socket.
#[derive(Debug)]
pub struct ControlSocketPart {
    path: PathBuf,
    to_main: Sender<ControlMsg>,
    conns: ConnSource,
    socket: Option<ControlSocket>,
}

impl ControlSocketPart {
    /// A control socket at `path` that will send requests to `to_main` and
    /// list connections from `conns`.
    #[must_use]
    pub fn new(path: PathBuf, to_main: Sender<ControlMsg>, conns: ConnSource) -> Self {
        Self {
            path,
            to_main,
            conns,
            socket: None,
        }
    }
}

impl Part for ControlSocketPart {
    fn name(&self) -> &'static str {
        "control_socket"
    }

    fn start(&mut self) -> Result<(), Error> {
        let socket = ControlSocket::bind(&self.path, self.to_main.clone(), self.conns.clone())?;
        info!("control socket {}", socket.path().display());
        self.socket = Some(socket);
        Ok(())
    }

    fn status(&self) -> Value {
        json!({ "running": self.socket.is_some(), "path": self.path })
    }

    fn stop(&mut self, _running: &mut Running<'_>) {
        self.socket = None;
    }
}
