//! Who may have written a plugin, checked before anything is loaded, the way sshd's
//! StrictModes treats key files: loading a library runs its code (ELF constructors run at
//! `dlopen`, before any entry point is looked up), with the daemon's privileges. So the plugin
//! directory, each library and, for a symlink, the directory of the file it points to, must be
//! owned by root or by the user mailprobe runs as, and writable by neither group nor others.
//! Anything else is refused with a message naming the path and what to change.

use std::path::Path;

use crate::LoadError;

/// Refuses `path` unless its owner and mode are safe (symlinks followed).
pub fn check(path: &Path, what: &str) -> Result<(), LoadError> {
    let refuse = |reason: String| LoadError::Unsafe {
        path: path.display().to_string(),
        reason,
    };
    let w = mailprobe_core::file::writers(path)
        .map_err(|e| refuse(format!("cannot stat {what}: {e}")))?;
    let me = rustix::process::geteuid().as_raw();
    if w.owner != 0 && w.owner != me {
        return Err(refuse(format!(
            "the {what} is owned by uid {}, neither root nor the user mailprobe runs as (uid {me}); chown it to root",
            w.owner
        )));
    }
    if w.shared() {
        return Err(refuse(format!(
            "the {what} can be written by {} (mode {:o}); run `chmod go-w` on it",
            if w.mode & 0o002 != 0 {
                "any user"
            } else {
                "its group"
            },
            w.mode
        )));
    }
    Ok(())
}

/// The directory, then a library of it (and the directory of its target, when it is a symlink).
pub fn check_library(path: &Path) -> Result<(), LoadError> {
    check(path, "plugin library")?;
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
        && let Ok(target) = std::fs::canonicalize(path)
        && let Some(parent) = target.parent()
    {
        check(parent, "directory of the plugin library's symlink target")?;
    }
    Ok(())
}
