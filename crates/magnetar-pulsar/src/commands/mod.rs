//! One file per command (or per small family of commands), each an `impl Connection` block.

mod ack;
pub(crate) mod auth;
mod authz;
mod connect;
mod flow;
mod lookup;
mod producer;
mod schema;
mod seek;
mod send;
mod subscribe;
