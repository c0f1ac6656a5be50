//! Committed offsets: OffsetCommit, OffsetFetch, OffsetDelete, and the expiry of offsets past
//! `offsets_retention_ms` (Kafka's `cleanupGroupMetadata`), with the records they write.

use super::*;

impl GroupStateMachine {
    // ---- OffsetCommit ----

    pub fn commit_offsets(
        &mut self,
        req: OffsetCommitRequest,
        now_ms: i64,
    ) -> Output<OffsetCommitResponse> {
        self.commit_offsets_checked(req, now_ms, true)
    }

    /// The offsets of a committed transaction (TxnOffsetCommit, made visible by EndTxn): no
    /// membership check now (the transaction coordinator checked the producer when they were
    /// sent, and the group may have rebalanced since, as in Kafka where they are materialized by
    /// the commit marker).
    pub fn commit_transaction_offsets(
        &mut self,
        req: OffsetCommitRequest,
        now_ms: i64,
    ) -> Output<OffsetCommitResponse> {
        self.commit_offsets_checked(req, now_ms, false)
    }

    fn commit_offsets_checked(
        &mut self,
        req: OffsetCommitRequest,
        now_ms: i64,
        check_member: bool,
    ) -> Output<OffsetCommitResponse> {
        let mut fx = Effects::default();
        let all = |e: CoordinatorError| OffsetCommitResponse {
            topics: req
                .topics
                .iter()
                .map(|t| TopicResults {
                    name: t.name.clone(),
                    partitions: t
                        .partitions
                        .iter()
                        .map(|p| PartitionResult {
                            partition: p.partition,
                            error: Some(e),
                        })
                        .collect(),
                })
                .collect(),
        };
        if req.group_id.len() > STRING_BYTES_MAX {
            return fx.output(all(CoordinatorError::InvalidGroupId));
        }
        if !self.groups.contains_key(&req.group_id) {
            if req.generation_id >= 0 && check_member {
                // A generation of a group we do not know: a stale member (Kafka's answer).
                return fx.output(all(CoordinatorError::IllegalGeneration));
            }
            if self.groups.len() >= self.config.groups_per_partition_max {
                return fx.output(all(CoordinatorError::CoordinatorNotAvailable));
            }
            self.groups
                .insert(req.group_id.clone(), Group::new(&req.group_id));
        }
        let Some(group) = self.groups.get_mut(&req.group_id) else {
            return fx.output(all(CoordinatorError::Internal));
        };
        let valid = if check_member {
            validate_commit(group, &req, now_ms)
        } else if group.state == GroupState::Dead {
            Err(CoordinatorError::CoordinatorNotAvailable)
        } else {
            Ok(())
        };
        if let Err(e) = valid {
            if group.is_disposable() {
                self.groups.remove(&req.group_id);
            }
            return fx.output(all(e));
        }
        let mut response = OffsetCommitResponse {
            topics: Vec::with_capacity(req.topics.len()),
        };
        for topic in req.topics {
            let mut partitions = Vec::with_capacity(topic.partitions.len());
            for p in topic.partitions {
                let metadata = p.metadata.unwrap_or_default();
                let error = if metadata.len() > self.config.offset_metadata_max_bytes {
                    Some(CoordinatorError::OffsetMetadataTooLarge)
                } else if topic.name.len() > STRING_BYTES_MAX {
                    Some(CoordinatorError::UnknownTopicOrPartition)
                } else {
                    fx.records.push(CoordinatorRecord::OffsetCommit {
                        key: OffsetCommitKey {
                            group: req.group_id.clone(),
                            topic: topic.name.clone(),
                            partition: p.partition,
                        },
                        value: Some(OffsetCommitValue {
                            offset: p.offset,
                            leader_epoch: p.leader_epoch,
                            metadata,
                            commit_timestamp_ms: p
                                .commit_timestamp_ms
                                .filter(|t| *t >= 0)
                                .unwrap_or(now_ms),
                            expire_timestamp_ms: -1,
                        }),
                    });
                    None
                };
                partitions.push(PartitionResult {
                    partition: p.partition,
                    error,
                });
            }
            response.topics.push(TopicResults {
                name: topic.name,
                partitions,
            });
        }
        if fx.records.is_empty()
            && self
                .groups
                .get(&req.group_id)
                .is_some_and(Group::is_disposable)
        {
            self.groups.remove(&req.group_id);
        }
        self.replay_all(&fx.records);
        fx.output(response)
    }

    // ---- OffsetFetch ----

    /// Committed offsets of one group. Without transactions nothing is pending, so
    /// `require_stable` needs no waiting.
    pub fn fetch_offsets(&self, req: &OffsetFetchRequest) -> OffsetFetchResponse {
        let group = self.groups.get(&req.group_id);
        let lookup = |topic: &str, partition: i32| match group
            .and_then(|g| g.offsets.get(topic)?.get(&partition))
        {
            Some(o) => FetchedPartition {
                partition,
                offset: o.offset,
                leader_epoch: o.leader_epoch,
                metadata: o.metadata.clone(),
                error: None,
            },
            None => FetchedPartition {
                partition,
                offset: -1,
                leader_epoch: -1,
                metadata: String::new(),
                error: None,
            },
        };
        let topics = match &req.topics {
            Some(topics) => topics
                .iter()
                .map(|t| FetchedTopic {
                    name: t.name.clone(),
                    partitions: t.partitions.iter().map(|p| lookup(&t.name, *p)).collect(),
                })
                .collect(),
            None => group
                .map(|g| {
                    g.offsets
                        .iter()
                        .map(|(topic, partitions)| FetchedTopic {
                            name: topic.clone(),
                            partitions: partitions.keys().map(|p| lookup(topic, *p)).collect(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
        };
        OffsetFetchResponse {
            error: None,
            topics,
        }
    }

    // ---- OffsetDelete ----

    pub fn delete_offsets(&mut self, req: &OffsetDeleteRequest) -> Output<OffsetDeleteResponse> {
        let mut fx = Effects::default();
        let top = |e| OffsetDeleteResponse {
            error: Some(e),
            topics: Vec::new(),
        };
        let Some(group) = self.groups.get(&req.group_id) else {
            return fx.output(top(CoordinatorError::GroupIdNotFound));
        };
        // Topics the active group consumes; `None` means "cannot tell, so all of them".
        let subscribed: Option<Option<BTreeSet<String>>> = match group.state {
            GroupState::Dead => return fx.output(top(CoordinatorError::GroupIdNotFound)),
            GroupState::Empty => Some(Some(BTreeSet::new())),
            _ if group.protocol_type.as_deref() == Some("consumer") => {
                let mut topics = BTreeSet::new();
                let mut known = true;
                for m in group.members.values() {
                    let metadata = match group.protocol_name.as_deref() {
                        Some(p) => m.metadata(Some(p)),
                        None => m
                            .protocols
                            .first()
                            .map(|p| p.metadata.clone())
                            .unwrap_or_default(),
                    };
                    match subscribed_topics(&metadata) {
                        Some(t) => topics.extend(t),
                        None => known = false,
                    }
                }
                Some(known.then_some(topics))
            }
            _ => None,
        };
        let Some(subscribed) = subscribed else {
            return fx.output(top(CoordinatorError::NonEmptyGroup));
        };
        let mut response = OffsetDeleteResponse::default();
        for topic in &req.topics {
            let in_use = subscribed.as_ref().is_none_or(|s| s.contains(&topic.name));
            let mut partitions = Vec::with_capacity(topic.partitions.len());
            for &partition in &topic.partitions {
                let error = if in_use {
                    Some(CoordinatorError::GroupSubscribedToTopic)
                } else {
                    if group
                        .offsets
                        .get(&topic.name)
                        .is_some_and(|p| p.contains_key(&partition))
                    {
                        fx.records
                            .push(offset_tombstone(&req.group_id, &topic.name, partition));
                    }
                    None
                };
                partitions.push(PartitionResult { partition, error });
            }
            response.topics.push(TopicResults {
                name: topic.name.clone(),
                partitions,
            });
        }
        self.replay_all(&fx.records);
        fx.output(response)
    }

    /// KIP-211: offsets of an Empty group expire `offsets_retention_ms` after the group became
    /// empty (after their commit for groups that never had members); offsets of an active
    /// consumer group expire only for topics no member subscribes to. A group left Empty with no
    /// offsets is removed with a tombstone.
    pub(super) fn expire_offsets(&mut self, now_ms: i64) -> Vec<CoordinatorRecord> {
        let retention = self.config.offsets_retention_ms;
        let mut expired_groups = Vec::new();
        let mut all_records = Vec::new();
        for group in self.groups.values() {
            let mut records = Vec::new();
            let subscribed: Option<BTreeSet<String>> = match group.state {
                GroupState::Empty => None,
                _ if group.protocol_type.as_deref() == Some("consumer")
                    && group.protocol_name.is_some() =>
                {
                    let mut topics = BTreeSet::new();
                    let mut known = true;
                    for m in group.members.values() {
                        match subscribed_topics(&m.metadata(group.protocol_name.as_deref())) {
                            Some(t) => topics.extend(t),
                            None => known = false,
                        }
                    }
                    if !known {
                        continue;
                    }
                    Some(topics)
                }
                _ => continue,
            };
            for (topic, partitions) in &group.offsets {
                if subscribed.as_ref().is_some_and(|s| s.contains(topic)) {
                    continue;
                }
                for (partition, o) in partitions {
                    let base = if subscribed.is_none()
                        && group.protocol_type.is_some()
                        && group.state_timestamp_ms >= 0
                    {
                        group.state_timestamp_ms
                    } else {
                        o.commit_timestamp_ms
                    };
                    let expires_at = if o.expire_timestamp_ms >= 0 {
                        o.expire_timestamp_ms
                    } else {
                        base.saturating_add(retention)
                    };
                    if now_ms >= expires_at {
                        records.push(offset_tombstone(&group.id, topic, *partition));
                    }
                }
            }
            let all_gone = records.len() == group.offset_count();
            if group.state == GroupState::Empty && group.members.is_empty() && all_gone {
                records.push(CoordinatorRecord::GroupMetadata {
                    key: GroupMetadataKey {
                        group: group.id.clone(),
                    },
                    value: None,
                });
                expired_groups.push(group.id.clone());
            }
            all_records.extend(records);
        }
        self.replay_all(&all_records);
        for id in expired_groups {
            if self
                .groups
                .get(&id)
                .is_some_and(|g| g.state == GroupState::Empty && g.members.is_empty())
            {
                self.groups.remove(&id);
            }
        }
        all_records
    }
}

pub(super) fn offset_record(
    group: &str,
    topic: &str,
    partition: i32,
    o: &CommittedOffset,
) -> CoordinatorRecord {
    CoordinatorRecord::OffsetCommit {
        key: OffsetCommitKey {
            group: group.to_string(),
            topic: topic.to_string(),
            partition,
        },
        value: Some(OffsetCommitValue {
            offset: o.offset,
            leader_epoch: o.leader_epoch,
            metadata: o.metadata.clone(),
            commit_timestamp_ms: o.commit_timestamp_ms,
            expire_timestamp_ms: o.expire_timestamp_ms,
        }),
    }
}

pub(super) fn offset_tombstone(group: &str, topic: &str, partition: i32) -> CoordinatorRecord {
    CoordinatorRecord::OffsetCommit {
        key: OffsetCommitKey {
            group: group.to_string(),
            topic: topic.to_string(),
            partition,
        },
        value: None,
    }
}

fn validate_commit(
    group: &mut Group,
    req: &OffsetCommitRequest,
    now_ms: i64,
) -> Result<(), CoordinatorError> {
    if group.state == GroupState::Dead {
        return Err(CoordinatorError::CoordinatorNotAvailable);
    }
    if req.generation_id < 0 && group.state == GroupState::Empty {
        // Offsets stored for a consumer that does its own assignment.
        return Ok(());
    }
    if group.is_fenced(req.group_instance_id.as_deref(), &req.member_id) {
        return Err(CoordinatorError::FencedInstanceId);
    }
    let generation = group.generation_id;
    let state = group.state;
    let Some(member) = group.members.get_mut(&req.member_id) else {
        return Err(CoordinatorError::UnknownMemberId);
    };
    if req.generation_id != generation {
        return Err(CoordinatorError::IllegalGeneration);
    }
    if state == GroupState::CompletingRebalance {
        return Err(CoordinatorError::RebalanceInProgress);
    }
    member.heartbeat_deadline_ms = now_ms + i64::from(member.session_timeout_ms);
    Ok(())
}
