//! The allocation guard in front of `kafka-protocol`'s decoders.
//!
//! `kafka-protocol` 0.18 decodes an array by reading its element count from the wire and calling
//! `Vec::with_capacity(count)` before it reads a single element (see `Array` and `CompactArray`
//! in its `protocol/types.rs`). A 20-byte frame claiming 2^31 elements would make it ask for
//! gigabytes, and a failed allocation aborts the process. So before a request body reaches the
//! crate, [`check_request`] walks it with a schema of every request this broker serves and
//! refuses any array whose count is larger than the bytes left in the frame (every element takes
//! at least one byte). The walk reads exactly what the crate will read, field for field, including
//! known tagged fields (which the crate decodes from the main stream, ignoring their size), so the
//! two cannot drift apart. It allocates nothing. After it passes, the crate allocates at most a
//! small constant times the frame size (each element needs a byte of input and is at most a few
//! hundred bytes in memory); `tests::decode_allocation_is_bounded` measures it.
//!
//! Strings and byte fields are zero-copy slices of the frame in the crate, so they need no bound.

use kafka_protocol::messages::ApiKey;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GuardError {
    #[error("request body truncated at byte {0}")]
    Truncated(usize),
    #[error("array of {count} elements with {remaining} bytes left")]
    ArrayTooLong { count: u64, remaining: usize },
    #[error("varint longer than 5 bytes")]
    BadVarint,
    /// Kafka's reader refuses a tag not above the previous one (a tag past `i32::MAX` is
    /// negative there): "Invalid or out-of-order tag".
    #[error("invalid or out-of-order tag {0}")]
    TagOrder(u32),
    #[error("no schema for api key {0} version {1}")]
    NoSchema(i16, i16),
}

/// A wire type, as far as the walk needs to know it.
#[derive(Clone, Copy, Debug)]
pub enum Ty {
    /// Fixed-width field of this many bytes (bool, int8..int64, float64, uuid).
    Fixed(usize),
    /// STRING / COMPACT_STRING (nullable or not: the walk accepts both).
    Str,
    /// BYTES / COMPACT_BYTES / RECORDS.
    Bytes,
    /// An array of a primitive type.
    Array(&'static Ty),
    /// An array of structs.
    Structs(&'static [Field]),
    /// One inline struct (only used for tagged fields).
    Struct(&'static [Field]),
}

/// A field present in versions `min..=max`; a tagged field has `tag`.
#[derive(Clone, Copy, Debug)]
pub struct Field {
    pub ty: Ty,
    pub min: i16,
    pub max: i16,
    pub tag: Option<u32>,
}

const ANY: i16 = i16::MAX;
const I8: Ty = Ty::Fixed(1);
const BOOL: Ty = Ty::Fixed(1);
const I16: Ty = Ty::Fixed(2);
const I32: Ty = Ty::Fixed(4);
const I64: Ty = Ty::Fixed(8);
const UUID: Ty = Ty::Fixed(16);

const fn f(ty: Ty, min: i16, max: i16) -> Field {
    Field {
        ty,
        min,
        max,
        tag: None,
    }
}

const fn tagged(tag: u32, ty: Ty, min: i16) -> Field {
    Field {
        ty,
        min,
        max: ANY,
        tag: Some(tag),
    }
}

/// A request schema: the version where flexible (compact, tagged) encoding starts, and fields.
#[derive(Clone, Copy, Debug)]
pub struct Schema {
    pub flexible_from: i16,
    pub fields: &'static [Field],
}

// ---- the requests this broker serves (cross-checked against kafka-protocol 0.18's decoders by
// the round-trip tests below) ----

const API_VERSIONS: Schema = Schema {
    flexible_from: 3,
    fields: &[f(Ty::Str, 3, ANY), f(Ty::Str, 3, ANY)],
};

const METADATA: Schema = Schema {
    flexible_from: 9,
    fields: &[
        f(Ty::Structs(&[f(UUID, 10, ANY), f(Ty::Str, 0, ANY)]), 0, ANY),
        f(BOOL, 4, ANY),
        f(BOOL, 8, 10),
        f(BOOL, 8, ANY),
    ],
};

const PRODUCE: Schema = Schema {
    flexible_from: 9,
    fields: &[
        f(Ty::Str, 3, ANY),
        f(I16, 0, ANY),
        f(I32, 0, ANY),
        f(
            Ty::Structs(&[
                f(Ty::Str, 0, 12),
                f(UUID, 13, ANY),
                f(Ty::Structs(&[f(I32, 0, ANY), f(Ty::Bytes, 0, ANY)]), 0, ANY),
            ]),
            0,
            ANY,
        ),
    ],
};

const FETCH: Schema = Schema {
    flexible_from: 12,
    fields: &[
        tagged(0, Ty::Str, 12),
        f(I32, 0, 14),
        tagged(1, Ty::Struct(&[f(I32, 15, ANY), f(I64, 15, ANY)]), 15),
        f(I32, 0, ANY),
        f(I32, 0, ANY),
        f(I32, 3, ANY),
        f(I8, 4, ANY),
        f(I32, 7, ANY),
        f(I32, 7, ANY),
        f(
            Ty::Structs(&[
                f(Ty::Str, 0, 12),
                f(UUID, 13, ANY),
                f(
                    Ty::Structs(&[
                        f(I32, 0, ANY),
                        f(I32, 9, ANY),
                        f(I64, 0, ANY),
                        f(I32, 12, ANY),
                        f(I64, 5, ANY),
                        f(I32, 0, ANY),
                        tagged(0, UUID, 17),
                        tagged(1, I64, 18),
                    ]),
                    0,
                    ANY,
                ),
            ]),
            0,
            ANY,
        ),
        f(
            Ty::Structs(&[
                f(Ty::Str, 7, 12),
                f(UUID, 13, ANY),
                f(Ty::Array(&I32), 7, ANY),
            ]),
            7,
            ANY,
        ),
        f(Ty::Str, 11, ANY),
    ],
};

const LIST_OFFSETS: Schema = Schema {
    flexible_from: 6,
    fields: &[
        f(I32, 0, ANY),
        f(I8, 2, ANY),
        f(
            Ty::Structs(&[
                f(Ty::Str, 0, ANY),
                f(
                    Ty::Structs(&[f(I32, 0, ANY), f(I32, 4, ANY), f(I64, 0, ANY), f(I32, 0, 0)]),
                    0,
                    ANY,
                ),
            ]),
            0,
            ANY,
        ),
        f(I32, 10, ANY),
    ],
};

const OFFSET_FOR_LEADER_EPOCH: Schema = Schema {
    flexible_from: 4,
    fields: &[
        f(I32, 3, ANY),
        f(
            Ty::Structs(&[
                f(Ty::Str, 0, ANY),
                f(
                    Ty::Structs(&[f(I32, 0, ANY), f(I32, 2, ANY), f(I32, 0, ANY)]),
                    0,
                    ANY,
                ),
            ]),
            0,
            ANY,
        ),
    ],
};

const INIT_PRODUCER_ID: Schema = Schema {
    flexible_from: 2,
    fields: &[
        f(Ty::Str, 0, ANY),
        f(I32, 0, ANY),
        f(I64, 3, ANY),
        f(I16, 3, ANY),
        f(BOOL, 6, ANY),
    ],
};

const CREATE_TOPICS: Schema = Schema {
    flexible_from: 5,
    fields: &[
        f(
            Ty::Structs(&[
                f(Ty::Str, 0, ANY),
                f(I32, 0, ANY),
                f(I16, 0, ANY),
                f(
                    Ty::Structs(&[f(I32, 0, ANY), f(Ty::Array(&I32), 0, ANY)]),
                    0,
                    ANY,
                ),
                f(
                    Ty::Structs(&[f(Ty::Str, 0, ANY), f(Ty::Str, 0, ANY)]),
                    0,
                    ANY,
                ),
            ]),
            0,
            ANY,
        ),
        f(I32, 0, ANY),
        f(BOOL, 1, ANY),
    ],
};

const DELETE_TOPICS: Schema = Schema {
    flexible_from: 4,
    fields: &[
        f(Ty::Structs(&[f(Ty::Str, 6, ANY), f(UUID, 6, ANY)]), 6, ANY),
        f(Ty::Array(&Ty::Str), 0, 5),
        f(I32, 0, ANY),
    ],
};

const CREATE_PARTITIONS: Schema = Schema {
    flexible_from: 2,
    fields: &[
        f(
            Ty::Structs(&[
                f(Ty::Str, 0, ANY),
                f(I32, 0, ANY),
                f(Ty::Structs(&[f(Ty::Array(&I32), 0, ANY)]), 0, ANY),
            ]),
            0,
            ANY,
        ),
        f(I32, 0, ANY),
        f(BOOL, 0, ANY),
    ],
};

const DESCRIBE_CONFIGS: Schema = Schema {
    flexible_from: 4,
    fields: &[
        f(
            Ty::Structs(&[
                f(I8, 0, ANY),
                f(Ty::Str, 0, ANY),
                f(Ty::Array(&Ty::Str), 0, ANY),
            ]),
            0,
            ANY,
        ),
        f(BOOL, 1, ANY),
        f(BOOL, 3, ANY),
    ],
};

const ALTER_CONFIGS: Schema = Schema {
    flexible_from: 2,
    fields: &[
        f(
            Ty::Structs(&[
                f(I8, 0, ANY),
                f(Ty::Str, 0, ANY),
                f(
                    Ty::Structs(&[f(Ty::Str, 0, ANY), f(Ty::Str, 0, ANY)]),
                    0,
                    ANY,
                ),
            ]),
            0,
            ANY,
        ),
        f(BOOL, 0, ANY),
    ],
};

const INCREMENTAL_ALTER_CONFIGS: Schema = Schema {
    flexible_from: 1,
    fields: &[
        f(
            Ty::Structs(&[
                f(I8, 0, ANY),
                f(Ty::Str, 0, ANY),
                f(
                    Ty::Structs(&[f(Ty::Str, 0, ANY), f(I8, 0, ANY), f(Ty::Str, 0, ANY)]),
                    0,
                    ANY,
                ),
            ]),
            0,
            ANY,
        ),
        f(BOOL, 0, ANY),
    ],
};

const DELETE_RECORDS: Schema = Schema {
    flexible_from: 2,
    fields: &[
        f(
            Ty::Structs(&[
                f(Ty::Str, 0, ANY),
                f(Ty::Structs(&[f(I32, 0, ANY), f(I64, 0, ANY)]), 0, ANY),
            ]),
            0,
            ANY,
        ),
        f(I32, 0, ANY),
    ],
};

const DESCRIBE_CLUSTER: Schema = Schema {
    flexible_from: 0,
    fields: &[f(BOOL, 0, ANY), f(I8, 1, ANY), f(BOOL, 2, ANY)],
};

// Consumer groups (the group coordinator's APIs). None of these requests has tagged fields.

const FIND_COORDINATOR: Schema = Schema {
    flexible_from: 3,
    fields: &[
        f(Ty::Str, 0, 3),
        f(I8, 1, ANY),
        f(Ty::Array(&Ty::Str), 4, ANY),
    ],
};

const JOIN_GROUP: Schema = Schema {
    flexible_from: 6,
    fields: &[
        f(Ty::Str, 0, ANY),
        f(I32, 0, ANY),
        f(I32, 1, ANY),
        f(Ty::Str, 0, ANY),
        f(Ty::Str, 5, ANY),
        f(Ty::Str, 0, ANY),
        f(
            Ty::Structs(&[f(Ty::Str, 0, ANY), f(Ty::Bytes, 0, ANY)]),
            0,
            ANY,
        ),
        f(Ty::Str, 8, ANY),
    ],
};

const SYNC_GROUP: Schema = Schema {
    flexible_from: 4,
    fields: &[
        f(Ty::Str, 0, ANY),
        f(I32, 0, ANY),
        f(Ty::Str, 0, ANY),
        f(Ty::Str, 3, ANY),
        f(Ty::Str, 5, ANY),
        f(Ty::Str, 5, ANY),
        f(
            Ty::Structs(&[f(Ty::Str, 0, ANY), f(Ty::Bytes, 0, ANY)]),
            0,
            ANY,
        ),
    ],
};

const HEARTBEAT: Schema = Schema {
    flexible_from: 4,
    fields: &[
        f(Ty::Str, 0, ANY),
        f(I32, 0, ANY),
        f(Ty::Str, 0, ANY),
        f(Ty::Str, 3, ANY),
    ],
};

const LEAVE_GROUP: Schema = Schema {
    flexible_from: 4,
    fields: &[
        f(Ty::Str, 0, ANY),
        f(Ty::Str, 0, 2),
        f(
            Ty::Structs(&[f(Ty::Str, 3, ANY), f(Ty::Str, 3, ANY), f(Ty::Str, 5, ANY)]),
            3,
            ANY,
        ),
    ],
};

const OFFSET_COMMIT: Schema = Schema {
    flexible_from: 8,
    fields: &[
        f(Ty::Str, 0, ANY),
        f(I32, 1, ANY),
        f(Ty::Str, 1, ANY),
        f(Ty::Str, 7, ANY),
        f(I64, 2, 4),
        f(
            Ty::Structs(&[
                f(Ty::Str, 0, ANY),
                f(
                    Ty::Structs(&[
                        f(I32, 0, ANY),
                        f(I64, 0, ANY),
                        f(I32, 6, ANY),
                        f(I64, 1, 1),
                        f(Ty::Str, 0, ANY),
                    ]),
                    0,
                    ANY,
                ),
            ]),
            0,
            ANY,
        ),
    ],
};

const OFFSET_FETCH: Schema = Schema {
    flexible_from: 6,
    fields: &[
        f(Ty::Str, 0, 7),
        f(
            Ty::Structs(&[f(Ty::Str, 0, ANY), f(Ty::Array(&I32), 0, ANY)]),
            0,
            7,
        ),
        f(
            Ty::Structs(&[
                f(Ty::Str, 8, ANY),
                f(Ty::Str, 9, ANY),
                f(I32, 9, ANY),
                f(
                    Ty::Structs(&[f(Ty::Str, 8, ANY), f(Ty::Array(&I32), 8, ANY)]),
                    8,
                    ANY,
                ),
            ]),
            8,
            ANY,
        ),
        f(BOOL, 7, ANY),
    ],
};

const DESCRIBE_GROUPS: Schema = Schema {
    flexible_from: 5,
    fields: &[f(Ty::Array(&Ty::Str), 0, ANY), f(BOOL, 3, ANY)],
};

const LIST_GROUPS: Schema = Schema {
    flexible_from: 3,
    fields: &[
        f(Ty::Array(&Ty::Str), 4, ANY),
        f(Ty::Array(&Ty::Str), 5, ANY),
    ],
};

const DELETE_GROUPS: Schema = Schema {
    flexible_from: 2,
    fields: &[f(Ty::Array(&Ty::Str), 0, ANY)],
};

const OFFSET_DELETE: Schema = Schema {
    flexible_from: ANY,
    fields: &[
        f(Ty::Str, 0, ANY),
        f(
            Ty::Structs(&[
                f(Ty::Str, 0, ANY),
                f(Ty::Structs(&[f(I32, 0, ANY)]), 0, ANY),
            ]),
            0,
            ANY,
        ),
    ],
};

const ADD_PARTITIONS_TO_TXN: Schema = Schema {
    flexible_from: 3,
    fields: &[
        f(
            Ty::Structs(&[
                f(Ty::Str, 4, ANY),
                f(I64, 4, ANY),
                f(I16, 4, ANY),
                f(BOOL, 4, ANY),
                f(Ty::Structs(TXN_TOPICS), 4, ANY),
            ]),
            4,
            ANY,
        ),
        f(Ty::Str, 0, 3),
        f(I64, 0, 3),
        f(I16, 0, 3),
        f(Ty::Structs(TXN_TOPICS), 0, 3),
    ],
};

/// A topic name and its partition indexes (AddPartitionsToTxn).
const TXN_TOPICS: &[Field] = &[f(Ty::Str, 0, ANY), f(Ty::Array(&I32), 0, ANY)];

const ADD_OFFSETS_TO_TXN: Schema = Schema {
    flexible_from: 3,
    fields: &[
        f(Ty::Str, 0, ANY),
        f(I64, 0, ANY),
        f(I16, 0, ANY),
        f(Ty::Str, 0, ANY),
    ],
};

const TXN_OFFSET_COMMIT: Schema = Schema {
    flexible_from: 3,
    fields: &[
        f(Ty::Str, 0, ANY),
        f(Ty::Str, 0, ANY),
        f(I64, 0, ANY),
        f(I16, 0, ANY),
        f(I32, 3, ANY),
        f(Ty::Str, 3, ANY),
        f(Ty::Str, 3, ANY),
        f(
            Ty::Structs(&[
                f(Ty::Str, 0, ANY),
                f(
                    Ty::Structs(&[
                        f(I32, 0, ANY),
                        f(I64, 0, ANY),
                        f(I32, 2, ANY),
                        f(Ty::Str, 0, ANY),
                    ]),
                    0,
                    ANY,
                ),
            ]),
            0,
            ANY,
        ),
    ],
};

const END_TXN: Schema = Schema {
    flexible_from: 3,
    fields: &[
        f(Ty::Str, 0, ANY),
        f(I64, 0, ANY),
        f(I16, 0, ANY),
        f(BOOL, 0, ANY),
    ],
};

const DESCRIBE_TRANSACTIONS: Schema = Schema {
    flexible_from: 0,
    fields: &[f(Ty::Array(&Ty::Str), 0, ANY)],
};

const LIST_TRANSACTIONS: Schema = Schema {
    flexible_from: 0,
    fields: &[
        f(Ty::Array(&Ty::Str), 0, ANY),
        f(Ty::Array(&I64), 0, ANY),
        f(I64, 1, ANY),
        f(Ty::Str, 2, ANY),
    ],
};

const DESCRIBE_PRODUCERS: Schema = Schema {
    flexible_from: 0,
    fields: &[f(Ty::Structs(TOPIC_PARTITION_INDEXES), 0, ANY)],
};

const SASL_HANDSHAKE: Schema = Schema {
    flexible_from: ANY,
    fields: &[f(Ty::Str, 0, ANY)],
};

const SASL_AUTHENTICATE: Schema = Schema {
    flexible_from: 2,
    fields: &[f(Ty::Bytes, 0, ANY)],
};

const DESCRIBE_USER_SCRAM_CREDENTIALS: Schema = Schema {
    flexible_from: 0,
    fields: &[f(Ty::Structs(&[f(Ty::Str, 0, ANY)]), 0, ANY)],
};

const ALTER_USER_SCRAM_CREDENTIALS: Schema = Schema {
    flexible_from: 0,
    fields: &[
        f(Ty::Structs(&[f(Ty::Str, 0, ANY), f(I8, 0, ANY)]), 0, ANY),
        f(
            Ty::Structs(&[
                f(Ty::Str, 0, ANY),
                f(I8, 0, ANY),
                f(I32, 0, ANY),
                f(Ty::Bytes, 0, ANY),
                f(Ty::Bytes, 0, ANY),
            ]),
            0,
            ANY,
        ),
    ],
};

/// DescribeAcls, and one DeleteAcls filter: type, name, pattern (v1+), principal, host,
/// operation, permission.
const ACL_FILTER: &[Field] = &[
    f(I8, 0, ANY),
    f(Ty::Str, 0, ANY),
    f(I8, 1, ANY),
    f(Ty::Str, 0, ANY),
    f(Ty::Str, 0, ANY),
    f(I8, 0, ANY),
    f(I8, 0, ANY),
];

const DESCRIBE_ACLS: Schema = Schema {
    flexible_from: 2,
    fields: ACL_FILTER,
};

const CREATE_ACLS: Schema = Schema {
    flexible_from: 2,
    fields: &[f(Ty::Structs(ACL_FILTER), 0, ANY)],
};

const DELETE_ACLS: Schema = Schema {
    flexible_from: 2,
    fields: &[f(Ty::Structs(ACL_FILTER), 0, ANY)],
};

// Cluster-admin APIs a single-copy broker answers (api/hosted.rs). None has tagged fields.

/// A topic name and partition indexes: DescribeLogDirs, ElectLeaders, AlterReplicaLogDirs,
/// ListPartitionReassignments.
const TOPIC_PARTITION_INDEXES: &[Field] = &[f(Ty::Str, 0, ANY), f(Ty::Array(&I32), 0, ANY)];

const DESCRIBE_LOG_DIRS: Schema = Schema {
    flexible_from: 2,
    fields: &[f(Ty::Structs(TOPIC_PARTITION_INDEXES), 0, ANY)],
};

const ALTER_REPLICA_LOG_DIRS: Schema = Schema {
    flexible_from: 2,
    fields: &[f(
        Ty::Structs(&[
            f(Ty::Str, 0, ANY),
            f(Ty::Structs(TOPIC_PARTITION_INDEXES), 0, ANY),
        ]),
        0,
        ANY,
    )],
};

const ELECT_LEADERS: Schema = Schema {
    flexible_from: 2,
    fields: &[
        f(I8, 1, ANY),
        f(Ty::Structs(TOPIC_PARTITION_INDEXES), 0, ANY),
        f(I32, 0, ANY),
    ],
};

const ALTER_PARTITION_REASSIGNMENTS: Schema = Schema {
    flexible_from: 0,
    fields: &[
        f(I32, 0, ANY),
        f(BOOL, 1, ANY),
        f(
            Ty::Structs(&[
                f(Ty::Str, 0, ANY),
                f(
                    Ty::Structs(&[f(I32, 0, ANY), f(Ty::Array(&I32), 0, ANY)]),
                    0,
                    ANY,
                ),
            ]),
            0,
            ANY,
        ),
    ],
};

const LIST_PARTITION_REASSIGNMENTS: Schema = Schema {
    flexible_from: 0,
    fields: &[
        f(I32, 0, ANY),
        f(Ty::Structs(TOPIC_PARTITION_INDEXES), 0, ANY),
    ],
};

/// The schema of a request, for the APIs this broker serves.
pub fn schema(api_key: ApiKey) -> Option<&'static Schema> {
    Some(match api_key {
        ApiKey::ApiVersions => &API_VERSIONS,
        ApiKey::Metadata => &METADATA,
        ApiKey::Produce => &PRODUCE,
        ApiKey::Fetch => &FETCH,
        ApiKey::ListOffsets => &LIST_OFFSETS,
        ApiKey::OffsetForLeaderEpoch => &OFFSET_FOR_LEADER_EPOCH,
        ApiKey::InitProducerId => &INIT_PRODUCER_ID,
        ApiKey::CreateTopics => &CREATE_TOPICS,
        ApiKey::DeleteTopics => &DELETE_TOPICS,
        ApiKey::CreatePartitions => &CREATE_PARTITIONS,
        ApiKey::DescribeConfigs => &DESCRIBE_CONFIGS,
        ApiKey::AlterConfigs => &ALTER_CONFIGS,
        ApiKey::IncrementalAlterConfigs => &INCREMENTAL_ALTER_CONFIGS,
        ApiKey::DeleteRecords => &DELETE_RECORDS,
        ApiKey::DescribeCluster => &DESCRIBE_CLUSTER,
        ApiKey::FindCoordinator => &FIND_COORDINATOR,
        ApiKey::JoinGroup => &JOIN_GROUP,
        ApiKey::SyncGroup => &SYNC_GROUP,
        ApiKey::Heartbeat => &HEARTBEAT,
        ApiKey::LeaveGroup => &LEAVE_GROUP,
        ApiKey::OffsetCommit => &OFFSET_COMMIT,
        ApiKey::OffsetFetch => &OFFSET_FETCH,
        ApiKey::DescribeGroups => &DESCRIBE_GROUPS,
        ApiKey::ListGroups => &LIST_GROUPS,
        ApiKey::DeleteGroups => &DELETE_GROUPS,
        ApiKey::OffsetDelete => &OFFSET_DELETE,
        ApiKey::SaslHandshake => &SASL_HANDSHAKE,
        ApiKey::SaslAuthenticate => &SASL_AUTHENTICATE,
        ApiKey::DescribeUserScramCredentials => &DESCRIBE_USER_SCRAM_CREDENTIALS,
        ApiKey::AlterUserScramCredentials => &ALTER_USER_SCRAM_CREDENTIALS,
        ApiKey::DescribeAcls => &DESCRIBE_ACLS,
        ApiKey::CreateAcls => &CREATE_ACLS,
        ApiKey::DeleteAcls => &DELETE_ACLS,
        ApiKey::DescribeLogDirs => &DESCRIBE_LOG_DIRS,
        ApiKey::AlterReplicaLogDirs => &ALTER_REPLICA_LOG_DIRS,
        ApiKey::ElectLeaders => &ELECT_LEADERS,
        ApiKey::AlterPartitionReassignments => &ALTER_PARTITION_REASSIGNMENTS,
        ApiKey::ListPartitionReassignments => &LIST_PARTITION_REASSIGNMENTS,
        ApiKey::AddPartitionsToTxn => &ADD_PARTITIONS_TO_TXN,
        ApiKey::AddOffsetsToTxn => &ADD_OFFSETS_TO_TXN,
        ApiKey::TxnOffsetCommit => &TXN_OFFSET_COMMIT,
        ApiKey::EndTxn => &END_TXN,
        ApiKey::DescribeTransactions => &DESCRIBE_TRANSACTIONS,
        ApiKey::ListTransactions => &LIST_TRANSACTIONS,
        ApiKey::DescribeProducers => &DESCRIBE_PRODUCERS,
        _ => return None,
    })
}

/// Walks a request body; `Ok` means every array count in it is covered by the bytes that follow.
pub fn check_request(api_key: ApiKey, version: i16, body: &[u8]) -> Result<(), GuardError> {
    let schema = schema(api_key).ok_or(GuardError::NoSchema(api_key as i16, version))?;
    let mut walker = Walker {
        buf: body,
        total: body.len(),
        flexible: version >= schema.flexible_from,
        version,
    };
    walker.fields(schema.fields)
}

struct Walker<'a> {
    buf: &'a [u8],
    total: usize,
    flexible: bool,
    version: i16,
}

impl Walker<'_> {
    fn position(&self) -> usize {
        self.total - self.buf.len()
    }

    fn skip(&mut self, n: usize) -> Result<(), GuardError> {
        if self.buf.len() < n {
            return Err(GuardError::Truncated(self.position()));
        }
        self.buf = &self.buf[n..];
        Ok(())
    }

    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], GuardError> {
        let bytes: [u8; N] = self
            .buf
            .get(..N)
            .and_then(|b| b.try_into().ok())
            .ok_or(GuardError::Truncated(self.position()))?;
        self.buf = &self.buf[N..];
        Ok(bytes)
    }

    fn varint(&mut self) -> Result<u32, GuardError> {
        let mut value: u32 = 0;
        for i in 0..5 {
            let [byte] = self.fixed::<1>()?;
            value |= u32::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(GuardError::BadVarint)
    }

    /// A length or count: `None` for null.
    fn length(&mut self, wide: bool) -> Result<Option<u64>, GuardError> {
        if self.flexible {
            Ok(match self.varint()? {
                0 => None,
                n => Some(u64::from(n) - 1),
            })
        } else if wide {
            let n = i32::from_be_bytes(self.fixed::<4>()?);
            Ok((n >= 0).then_some(n as u64))
        } else {
            let n = i16::from_be_bytes(self.fixed::<2>()?);
            Ok((n >= 0).then_some(n as u64))
        }
    }

    fn fields(&mut self, fields: &[Field]) -> Result<(), GuardError> {
        let v = self.version;
        for field in fields {
            if field.tag.is_none() && field.min <= v && v <= field.max {
                self.ty(&field.ty)?;
            }
        }
        if self.flexible {
            let count = self.varint()?;
            let mut previous: Option<u32> = None;
            for _ in 0..count {
                let tag = self.varint()?;
                if i32::try_from(tag).is_err() || previous.is_some_and(|p| tag <= p) {
                    return Err(GuardError::TagOrder(tag));
                }
                previous = Some(tag);
                let size = self.varint()? as usize;
                let known = fields
                    .iter()
                    .find(|f| f.tag == Some(tag) && f.min <= v && v <= f.max);
                match known {
                    // The crate decodes a known tagged field from the stream, not from `size`.
                    Some(field) => self.ty(&field.ty)?,
                    None => self.skip(size)?,
                }
            }
        }
        Ok(())
    }

    fn ty(&mut self, ty: &Ty) -> Result<(), GuardError> {
        match ty {
            Ty::Fixed(n) => self.skip(*n),
            Ty::Str => match self.length(false)? {
                Some(n) => self.skip(n as usize),
                None => Ok(()),
            },
            Ty::Bytes => match self.length(true)? {
                Some(n) => self.skip(usize::try_from(n).unwrap_or(usize::MAX)),
                None => Ok(()),
            },
            Ty::Array(element) => self.array(|w| w.ty(element)),
            Ty::Structs(fields) => self.array(|w| w.fields(fields)),
            Ty::Struct(fields) => self.fields(fields),
        }
    }

    fn array(
        &mut self,
        mut element: impl FnMut(&mut Self) -> Result<(), GuardError>,
    ) -> Result<(), GuardError> {
        let Some(count) = self.length(true)? else {
            return Ok(());
        };
        if count > self.buf.len() as u64 {
            return Err(GuardError::ArrayTooLong {
                count,
                remaining: self.buf.len(),
            });
        }
        for _ in 0..count {
            let before = self.buf.len();
            element(self)?;
            if self.buf.len() == before {
                // An element of no bytes would let a count outgrow the frame.
                return Err(GuardError::ArrayTooLong {
                    count,
                    remaining: before,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
