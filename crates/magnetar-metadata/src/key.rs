//! Key rules and the child listing shared by the backends.

use std::collections::BTreeSet;

use crate::{MetadataError, KEY_LENGTH_BYTES_MAX};

/// Characters of a bad key kept in the error, so a huge key is not echoed back whole.
const KEY_IN_ERROR_CHARS_MAX: usize = 128;

/// Checks that `key` names one entry: starts with `/`, segments separated by `/`, no empty,
/// `.` or `..` segment, no trailing `/`, no control characters, at most
/// [`KEY_LENGTH_BYTES_MAX`] bytes. The root `/` is not a key.
pub fn validate_key(key: &str) -> Result<(), MetadataError> {
    if key == "/" {
        return Err(invalid(key, "the root is not a key"));
    }
    validate_path(key)
}

/// Checks that `path` is a key or the root `/`: what [`list_children`] and `watch` accept.
///
/// [`list_children`]: crate::MetadataStore::list_children
pub fn validate_path(path: &str) -> Result<(), MetadataError> {
    if path.len() > KEY_LENGTH_BYTES_MAX {
        return Err(invalid(
            path,
            &format!("longer than {KEY_LENGTH_BYTES_MAX} bytes"),
        ));
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Err(invalid(path, "must start with '/'"));
    };
    if rest.is_empty() {
        return Ok(());
    }
    if path.chars().any(char::is_control) {
        return Err(invalid(path, "must not contain control characters"));
    }
    if rest.ends_with('/') {
        return Err(invalid(path, "must not end with '/'"));
    }
    for segment in rest.split('/') {
        match segment {
            "" => return Err(invalid(path, "must not contain an empty segment")),
            "." | ".." => return Err(invalid(path, "must not contain a '.' or '..' segment")),
            _ => {}
        }
    }
    Ok(())
}

fn invalid(key: &str, reason: &str) -> MetadataError {
    let key = if key.chars().count() > KEY_IN_ERROR_CHARS_MAX {
        let mut short: String = key.chars().take(KEY_IN_ERROR_CHARS_MAX).collect();
        short.push_str("...");
        short
    } else {
        key.to_string()
    };
    MetadataError::InvalidKey {
        key,
        reason: reason.to_string(),
    }
}

/// The string every key beneath `path` starts with: `path/`, or `/` for the root.
fn directory(path: &str) -> String {
    if path == "/" {
        "/".to_string()
    } else {
        format!("{path}/")
    }
}

/// Whether `key` is `prefix` or lies beneath it (a watch match).
pub(crate) fn is_at_or_under(key: &str, prefix: &str) -> bool {
    prefix == "/"
        || key
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Lists the direct children of a validated `path` with `seek(start, end)`, which returns the
/// first stored key in `[start, end)`.
///
/// It seeks once per child subtree and once per key directly under `path`, instead of reading
/// every key beneath it: `path/` sorts before `path0` ('0' follows '/'), so `[dir child /,
/// dir child 0)` is exactly the subtree of `child` and can be jumped over.
pub(crate) fn list_children_with<E>(
    path: &str,
    mut seek: impl FnMut(&str, &str) -> Result<Option<String>, E>,
) -> Result<Vec<String>, E> {
    let dir = directory(path);
    let end = format!("{}0", &dir[..dir.len() - 1]);
    let mut children = BTreeSet::new();
    let mut start = dir.clone();
    while let Some(key) = seek(&start, &end)? {
        let Some(rest) = key.strip_prefix(dir.as_str()) else {
            // The backend broke the seek contract; stop rather than loop.
            debug_assert!(false, "seek returned {key} outside {dir}");
            break;
        };
        match rest.split_once('/') {
            None => {
                children.insert(rest.to_string());
                // The smallest string after `key`.
                start = format!("{key}\0");
            }
            Some((child, _)) => {
                start = format!("{dir}{child}0");
                children.insert(child.to_string());
            }
        }
    }
    Ok(children.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::ops::Bound;

    #[test]
    fn valid_keys() {
        for key in [
            "/a",
            "/a/b",
            "/admin/tenants/public",
            "/a-b/c.d/e_f",
            "/ünï/cödé",
            "/..a",
        ] {
            assert_eq!(validate_key(key), Ok(()), "{key}");
        }
        assert_eq!(validate_path("/"), Ok(()));
        let longest = format!("/{}", "x".repeat(KEY_LENGTH_BYTES_MAX - 1));
        assert_eq!(validate_key(&longest), Ok(()));
    }

    #[test]
    fn invalid_keys() {
        let too_long = format!("/{}", "x".repeat(KEY_LENGTH_BYTES_MAX));
        for key in [
            "", "/", "a", "a/b", "/a/", "//a", "/a//b", "/.", "/a/..", "/a/./b", "/a\0b", "/a\nb",
            &too_long,
        ] {
            match validate_key(key) {
                Err(MetadataError::InvalidKey { key: shown, reason }) => {
                    assert!(shown.len() <= KEY_IN_ERROR_CHARS_MAX + 3);
                    assert!(!reason.is_empty());
                }
                other => panic!("{key:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn watch_prefix_matches_segments() {
        assert!(is_at_or_under("/a", "/a"));
        assert!(is_at_or_under("/a/b", "/a"));
        assert!(!is_at_or_under("/ab", "/a"));
        assert!(!is_at_or_under("/b", "/a"));
        assert!(is_at_or_under("/b", "/"));
    }

    fn children(keys: &[&str], path: &str) -> Vec<String> {
        let map: BTreeMap<String, ()> = keys.iter().map(|k| (k.to_string(), ())).collect();
        let mut seeks = 0;
        let result = list_children_with::<()>(path, |start, end| {
            seeks += 1;
            Ok(map
                .range::<str, _>((Bound::Included(start), Bound::Excluded(end)))
                .next()
                .map(|(k, _)| k.clone()))
        })
        .unwrap();
        assert!(seeks <= keys.len() + 1);
        result
    }

    #[test]
    fn children_are_sorted_unique_and_implied() {
        let keys = [
            "/a", "/a/b", "/a/b-c", "/a/b/x", "/a/b/y/z", "/a/c", "/a0", "/a-x/q", "/b/c/d",
        ];
        assert_eq!(children(&keys, "/a"), ["b", "b-c", "c"]);
        assert_eq!(children(&keys, "/"), ["a", "a-x", "a0", "b"]);
        assert_eq!(children(&keys, "/a/b"), ["x", "y"]);
        assert_eq!(children(&keys, "/b"), ["c"]);
        assert!(children(&keys, "/a/c").is_empty());
        assert!(children(&keys, "/nothing").is_empty());
    }
}
