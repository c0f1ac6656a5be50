//! A map of the keys under a prefix, fed by a watch: what a broker knows of the live brokers and
//! the bundle owners without asking the store on every lookup.
//!
//! Events are notifications, not a log: on each event the key is read again, and after a lag
//! (or a failed read) everything under the prefix is read again, so the map converges to the
//! store whatever order the events come in.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use magnetar_metadata::{MetadataError, MetadataStore, Watch, WatchError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Pause before reading again after the store failed (a retry pace, not an ordering device).
const RETRY_DELAY: Duration = Duration::from_millis(200);

/// Most keys a view reads under its prefix (a limit on what a full read may hold).
const VIEW_KEYS_MAX: usize = 1_000_000;

pub(crate) type Parse<K> = Arc<dyn Fn(&str) -> Option<K> + Send + Sync>;
pub(crate) type Decode<V> = Arc<dyn Fn(&[u8]) -> Option<V> + Send + Sync>;

/// Starts a view: watches `prefix`, reads everything under it (so the map is complete when this
/// returns), then follows the watch on a task the caller owns. `parse` picks the keys the view
/// holds; `decode` reads their values (a value it cannot read leaves the key out, logged).
pub(crate) async fn spawn_view<K, V>(
    store: Arc<dyn MetadataStore>,
    prefix: String,
    parse: Parse<K>,
    decode: Decode<V>,
) -> Result<(watch::Receiver<Arc<BTreeMap<K, V>>>, JoinHandle<()>), MetadataError>
where
    K: Ord + Clone + Send + Sync + 'static,
    V: PartialEq + Clone + Send + Sync + 'static,
{
    let events = store.watch(&prefix)?;
    let map = read_all(store.as_ref(), &prefix, &parse, &decode).await?;
    let (sender, receiver) = watch::channel(Arc::new(map));
    let task = tokio::spawn(follow(store, prefix, parse, decode, events, sender));
    Ok((receiver, task))
}

async fn follow<K, V>(
    store: Arc<dyn MetadataStore>,
    prefix: String,
    parse: Parse<K>,
    decode: Decode<V>,
    mut events: Watch,
    sender: watch::Sender<Arc<BTreeMap<K, V>>>,
) where
    K: Ord + Clone + Send + Sync + 'static,
    V: PartialEq + Clone + Send + Sync + 'static,
{
    let mut stale = false;
    loop {
        if stale {
            match read_all(store.as_ref(), &prefix, &parse, &decode).await {
                Ok(map) => {
                    stale = false;
                    sender.send_if_modified(|current| {
                        let changed = **current != map;
                        *current = Arc::new(map);
                        changed
                    });
                }
                Err(MetadataError::Closed) => return,
                Err(err) => {
                    tracing::warn!(%prefix, %err, "cluster view: reading again failed");
                    tokio::time::sleep(RETRY_DELAY).await;
                    continue;
                }
            }
        }
        let event = match events.recv().await {
            Ok(event) => event,
            Err(WatchError::Lagged { missed_events }) => {
                tracing::info!(%prefix, missed_events, "cluster view lagged; reading again");
                stale = true;
                continue;
            }
            Err(WatchError::Closed) => return,
        };
        let Some(key) = parse(&event.key) else {
            continue;
        };
        let value = match store.get(&event.key).await {
            Ok(found) => found.and_then(|found| decode_logged(&decode, &event.key, &found.value)),
            Err(MetadataError::Closed) => return,
            Err(err) => {
                tracing::warn!(key = %event.key, %err, "cluster view: read failed");
                stale = true;
                continue;
            }
        };
        sender.send_if_modified(|current| {
            if current.get(&key) == value.as_ref() {
                return false;
            }
            let mut map = (**current).clone();
            match value {
                Some(value) => map.insert(key, value),
                None => map.remove(&key),
            };
            *current = Arc::new(map);
            true
        });
    }
}

fn decode_logged<V>(decode: &Decode<V>, key: &str, value: &[u8]) -> Option<V> {
    let decoded = decode(value);
    if decoded.is_none() {
        tracing::warn!(%key, "cluster view: value cannot be read; left out");
    }
    decoded
}

/// Every key under `prefix` that `parse` accepts, with its decoded value.
async fn read_all<K: Ord, V>(
    store: &dyn MetadataStore,
    prefix: &str,
    parse: &Parse<K>,
    decode: &Decode<V>,
) -> Result<BTreeMap<K, V>, MetadataError> {
    let mut map = BTreeMap::new();
    let mut paths = vec![prefix.to_string()];
    let mut seen = 0usize;
    while let Some(path) = paths.pop() {
        for child in store.list_children(&path).await? {
            seen += 1;
            if seen > VIEW_KEYS_MAX {
                return Err(MetadataError::Storage(format!(
                    "more than {VIEW_KEYS_MAX} keys under {prefix}"
                )));
            }
            let key = format!("{path}/{child}");
            if let Some(parsed) = parse(&key) {
                if let Some(found) = store.get(&key).await? {
                    if let Some(value) = decode_logged(decode, &key, &found.value) {
                        map.insert(parsed, value);
                    }
                }
            }
            paths.push(key);
        }
    }
    Ok(map)
}
