//! Key material as Pulsar names it: `file:///path/to/key` or `data:;base64,<base64>` (also
//! `data:<media type>;base64,...`); like Pulsar, a bare path of an existing file and bare base64
//! are accepted too. A key file is read as is: raw bytes for a secret key, PEM or DER for a
//! public or private key.

use base64::Engine;

use crate::AuthError;

/// Largest key file read; keys are a few kilobytes at most.
const KEY_BYTES_MAX: u64 = 1024 * 1024;

/// Reads the key a `file:` or `data:` URL names.
pub fn read_key(url: &str) -> Result<Vec<u8>, AuthError> {
    let url = url.trim();
    if let Some(path) = url
        .strip_prefix("file://")
        .or_else(|| url.strip_prefix("file:"))
    {
        let meta = std::fs::metadata(path)
            .map_err(|e| AuthError::InvalidKey(format!("cannot read key file {path}: {e}")))?;
        if meta.len() > KEY_BYTES_MAX {
            return Err(AuthError::InvalidKey(format!(
                "key file {path} is larger than {KEY_BYTES_MAX} bytes"
            )));
        }
        return std::fs::read(path)
            .map_err(|e| AuthError::InvalidKey(format!("cannot read key file {path}: {e}")));
    }
    if let Some(rest) = url.strip_prefix("data:") {
        let Some((media, data)) = rest.split_once(',') else {
            return Err(AuthError::InvalidKey(
                "a data: key must look like data:;base64,<base64>".into(),
            ));
        };
        if !media.ends_with(";base64") {
            return Err(AuthError::InvalidKey(
                "a data: key must be base64 encoded (data:;base64,...)".into(),
            ));
        }
        return decode_base64(data)
            .map_err(|e| AuthError::InvalidKey(format!("data: key is not valid base64: {e}")));
    }
    if std::path::Path::new(url).is_file() {
        return read_key(&format!("file://{url}"));
    }
    decode_base64(url).map_err(|_| {
        AuthError::InvalidKey(
            "a key must be given as file:///path, data:;base64,<base64>, a file path or base64"
                .into(),
        )
    })
}

/// Standard or URL-safe base64, padded or not (Pulsar writes standard padded base64).
pub fn decode_base64(data: &str) -> Result<Vec<u8>, base64::DecodeError> {
    let data: String = data.chars().filter(|c| !c.is_whitespace()).collect();
    let engines = [
        &base64::engine::general_purpose::STANDARD,
        &base64::engine::general_purpose::STANDARD_NO_PAD,
        &base64::engine::general_purpose::URL_SAFE,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ];
    let mut last = None;
    for engine in engines {
        match engine.decode(&data) {
            Ok(bytes) => return Ok(bytes),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or(base64::DecodeError::InvalidLength(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_and_file_urls() {
        assert_eq!(read_key("data:;base64,AAEC").unwrap(), vec![0, 1, 2]);
        assert_eq!(
            read_key("data:application/octet-stream;base64,AAEC").unwrap(),
            vec![0, 1, 2]
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        std::fs::write(&path, b"secret").unwrap();
        assert_eq!(
            read_key(&format!("file://{}", path.display())).unwrap(),
            b"secret"
        );
        assert_eq!(read_key(&path.display().to_string()).unwrap(), b"secret");
        assert_eq!(read_key("AAEC").unwrap(), vec![0, 1, 2]);
        assert!(read_key("/plain/path").is_err());
        assert!(read_key("data:,AAEC").is_err());
        assert!(read_key("file:///does/not/exist").is_err());
    }
}
