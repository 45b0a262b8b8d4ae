//! `xvs-tools`: shared code of the operator tools (`xvs-schedsim`,
//! `xvs-replay`, `xvsadm`, load generators); each tool is a binary in
//! `src/bin/`.
#![forbid(unsafe_code)]

pub mod pktgen;
pub mod replay;
pub mod schedsim;
pub mod xdpfwd;
pub mod xvsadm;
