//! Producer ids for idempotent and transactional producers, reserved from the metadata store in
//! blocks.

use magnetar_metadata::{Expect, MetadataError};
use tokio::sync::Mutex;

use super::records::Records;
use crate::error::{Error, Result};
use crate::resources::{ProducerIdBlock, FORMAT_VERSION, PRODUCER_ID_BLOCK_KEY};

/// How many producer ids one metadata write reserves.
pub const PRODUCER_ID_BLOCK: i64 = 1000;

#[derive(Debug, Default)]
struct IdRange {
    next: i64,
    end: i64,
}

/// The producer id service: the block this broker hands ids out of.
pub(crate) struct ProducerIds {
    records: Records,
    block: Mutex<IdRange>,
}

impl ProducerIds {
    pub(crate) fn new(records: Records) -> Self {
        Self {
            records,
            block: Mutex::new(IdRange::default()),
        }
    }

    /// The next id; a new block is reserved with compare-and-set when this one is used up, so
    /// ids never repeat across restarts or brokers.
    pub(crate) async fn allocate(&self) -> Result<i64> {
        let mut block = self.block.lock().await;
        if block.next >= block.end {
            for attempt in 0.. {
                if attempt == 16 {
                    return Err(Error::ConcurrentUpdate {
                        what: "the producer id block".into(),
                    });
                }
                let current = self
                    .records
                    .get::<ProducerIdBlock>(PRODUCER_ID_BLOCK_KEY)
                    .await?;
                let (start, expect) = match &current {
                    Some((b, version)) => (b.next_block_start, Expect::Version(*version)),
                    None => (0, Expect::Absent),
                };
                let next = ProducerIdBlock {
                    format_version: FORMAT_VERSION,
                    next_block_start: start + PRODUCER_ID_BLOCK,
                };
                match self
                    .records
                    .put(PRODUCER_ID_BLOCK_KEY, &next, expect)
                    .await?
                {
                    Ok(_) => {
                        *block = IdRange {
                            next: start,
                            end: start + PRODUCER_ID_BLOCK,
                        };
                        break;
                    }
                    Err(MetadataError::BadVersion { .. }) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
        }
        let id = block.next;
        block.next += 1;
        Ok(id)
    }
}
