//! The file plumbing shared by score-nets' weight files and score-train's checkpoints: one
//! checksum ([`fnv1a`]), one atomic write ([`write_atomic`]), and one checked way of turning
//! encoded records back into modules ([`encode_module`], [`load_module_record`]).
//!
//! burn 0.21's `Module::load_record` panics when a record's structure differs from the module's
//! (a `Vec` of layers of another length, a fixed-size array), silently drops an `Option` layer the
//! record lacks, and never compares tensor shapes. Catching that panic is no defence (it does
//! nothing under `panic = "abort"`, and burn prints it first), so [`load_module_record`] compares
//! the structure of the file's record with the module's own *before* handing anything to burn:
//! both are read as a tree of field names, sequence lengths and tensor shapes (parameter ids and
//! values are ignored), and the first difference becomes a typed error naming its path.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use burn::module::Module;
use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Record, Recorder};
use burn::tensor::backend::Backend;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::error::{NetsError, Result};

/// The recorder of every file this workspace writes: self-describing MessagePack with field
/// names, parameters at full precision.
pub type FileRecorder = NamedMpkBytesRecorder<FullPrecisionSettings>;

/// FNV-1a, 64 bit: tells a damaged file from an intact one (not a security measure).
///
/// ```
/// assert_eq!(score_nets::record::fnv1a(b""), 0xcbf2_9ce4_8422_2325);
/// assert_eq!(score_nets::record::fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
/// ```
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Writes `bytes` to `path` atomically: the parent directory is created if needed, the bytes go
/// to a temporary file of a name no other writer uses (process id and a counter) in the same
/// directory, are flushed to disk, and the file is renamed over `path`. A crash leaves either the
/// old file or the new one, never half of one; on error the temporary file is removed.
///
/// # Errors
/// The I/O error, with the path it concerns.
pub fn write_atomic(
    path: &Path,
    bytes: &[u8],
) -> std::result::Result<(), (PathBuf, std::io::Error)> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| (dir.to_path_buf(), e))?;
    }
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(
        ".{}.{}.tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let tmp = path.with_file_name(name);
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err((tmp, e));
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        (path.to_path_buf(), e)
    })
}

/// Encodes any record with the [`FileRecorder`].
///
/// # Errors
/// [`NetsError::Corrupt`] naming `path` when burn cannot encode it.
pub fn encode_record<B: Backend, R: Record<B>>(record: R, path: &Path) -> Result<Vec<u8>> {
    Recorder::<B>::record(&FileRecorder::default(), record, ()).map_err(|e| NetsError::Corrupt {
        path: path.to_path_buf(),
        reason: format!("could not encode the record: {e}"),
    })
}

/// Encodes `module`'s record (its parameters) with the [`FileRecorder`].
///
/// # Errors
/// [`NetsError::Corrupt`] naming `path` when burn cannot encode it.
pub fn encode_module<B: Backend, M: Module<B>>(module: &M, path: &Path) -> Result<Vec<u8>> {
    encode_record::<B, M::Record>(module.clone().into_record(), path)
}

/// Decodes a record written by [`encode_record`].
///
/// # Errors
/// [`NetsError::Corrupt`] naming `path` when the bytes do not decode as an `R`.
pub fn decode_record<B: Backend, R: Record<B>>(
    bytes: &[u8],
    device: &B::Device,
    path: &Path,
) -> Result<R> {
    Recorder::<B>::load(&FileRecorder::default(), bytes.to_vec(), device).map_err(|e| {
        NetsError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("does not decode as this module's record: {e}"),
        }
    })
}

/// Loads the parameters encoded in `bytes` (by [`encode_module`] for a module of the same
/// configuration) into `module` on `device`, after checking that the file's record has the
/// module's structure and shapes. `path` names the file in errors.
///
/// # Errors
/// - [`NetsError::Corrupt`] when the bytes do not decode as a record of this module type;
/// - [`NetsError::ShapeMismatch`] when a parameter's shape differs (its path is named);
/// - [`NetsError::Incompatible`] when the structure differs (another number of layers, a layer
///   present on one side only), naming where.
///
/// Nothing is handed to burn's `load_record` before these checks pass, so no mismatch panics.
pub fn load_module_record<B: Backend, M: Module<B>>(
    module: M,
    bytes: &[u8],
    device: &B::Device,
    path: &Path,
) -> Result<M> {
    let found = Node::parse(bytes).map_err(|reason| NetsError::Corrupt {
        path: path.to_path_buf(),
        reason: format!("not a MessagePack record: {reason}"),
    })?;
    let record: M::Record = decode_record::<B, M::Record>(bytes, device, path)?;
    let expected =
        Node::parse(&encode_module(&module, path)?).map_err(|reason| NetsError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("the module's own record does not parse: {reason}"),
        })?;
    if let Some(d) = expected.first_difference(&found, &mut Vec::new()) {
        return Err(d.into_error(path));
    }
    Ok(module.load_record(record))
}

/// The skeleton of a self-describing record: field names, sequence lengths, byte-buffer lengths
/// and numbers (tensor shapes); strings (parameter ids, dtype names) are kept but not compared.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    Map(Vec<(String, Node)>),
    Seq(Vec<Node>),
    Bytes(usize),
    Num(f64),
    Str,
    Bool(bool),
    Unit,
}

/// Where two skeletons first differ.
struct Difference {
    at: String,
    kind: DifferenceKind,
}

enum DifferenceKind {
    Shape {
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    Other(String),
}

impl Difference {
    fn into_error(self, path: &Path) -> NetsError {
        match self.kind {
            DifferenceKind::Shape { expected, found } => NetsError::ShapeMismatch {
                path: path.to_path_buf(),
                param: self.at,
                expected,
                found,
            },
            DifferenceKind::Other(what) => NetsError::Incompatible {
                path: path.to_path_buf(),
                reason: format!(
                    "at {}: {what}",
                    if self.at.is_empty() {
                        "the root"
                    } else {
                        &self.at
                    }
                ),
            },
        }
    }
}

impl Node {
    pub(crate) fn parse(bytes: &[u8]) -> std::result::Result<Self, String> {
        let mut de = rmp_serde::Deserializer::from_read_ref(bytes);
        Node::deserialize(&mut de).map_err(|e| e.to_string())
    }

    fn as_shape(&self) -> Option<Vec<usize>> {
        match self {
            Node::Seq(items) => items
                .iter()
                .map(|n| match n {
                    Node::Num(v) if *v >= 0.0 => Some(*v as usize),
                    _ => None,
                })
                .collect(),
            _ => None,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Node::Map(_) => "a structure",
            Node::Seq(_) => "a sequence",
            Node::Bytes(_) => "tensor bytes",
            Node::Num(_) => "a number",
            Node::Str => "a string",
            Node::Bool(_) => "a boolean",
            Node::Unit => "nothing",
        }
    }

    /// The first place where `found` differs from `self` (the expected skeleton).
    fn first_difference(&self, found: &Node, at: &mut Vec<String>) -> Option<Difference> {
        fn here(at: &[String], kind: DifferenceKind) -> Difference {
            Difference {
                at: display_path(at),
                kind,
            }
        }
        match (self, found) {
            (Node::Map(a), Node::Map(b)) => {
                // A tensor's shape first, so that a shape mismatch is reported as one rather than
                // as a difference in the size of its value buffer.
                let ordered = a
                    .iter()
                    .filter(|(k, _)| k == "shape")
                    .chain(a.iter().filter(|(k, _)| k != "shape"));
                for (key, va) in ordered {
                    let Some((_, vb)) = b.iter().find(|(k, _)| k == key) else {
                        return Some(here(
                            at,
                            DifferenceKind::Other(format!(
                                "the module has `{key}`, the file does not"
                            )),
                        ));
                    };
                    at.push(key.clone());
                    // A tensor's shape is reported as such, with both shapes.
                    if key == "shape"
                        && let (Some(e), Some(f)) = (va.as_shape(), vb.as_shape())
                    {
                        if e != f {
                            let d = Difference {
                                at: display_path(&at[..at.len() - 1]),
                                kind: DifferenceKind::Shape {
                                    expected: e,
                                    found: f,
                                },
                            };
                            at.pop();
                            return Some(d);
                        }
                        at.pop();
                        continue;
                    }
                    let d = va.first_difference(vb, at);
                    at.pop();
                    if d.is_some() {
                        return d;
                    }
                }
                b.iter()
                    .find(|(k, _)| !a.iter().any(|(ka, _)| ka == k))
                    .map(|(k, _)| {
                        here(
                            at,
                            DifferenceKind::Other(format!(
                                "the file has `{k}`, the module does not"
                            )),
                        )
                    })
            }
            (Node::Seq(a), Node::Seq(b)) => {
                if a.len() != b.len() {
                    return Some(here(
                        at,
                        DifferenceKind::Other(format!(
                            "the module has {} entries, the file {} (a different length)",
                            a.len(),
                            b.len()
                        )),
                    ));
                }
                for (i, (va, vb)) in a.iter().zip(b).enumerate() {
                    at.push(i.to_string());
                    let d = va.first_difference(vb, at);
                    at.pop();
                    if d.is_some() {
                        return d;
                    }
                }
                None
            }
            (Node::Bytes(a), Node::Bytes(b)) if a != b => Some(here(
                at,
                DifferenceKind::Other(format!(
                    "the module holds {a} bytes of values, the file {b}"
                )),
            )),
            (Node::Num(a), Node::Num(b)) if a != b => Some(here(
                at,
                DifferenceKind::Other(format!("the module has {a}, the file {b}")),
            )),
            (Node::Bool(a), Node::Bool(b)) if a != b => Some(here(
                at,
                DifferenceKind::Other(format!("the module has {a}, the file {b}")),
            )),
            (Node::Bytes(_), Node::Bytes(_))
            | (Node::Num(_), Node::Num(_))
            | (Node::Bool(_), Node::Bool(_))
            | (Node::Str, Node::Str)
            | (Node::Unit, Node::Unit) => None,
            // burn writes a tensor's values as a byte buffer or, in some versions, a sequence.
            (Node::Bytes(_), Node::Seq(_)) | (Node::Seq(_), Node::Bytes(_)) => None,
            (a, b) => Some(here(
                at,
                DifferenceKind::Other(format!(
                    "the module has {}, the file {}",
                    a.kind(),
                    b.kind()
                )),
            )),
        }
    }
}

/// A record path as a module path: burn's envelope (`item`) and parameter wrapper (`param`)
/// levels left out, e.g. `layers.0.weight`.
fn display_path(at: &[String]) -> String {
    let skip_root = usize::from(at.first().is_some_and(|s| s == "item"));
    at[skip_root..]
        .iter()
        .filter(|s| *s != "param")
        .cloned()
        .collect::<Vec<_>>()
        .join(".")
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind())
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a MessagePack value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> std::result::Result<Node, E> {
        Ok(Node::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<Node, E> {
        Ok(Node::Num(v as f64))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<Node, E> {
        Ok(Node::Num(v as f64))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<Node, E> {
        Ok(Node::Num(v))
    }
    fn visit_str<E: de::Error>(self, _v: &str) -> std::result::Result<Node, E> {
        Ok(Node::Str)
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> std::result::Result<Node, E> {
        Ok(Node::Bytes(v.len()))
    }
    fn visit_unit<E: de::Error>(self) -> std::result::Result<Node, E> {
        Ok(Node::Unit)
    }
    fn visit_none<E: de::Error>(self) -> std::result::Result<Node, E> {
        Ok(Node::Unit)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Node, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(n) = seq.next_element()? {
            items.push(n);
        }
        Ok(Node::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Key>()? {
            entries.push((key.0, map.next_value()?));
        }
        Ok(Node::Map(entries))
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

/// A map key of any scalar type, as text.
struct Key(String);

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> std::result::Result<Key, E> {
                Ok(Key(String::from_utf8_lossy(v).into_owned()))
            }
        }
        d.deserialize_any(KeyVisitor)
    }
}

/// Every tensor shape found in an encoded record, in order (for records whose keys are not
/// comparable, such as an optimiser's state keyed by parameter ids).
///
/// # Errors
/// The parser's message when the bytes are not MessagePack.
pub fn record_shapes(bytes: &[u8]) -> std::result::Result<Vec<Vec<usize>>, String> {
    fn walk(n: &Node, out: &mut Vec<Vec<usize>>) {
        match n {
            Node::Map(entries) => {
                for (k, v) in entries {
                    match (k.as_str(), v.as_shape()) {
                        ("shape", Some(s)) => out.push(s),
                        _ => walk(v, out),
                    }
                }
            }
            Node::Seq(items) => items.iter().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(&Node::parse(bytes)?, &mut out);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writes_replace_and_leave_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("f.bin");
        write_atomic(&path, b"first").unwrap();
        write_atomic(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("f.bin")]);
        // A directory in the way: the error names a path and no temporary is left behind.
        let blocked = dir.path().join("blocked");
        std::fs::create_dir_all(blocked.join("x")).unwrap();
        let (p, _) = write_atomic(&blocked, b"x").unwrap_err();
        assert!(p.starts_with(dir.path()));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }
}
