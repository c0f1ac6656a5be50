//! FLOW: permits for a consumer (counted in messages, as Pulsar does; a batch uses as many
//! permits as it has messages, and is sent whole while any permit is left).

use crate::connection::{Connection, Handled, Reply};
use crate::proto::BaseCommand;

impl Connection {
    pub(crate) fn on_flow(&mut self, command: BaseCommand) -> Handled {
        let Some(flow) = command.flow else {
            return Ok(Reply::Close("FLOW without its body".into()));
        };
        match self.consumers.get(&flow.consumer_id) {
            Some(handle) => handle
                .subscription
                .add_permits((self.id, flow.consumer_id), flow.message_permits),
            None => {
                tracing::debug!(peer = %self.peer, consumer_id = flow.consumer_id, "flow for an unknown consumer");
            }
        }
        Ok(Reply::Nothing)
    }
}
