//! `xvs-tools`: shared code of the operator tools (`xvs-schedsim`,
//! `xvs-replay`, `xvs-rewrite`, load generators); each tool is a binary in
//! `src/bin/`. `xvsadm` is a crate of its own (`tools/xvsadm`, package
//! `xvs-adm`) so that it needs none of the director.
#![forbid(unsafe_code)]

pub mod pktgen;
pub mod replay;
pub mod schedsim;
pub mod xdpfwd;
