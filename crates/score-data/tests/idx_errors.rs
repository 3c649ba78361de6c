//! Every way an IDX file or an MNIST directory can be bad gives a typed error that names the file.

use std::fs;
use std::io::Write;
use std::path::Path;

use score_data::DataError;
use score_data::idx::{read_idx_u8, write_idx_u8};
use score_data::mnist::{Mnist, Split};

fn idx_bytes(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut b = magic.to_be_bytes().to_vec();
    for d in dims {
        b.extend_from_slice(&d.to_be_bytes());
    }
    b.extend_from_slice(data);
    b
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn assert_names(err: &DataError, path: &Path) {
    let msg = err.to_string();
    assert!(
        msg.contains(&path.display().to_string()),
        "{msg:?} does not name {}",
        path.display()
    );
}

/// A tiny MNIST-shaped split: `n` 2×3 images and `m` labels.
fn write_split(dir: &Path, n: usize, m: usize) {
    let images: Vec<u8> = (0..n * 6).map(|i| i as u8).collect();
    let labels: Vec<u8> = (0..m).map(|i| (i % 10) as u8).collect();
    write_idx_u8(&dir.join("t10k-images-idx3-ubyte"), &[n, 2, 3], &images).unwrap();
    write_idx_u8(&dir.join("t10k-labels-idx1-ubyte"), &[m], &labels).unwrap();
}

#[test]
fn round_trip_raw_and_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..=255).cycle().take(4 * 5 * 7).collect();
    let raw = dir.path().join("a-idx3-ubyte");
    write_idx_u8(&raw, &[4, 5, 7], &data).unwrap();
    let idx = read_idx_u8(&raw).unwrap();
    assert_eq!(
        (idx.dims.as_slice(), idx.data.as_slice()),
        (&[4, 5, 7][..], data.as_slice())
    );
    assert_eq!(idx.magic(), 0x0803);
    // Same bytes gzipped, under a .gz name and under a plain name (detected by the magic).
    let bytes = fs::read(&raw).unwrap();
    assert_eq!(&bytes[..4], &[0, 0, 8, 3]);
    for name in ["a-idx3-ubyte.gz", "b-idx3-ubyte"] {
        let p = dir.path().join(name);
        fs::write(&p, gzip(&bytes)).unwrap();
        assert_eq!(read_idx_u8(&p).unwrap(), idx);
    }
    // Overwriting is atomic: no temporary file is left behind.
    write_idx_u8(&raw, &[3], &[9, 8, 7]).unwrap();
    assert_eq!(read_idx_u8(&raw).unwrap().data, [9, 8, 7]);
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
}

#[test]
fn writer_rejects_bad_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x");
    assert!(matches!(
        write_idx_u8(&p, &[2, 3], &[0; 5]),
        Err(DataError::ShapeMismatch {
            expected: 6,
            found: 5,
            ..
        })
    ));
    assert!(matches!(
        write_idx_u8(&p, &[], &[]),
        Err(DataError::UnsupportedShape { .. })
    ));
    let e = write_idx_u8(&dir.path().join("no/such/dir/x"), &[1], &[0]).unwrap_err();
    assert!(matches!(e, DataError::MissingDirectory { .. }), "{e}");
    assert!(!p.exists());
}

#[test]
fn truncated_data_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("trunc-idx3-ubyte");
    fs::write(&p, idx_bytes(0x0803, &[2, 2, 2], &[1; 7])).unwrap();
    let e = read_idx_u8(&p).unwrap_err();
    assert!(
        matches!(
            e,
            DataError::Truncated {
                what: "data",
                expected: 8,
                found: 7,
                ..
            }
        ),
        "{e}"
    );
    assert_names(&e, &p);
    assert!(e.to_string().contains("8") && e.to_string().contains("7"));
    // A header cut short, too.
    fs::write(&p, &idx_bytes(0x0803, &[2, 2, 2], &[])[..10]).unwrap();
    let e = read_idx_u8(&p).unwrap_err();
    assert!(
        matches!(
            e,
            DataError::Truncated {
                what: "dimension sizes",
                ..
            }
        ),
        "{e}"
    );
    assert_names(&e, &p);
}

#[test]
fn trailing_bytes_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("long-idx1-ubyte");
    fs::write(&p, idx_bytes(0x0801, &[3], &[1, 2, 3, 4])).unwrap();
    let e = read_idx_u8(&p).unwrap_err();
    assert!(
        matches!(
            e,
            DataError::TrailingBytes {
                expected: 3,
                found: 4,
                ..
            }
        ),
        "{e}"
    );
    assert_names(&e, &p);
}

#[test]
fn wrong_magic_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad-idx3-ubyte");
    fs::write(&p, idx_bytes(0x1234_0803, &[1, 1, 1], &[0])).unwrap();
    let e = read_idx_u8(&p).unwrap_err();
    assert!(
        matches!(
            e,
            DataError::BadMagic {
                found: 0x1234_0803,
                ..
            }
        ),
        "{e}"
    );
    assert_names(&e, &p);
    // A non-byte type code is its own error.
    fs::write(&p, idx_bytes(0x0D01, &[1], &[0, 0, 0, 0])).unwrap();
    let e = read_idx_u8(&p).unwrap_err();
    assert!(
        matches!(e, DataError::UnsupportedType { found: 0x0D, .. }),
        "{e}"
    );
    assert_names(&e, &p);
}

#[test]
fn labels_where_images_belong_is_a_bad_magic() {
    let dir = tempfile::tempdir().unwrap();
    write_split(dir.path(), 2, 2);
    let images = dir.path().join("t10k-images-idx3-ubyte");
    fs::copy(dir.path().join("t10k-labels-idx1-ubyte"), &images).unwrap();
    let e = Mnist::load(dir.path(), Split::Test).unwrap_err();
    assert!(
        matches!(
            e,
            DataError::BadMagic {
                expected: 0x0803,
                found: 0x0801,
                ..
            }
        ),
        "{e}"
    );
    assert_names(&e, &images);
}

#[test]
fn corrupt_gzip_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let good = gzip(&idx_bytes(0x0801, &[100], &[3; 100]));
    // Flipped bytes in the deflate stream, and a stream cut in half.
    let mut flipped = good.clone();
    for b in &mut flipped[12..20] {
        *b ^= 0xff;
    }
    for (name, bytes) in [
        ("flip.gz", flipped),
        ("cut.gz", good[..good.len() / 2].to_vec()),
    ] {
        let p = dir.path().join(name);
        fs::write(&p, bytes).unwrap();
        let e = read_idx_u8(&p).unwrap_err();
        assert!(matches!(e, DataError::CorruptGzip { .. }), "{name}: {e}");
        assert_names(&e, &p);
    }
}

#[test]
fn count_mismatch_names_both_files() {
    let dir = tempfile::tempdir().unwrap();
    write_split(dir.path(), 5, 4);
    let e = Mnist::load(dir.path(), Split::Test).unwrap_err();
    assert!(
        matches!(
            e,
            DataError::CountMismatch {
                images: 5,
                labels: 4,
                ..
            }
        ),
        "{e}"
    );
    assert_names(&e, &dir.path().join("t10k-images-idx3-ubyte"));
    assert_names(&e, &dir.path().join("t10k-labels-idx1-ubyte"));
}

#[test]
fn a_label_above_nine_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    write_split(dir.path(), 2, 2);
    let labels = dir.path().join("t10k-labels-idx1-ubyte");
    write_idx_u8(&labels, &[2], &[1, 10]).unwrap();
    let e = Mnist::load(dir.path(), Split::Test).unwrap_err();
    assert!(
        matches!(
            e,
            DataError::BadLabel {
                index: 1,
                label: 10,
                ..
            }
        ),
        "{e}"
    );
    assert_names(&e, &labels);
}

#[test]
fn missing_file_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write_split(dir.path(), 2, 2);
    fs::remove_file(dir.path().join("t10k-labels-idx1-ubyte")).unwrap();
    let e = Mnist::load(dir.path(), Split::Test).unwrap_err();
    assert!(
        matches!(e, DataError::MissingFile { ref tried, .. } if tried.len() == 2),
        "{e}"
    );
    assert_names(&e, &dir.path().join("t10k-labels-idx1-ubyte"));
    assert_names(&e, &dir.path().join("t10k-labels-idx1-ubyte.gz"));
    // The train split is absent altogether.
    let e = Mnist::load(dir.path(), Split::Train).unwrap_err();
    assert_names(&e, &dir.path().join("train-images-idx3-ubyte"));
    // And the reader on its own.
    let p = dir.path().join("nothing-here");
    let e = read_idx_u8(&p).unwrap_err();
    assert!(matches!(e, DataError::MissingFile { .. }), "{e}");
    assert_names(&e, &p);
}

#[test]
fn missing_directory_names_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let gone = dir.path().join("no-such-mnist");
    let e = Mnist::load(&gone, Split::Test).unwrap_err();
    assert!(matches!(e, DataError::MissingDirectory { .. }), "{e}");
    assert_names(&e, &gone);
}

#[test]
fn a_small_split_loads_from_raw_or_gz_names() {
    let dir = tempfile::tempdir().unwrap();
    write_split(dir.path(), 3, 3);
    let raw = Mnist::load(dir.path(), Split::Test).unwrap();
    assert_eq!((raw.len(), raw.rows, raw.cols), (3, 2, 3));
    assert_eq!(raw.image(1), &[6, 7, 8, 9, 10, 11]);
    for f in ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"] {
        let p = dir.path().join(f);
        let bytes = fs::read(&p).unwrap();
        fs::write(dir.path().join(format!("{f}.gz")), gzip(&bytes)).unwrap();
        fs::remove_file(p).unwrap();
    }
    assert_eq!(Mnist::load(dir.path(), Split::Test).unwrap(), raw);
}
