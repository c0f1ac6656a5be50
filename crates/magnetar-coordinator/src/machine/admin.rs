//! DescribeGroups, ListGroups and DeleteGroups: the group administration APIs.

use super::offsets::offset_tombstone;
use super::*;

impl GroupStateMachine {
    // ---- DescribeGroups / ListGroups ----

    pub fn describe_group(&self, group_id: &str) -> DescribedGroup {
        let Some(g) = self.groups.get(group_id) else {
            return DescribedGroup {
                group_id: group_id.to_string(),
                error: None,
                state: GroupState::Dead,
                protocol_type: String::new(),
                protocol_data: String::new(),
                members: Vec::new(),
            };
        };
        let stable = g.state == GroupState::Stable;
        DescribedGroup {
            group_id: g.id.clone(),
            error: None,
            state: g.state,
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            protocol_data: if stable {
                g.protocol_name.clone().unwrap_or_default()
            } else {
                String::new()
            },
            members: g
                .members
                .values()
                .map(|m| DescribedMember {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: if stable {
                        m.metadata(g.protocol_name.as_deref())
                    } else {
                        Bytes::new()
                    },
                    assignment: if stable {
                        m.assignment.clone()
                    } else {
                        Bytes::new()
                    },
                })
                .collect(),
        }
    }

    /// Groups whose state is in `states` (every state when empty).
    pub fn list_groups(&self, states: &[GroupState]) -> Vec<ListedGroup> {
        self.groups
            .values()
            .filter(|g| states.is_empty() || states.contains(&g.state))
            .map(|g| ListedGroup {
                group_id: g.id.clone(),
                protocol_type: g.protocol_type.clone().unwrap_or_default(),
                state: g.state,
            })
            .collect()
    }

    // ---- DeleteGroups ----

    pub fn delete_groups(
        &mut self,
        group_ids: &[String],
    ) -> Output<Vec<(String, Option<CoordinatorError>)>> {
        let mut fx = Effects::default();
        let mut results = Vec::with_capacity(group_ids.len());
        for id in group_ids {
            let error = match self.groups.get(id) {
                None => Some(CoordinatorError::GroupIdNotFound),
                Some(g) => match g.state {
                    GroupState::Dead => Some(CoordinatorError::GroupIdNotFound),
                    GroupState::Empty => {
                        let mut records = Vec::new();
                        for (topic, partitions) in &g.offsets {
                            for partition in partitions.keys() {
                                records.push(offset_tombstone(id, topic, *partition));
                            }
                        }
                        records.push(CoordinatorRecord::GroupMetadata {
                            key: GroupMetadataKey { group: id.clone() },
                            value: None,
                        });
                        self.replay_all(&records);
                        // A group that never had records (no commit, no generation) goes too.
                        self.groups.remove(id);
                        fx.records.extend(records);
                        None
                    }
                    _ => Some(CoordinatorError::NonEmptyGroup),
                },
            };
            results.push((id.clone(), error));
        }
        fx.output(results)
    }
}
