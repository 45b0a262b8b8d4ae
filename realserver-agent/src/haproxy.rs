//! HAProxy's `agent-check`, as a second face of the agent: HAProxy
//! connects to `agent-port`, may send its `agent-send` string, and reads one
//! line — here the capacity from [`CapacityFormula`] as `NN%` (relative to
//! the server's configured weight) and the state asked for, `ready`,
//! `drain` or `maint` — after which the agent closes.
//!
//! Opt-in (`[haproxy] listen` in the configuration) and bounded: one thread
//! of its own (the report loop never waits for it), connections served one
//! at a time, each given at most [`DEADLINE`] and read at most [`MAX_READ`]
//! bytes of, then closed. HAProxy's protocol has no authentication: listen
//! on an address only the HAProxy hosts reach.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use xvs_packet::load_report::AgentState;
use xvs_sched::feedback::CapacityFormula;

use crate::run::{Latest, SharedLatest};

/// The longest a connection is served.
pub const DEADLINE: Duration = Duration::from_millis(500);
/// The most read from a connection (HAProxy's `agent-send`, if any).
pub const MAX_READ: usize = 256;

/// The line answered for `latest`: `75% ready\n`.
pub fn answer(formula: &CapacityFormula, latest: &Latest) -> String {
    let permille = formula.capacity(&latest.load);
    // Whole percent, rounded down so that a floor of 50 % never reads 49.
    let percent = permille / 10;
    let state = match latest.state {
        AgentState::Ready => "ready",
        AgentState::Drain => "drain",
        AgentState::Maint => "maint",
    };
    format!("{percent}% {state}\n")
}

/// Serves one connection: the line, then whatever the peer sent is read
/// (at most [`MAX_READ`] bytes, until [`DEADLINE`]) so that closing does
/// not reset the connection under the line.
fn serve_one(mut stream: TcpStream, line: &str) -> std::io::Result<()> {
    let start = Instant::now();
    stream.set_write_timeout(Some(DEADLINE))?;
    stream.write_all(line.as_bytes())?;
    stream.shutdown(Shutdown::Write)?;
    let mut buf = [0u8; MAX_READ];
    let mut total = 0;
    while total < MAX_READ {
        let left = DEADLINE.saturating_sub(start.elapsed());
        if left.is_zero() {
            break;
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut buf[total..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n,
        }
    }
    Ok(())
}

/// Accepts and answers connections for as long as the process runs.
pub fn serve(listener: &TcpListener, formula: &CapacityFormula, latest: &SharedLatest) {
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                log::debug!("HAProxy agent check: accept: {e}");
                continue;
            }
        };
        let line = match latest.lock() {
            Ok(l) => answer(formula, &l),
            Err(_) => continue,
        };
        if let Err(e) = serve_one(stream, &line) {
            log::debug!("HAProxy agent check: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use xvs_packet::load_report::LoadFigures;

    use super::*;

    fn latest(cpu: u16, state: AgentState) -> Latest {
        Latest {
            load: LoadFigures {
                cpu_permille: Some(cpu),
                ..LoadFigures::default()
            },
            state,
        }
    }

    #[test]
    fn answers_follow_the_formula_and_state() {
        let f = CapacityFormula::default();
        assert_eq!(answer(&f, &latest(0, AgentState::Ready)), "100% ready\n");
        assert_eq!(answer(&f, &latest(255, AgentState::Ready)), "74% ready\n");
        assert_eq!(answer(&f, &latest(1000, AgentState::Drain)), "50% drain\n");
        assert_eq!(answer(&f, &latest(0, AgentState::Maint)), "100% maint\n");
        let unknown = Latest {
            load: LoadFigures::default(),
            state: AgentState::Ready,
        };
        assert_eq!(answer(&f, &unknown), "100% ready\n");
    }

    #[test]
    fn a_connection_gets_one_line_and_a_silent_or_chatty_one_is_closed() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Mutex::new(latest(300, AgentState::Drain)));
        let served = Arc::clone(&shared);
        std::thread::spawn(move || serve(&listener, &CapacityFormula::default(), &served));

        // A client that sends nothing and never closes: it still gets the
        // line, and the agent closes within the deadline.
        let mut silent = TcpStream::connect(addr).unwrap();
        silent
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let start = Instant::now();
        let mut got = String::new();
        silent.read_to_string(&mut got).unwrap();
        assert_eq!(got, "70% drain\n");
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );

        // One that sends far more than MAX_READ.
        let mut chatty = TcpStream::connect(addr).unwrap();
        chatty
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let _ = chatty.write_all(&[b'x'; 4096]);
        let mut line = [0u8; 10];
        chatty.read_exact(&mut line).unwrap();
        assert_eq!(&line, b"70% drain\n");

        // HAProxy with agent-send: the state changed meanwhile.
        *shared.lock().unwrap() = latest(0, AgentState::Ready);
        let mut haproxy = TcpStream::connect(addr).unwrap();
        haproxy
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        haproxy.write_all(b"hello\n").unwrap();
        let mut got = String::new();
        haproxy.read_to_string(&mut got).unwrap();
        assert_eq!(got, "100% ready\n");
    }
}
