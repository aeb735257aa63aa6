//! The proxy's cache file: the last state of every binding, written atomically when one
//! changes and read at start-up, so that a proxy restarted while the control plane is down
//! starts from it instead of empty.
//!
//! Format: one `weft.resolve.v1.CacheFile` message (protobuf binary). It is a cache: a file
//! that is missing, unreadable or for another namespace is ignored with a log line.

use std::collections::HashMap;
use std::io;
use std::path::{Path as FsPath, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use prost::Message;
use weft_naming::Path;

use crate::proto;

/// A cached binding's key: the logical name and the local dtab text.
pub(crate) type Key = (Path, String);

/// What a cache file held.
pub(crate) struct Loaded {
    pub(crate) written_at: f64,
    pub(crate) entries: HashMap<Key, proto::ResolveUpdate>,
}

/// Reads `file`; `Ok(None)` when it does not exist.
///
/// # Errors
/// An unreadable file, one that does not decode, or one written for another namespace.
pub(crate) fn read(file: &FsPath, namespace: &str) -> io::Result<Option<Loaded>> {
    let bytes = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    decode(&bytes, namespace).map(Some)
}

/// Decodes a cache file's bytes. Entries whose path does not parse or that carry no update
/// are skipped: a cache is a hint, and the rest of it is still good.
///
/// # Errors
/// Bytes that do not decode as a `CacheFile`, or a file written for another namespace.
pub(crate) fn decode(bytes: &[u8], namespace: &str) -> io::Result<Loaded> {
    let msg = proto::CacheFile::decode(bytes)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    if msg.namespace != namespace {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("written for namespace {:?}", msg.namespace),
        ));
    }
    let mut entries = HashMap::new();
    for e in msg.entries {
        let (Ok(path), Some(update)) = (Path::read(&e.path), e.update) else {
            continue;
        };
        entries.insert((path, e.local_dtab), update);
    }
    Ok(Loaded {
        written_at: msg.written_at,
        entries,
    })
}

/// Writes `entries` to `file` atomically: a temporary file beside it, then a rename, so a
/// reader (or a crash) never sees half a file.
///
/// # Errors
/// The directory is not writable, the disk is full.
pub(crate) fn write(
    file: &FsPath,
    namespace: &str,
    entries: &[(Key, proto::ResolveUpdate)],
) -> io::Result<()> {
    let msg = proto::CacheFile {
        namespace: namespace.to_owned(),
        written_at: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64()),
        entries: entries
            .iter()
            .map(|((path, local), update)| proto::CacheEntry {
                path: path.to_string(),
                local_dtab: local.clone(),
                update: Some(update.clone()),
            })
            .collect(),
    };
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = temp_name(file);
    std::fs::write(&tmp, msg.encode_to_vec())?;
    std::fs::rename(&tmp, file).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

fn temp_name(file: &FsPath) -> PathBuf {
    let mut name = file.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp.{}", std::process::id()));
    file.with_file_name(name)
}
