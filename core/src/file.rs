//! The one way mailprobe reads a file it is told about (the configuration, password files, CA
//! files, the web config): bounded in size and in time, and never on the caller's thread.
//!
//! A path someone else can write to may name a FIFO (an `open` for reading blocks until a
//! writer comes, and a read blocks until it writes), a device (`/dev/zero` never ends), a socket,
//! a directory, or a file on a hung network mount. So the file is opened non-blocking, `fstat`
//! must say it is a regular file (symlinks are followed: Kubernetes mounts secrets as symlinks),
//! at most `max` bytes are read, and the whole read runs on a thread of its own that the caller
//! waits for only until a deadline. A read that outlives its deadline is abandoned: its thread
//! is left to the kernel, the caller gets an error naming the file and goes on, and neither a
//! runtime worker nor shutdown ever waits for it.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use zeroize::Zeroizing;

/// How long a file read may take unless the caller says otherwise. A local file is read in
/// microseconds; this only bounds a hostile or hung one.
pub const READ_DEADLINE: Duration = Duration::from_secs(5);

/// Why a file could not be read. Every message names the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    #[error("cannot read {path}: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("{path} is {kind}, not a regular file; point it at a regular file")]
    NotRegular { path: String, kind: &'static str },
    #[error("{path} is larger than {max} bytes; check that the path names the right file")]
    TooLarge { path: String, max: u64 },
    #[error("reading {path} did not finish within {secs} s; is it on a hung mount?")]
    TimedOut { path: String, secs: u64 },
}

impl FileError {
    /// The file's path as shown in the message.
    pub fn path(&self) -> &str {
        match self {
            FileError::Unreadable { path, .. }
            | FileError::NotRegular { path, .. }
            | FileError::TooLarge { path, .. }
            | FileError::TimedOut { path, .. } => path,
        }
    }
}

/// The bytes of a regular file, at most `max` of them, read within `deadline` on a thread of
/// its own. Blocks the calling thread up to `deadline`: from async code use [`read_async`].
/// The buffer is wiped when dropped (it may hold a password).
pub fn read(path: &Path, max: u64, deadline: Duration) -> Result<Zeroizing<Vec<u8>>, FileError> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let owned = path.to_path_buf();
    let spawned = std::thread::Builder::new()
        .name("mailprobe-file".into())
        .spawn(move || {
            let _ = tx.send(read_here(&owned, max));
        });
    if let Err(e) = spawned {
        return Err(unreadable(path, &e));
    }
    match rx.recv_timeout(deadline) {
        Ok(result) => result,
        Err(_) => Err(timed_out(path, deadline)),
    }
}

/// As [`read`], for async code: the calling task waits, no runtime worker does.
pub async fn read_async(
    path: &Path,
    max: u64,
    deadline: Duration,
) -> Result<Zeroizing<Vec<u8>>, FileError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let owned = path.to_path_buf();
    let spawned = std::thread::Builder::new()
        .name("mailprobe-file".into())
        .spawn(move || {
            let _ = tx.send(read_here(&owned, max));
        });
    if let Err(e) = spawned {
        return Err(unreadable(path, &e));
    }
    match tokio::time::timeout(deadline, rx).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(FileError::Unreadable {
            path: path.display().to_string(),
            reason: "the reading thread ended without an answer".into(),
        }),
        Err(_) => Err(timed_out(path, deadline)),
    }
}

/// As [`read`], as UTF-8 text.
pub fn read_to_string(
    path: &Path,
    max: u64,
    deadline: Duration,
) -> Result<Zeroizing<String>, FileError> {
    text(path, read(path, max, deadline)?)
}

/// As [`read_async`], as UTF-8 text.
pub async fn read_to_string_async(
    path: &Path,
    max: u64,
    deadline: Duration,
) -> Result<Zeroizing<String>, FileError> {
    text(path, read_async(path, max, deadline).await?)
}

fn text(path: &Path, mut bytes: Zeroizing<Vec<u8>>) -> Result<Zeroizing<String>, FileError> {
    match String::from_utf8(std::mem::take(&mut *bytes)) {
        Ok(s) => Ok(Zeroizing::new(s)),
        Err(e) => {
            // Wipe the rejected bytes too.
            drop(Zeroizing::new(e.into_bytes()));
            Err(FileError::Unreadable {
                path: path.display().to_string(),
                reason: "it is not UTF-8 text".into(),
            })
        }
    }
}

fn unreadable(path: &Path, e: &std::io::Error) -> FileError {
    FileError::Unreadable {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

fn timed_out(path: &Path, deadline: Duration) -> FileError {
    FileError::TimedOut {
        path: path.display().to_string(),
        secs: deadline.as_secs().max(1),
    }
}

/// The read itself, on the reading thread.
fn read_here(path: &Path, max: u64) -> Result<Zeroizing<Vec<u8>>, FileError> {
    let file = open_nonblocking(path).map_err(|e| unreadable(path, &e))?;
    let meta = file.metadata().map_err(|e| unreadable(path, &e))?;
    if !meta.is_file() {
        return Err(FileError::NotRegular {
            path: path.display().to_string(),
            kind: kind(&meta),
        });
    }
    if meta.len() > max {
        return Err(FileError::TooLarge {
            path: path.display().to_string(),
            max,
        });
    }
    let mut out = Zeroizing::new(Vec::with_capacity(meta.len() as usize));
    // Bounded even if the file grows between the fstat and the read.
    file.take(max + 1)
        .read_to_end(&mut out)
        .map_err(|e| unreadable(path, &e))?;
    if out.len() as u64 > max {
        return Err(FileError::TooLarge {
            path: path.display().to_string(),
            max,
        });
    }
    Ok(out)
}

#[cfg(unix)]
fn open_nonblocking(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .read(true)
        // Opening a FIFO for reading would wait for a writer; a terminal device could wait
        // for a carrier. Non-blocking, the open returns at once and fstat says what it is.
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
}

#[cfg(not(unix))]
fn open_nonblocking(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::File::open(path)
}

#[cfg(unix)]
fn kind(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt as _;
    let t = meta.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else {
        "not a regular file"
    }
}

#[cfg(not(unix))]
fn kind(meta: &std::fs::Metadata) -> &'static str {
    if meta.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    }
}

/// Who may write a file, for the warnings and refusals that StrictModes-like rules give.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Writers {
    pub path: PathBuf,
    /// The permission bits (`0o777` part).
    pub mode: u32,
    pub owner: u32,
}

impl Writers {
    /// Group or others may write it.
    pub fn shared(&self) -> bool {
        self.mode & 0o022 != 0
    }
}

/// The owner and permission bits of `path` (symlinks followed).
#[cfg(unix)]
pub fn writers(path: &Path) -> std::io::Result<Writers> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::metadata(path)?;
    Ok(Writers {
        path: path.to_path_buf(),
        mode: meta.mode() & 0o777,
        owner: meta.uid(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "mailprobe-file-{}-{}",
            std::process::id(),
            fastrand_ish()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn fastrand_ish() -> u128 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    }

    #[test]
    fn a_regular_file_and_a_symlink_to_one_are_read() {
        let d = dir();
        let f = d.join("a");
        std::fs::write(&f, "hello").unwrap();
        let l = d.join("link");
        std::os::unix::fs::symlink(&f, &l).unwrap();
        assert_eq!(&read(&l, 10, READ_DEADLINE).unwrap()[..], b"hello");
        let e = read(&f, 3, READ_DEADLINE).unwrap_err();
        assert!(matches!(e, FileError::TooLarge { .. }), "{e}");
        assert!(e.to_string().contains(&*f.display().to_string()), "{e}");
    }

    #[test]
    fn a_fifo_a_device_and_a_directory_are_refused_at_once() {
        let d = dir();
        let fifo = d.join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let started = std::time::Instant::now();
        let e = read(&fifo, 10, Duration::from_secs(30)).unwrap_err();
        assert!(
            matches!(e, FileError::NotRegular { kind, .. } if kind.contains("FIFO")),
            "{e}"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        let e = read(Path::new("/dev/zero"), 10, READ_DEADLINE).unwrap_err();
        assert!(e.to_string().contains("/dev/zero is a device"), "{e}");
        let e = read(&d, 10, READ_DEADLINE).unwrap_err();
        assert!(e.to_string().contains("is a directory"), "{e}");
    }

    #[tokio::test]
    async fn the_async_read_gives_the_same_answers() {
        let d = dir();
        let f = d.join("a");
        std::fs::write(&f, "x").unwrap();
        let got = read_to_string_async(&f, 10, READ_DEADLINE).await.unwrap();
        assert_eq!(got.as_str(), "x");
        let e = read_async(&d, 10, READ_DEADLINE).await.unwrap_err();
        assert!(matches!(e, FileError::NotRegular { .. }));
    }
}
