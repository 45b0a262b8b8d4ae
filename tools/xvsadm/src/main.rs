//! `xvsadm`: administer the xvs director with ipvsadm's commands and
//! output. See `xvsadm -h` and `xvs_adm::client`.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use xvs_adm::client::{EXIT_USAGE, FileNames, HELP, Outcome, Transport, TransportError, run_to};
use xvs_proto::control::DEFAULT_SOCKET;
use xvs_proto::control::client::ControlClient;
use xvs_proto::control::{ConnView, Reply, Request};

/// Connects on first use, so that `-h` and bad command lines need no
/// director.
struct Lazy {
    path: PathBuf,
    client: Option<ControlClient>,
}

impl Lazy {
    fn client(&mut self) -> Result<&mut ControlClient, TransportError> {
        let client = match self.client.take() {
            Some(client) => client,
            None => ControlClient::connect(&self.path).map_err(TransportError::Unreachable)?,
        };
        Ok(self.client.insert(client))
    }
}

impl Transport for Lazy {
    fn call(&mut self, request: Request) -> Result<Reply, TransportError> {
        Ok(self.client()?.call(request)?)
    }

    fn connections(
        &mut self,
        chunk: &mut dyn FnMut(&[ConnView]) -> Result<(), TransportError>,
    ) -> Result<Reply, TransportError> {
        self.client()?.connections(chunk)
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = std::env::var_os("XVSADM_SOCKET")
        .map_or_else(|| PathBuf::from(DEFAULT_SOCKET), PathBuf::from);
    let mut transport = Lazy { path, client: None };
    let mut stdin = || {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).map(|_| s)
    };
    // A connection listing is printed as it arrives, through this buffer.
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    let outcome: Outcome = if args.iter().any(|a| a == "--help") && args.len() == 1 {
        Outcome {
            stdout: HELP.to_owned(),
            ..Outcome::default()
        }
    } else {
        run_to(
            &args,
            &mut transport,
            &mut stdin,
            &FileNames::system(),
            &mut stdout,
        )
    };
    let _ = stdout.write_all(outcome.stdout.as_bytes());
    let _ = stdout.flush();
    let _ = std::io::stderr().write_all(outcome.stderr.as_bytes());
    ExitCode::from(u8::try_from(outcome.status).unwrap_or(EXIT_USAGE as u8))
}
