//! The Kafka APIs: one module per API, each with one handler of one shape (see [`dispatch`]).
//! Read [`versions`] for what is served, [`context`] for what a handler works with, [`dispatch`]
//! for how a request reaches its handler.

pub mod acls;
pub mod alter_configs;
pub mod alter_partition_reassignments;
pub mod alter_replica_log_dirs;
pub mod alter_user_scram_credentials;
pub mod api_versions;
mod cluster_view;
pub mod context;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_groups;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_groups;
pub mod describe_log_dirs;
pub mod describe_producers;
pub mod describe_user_scram_credentials;
pub mod dispatch;
pub mod elect_leaders;
mod error_messages;
pub mod fetch;
pub mod find_coordinator;
mod group_common;
pub mod heartbeat;
mod hosted;
pub mod incremental_alter_configs;
pub mod init_producer_id;
pub mod join_group;
mod leader_epoch;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod list_partition_reassignments;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod offset_for_leader_epoch;
pub mod produce;
mod replica_assignment;
pub mod sync_group;
pub mod transactions;
pub mod versions;

pub use context::{is_internal, Context, Envelope, Session, OFFSETS_TOPIC};
pub use dispatch::{handle, Outcome};
pub use versions::{supported, supported_on, SASL_SUPPORTED, SUPPORTED};
