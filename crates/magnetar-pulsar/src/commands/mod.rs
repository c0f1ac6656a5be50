//! One file per command (or per small family of commands), each an `impl Connection` block.
//!
//! A handler returns [`crate::connection::Handled`]: `Ok` with the frame it answers (or none,
//! or a close), `Err` with a [`crate::error::CommandFailure`] naming the code, the message and
//! the frame that carries them (ERROR to a request id, SEND_ERROR to a producer and sequence
//! id, a failed lookup or ack response). `Connection::handle` writes refusals, so no handler
//! sends its own error frame; domain errors reach it through `OrAnswer::or_answer` and `?`.

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

pub(crate) use schema::version_bytes as schema_version_bytes;
