//! The control plane: the service table operators change ([`table`]), the
//! control socket's protocol ([`proto`]).

pub mod proto;
pub mod table;
