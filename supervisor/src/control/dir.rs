//! The control sockets' directory is ours, or it is not used. In `/tmp`
//! anyone may have made `supervisor-<uid>` first: with another owner, or
//! mode 0777, someone else can put a socket there that `status` and
//! `stop` would talk to; as a symlink, `list` would clean up a directory
//! that is not ours. So it is opened without following a symlink and its
//! owner and mode are read from the open descriptor (`fstat`), not from
//! the path, which could be swapped between a check and a use.

use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Why the directory is not used.
#[derive(Debug, thiserror::Error)]
pub enum DirError {
    #[error("cannot make {0}: {1}")]
    Make(PathBuf, std::io::Error),
    #[error("refused: {0} is a symlink, not a directory of ours (remove it)")]
    Symlink(PathBuf),
    #[error("refused: {0} is not a directory")]
    NotADirectory(PathBuf),
    #[error("refused: {path} belongs to uid {owner}, not to us (uid {uid}); remove it, or set XDG_RUNTIME_DIR")]
    NotOurs { path: PathBuf, owner: u32, uid: u32 },
    #[error("refused: {path} has mode {mode:04o}, so other users can put sockets in it; `chmod 700` it or remove it")]
    OpenToOthers { path: PathBuf, mode: u32 },
    #[error("cannot check {0}: {1}")]
    Check(PathBuf, std::io::Error),
}

/// Makes `dir` (mode 0700) if it is missing, then checks it is a real
/// directory, owned by this user, that nobody else may write to.
pub fn ours(dir: &Path) -> Result<(), DirError> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(DirError::Make(dir.to_path_buf(), e)),
    }
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(dir);
    let handle = match opened {
        Ok(handle) => handle,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(DirError::Symlink(dir.to_path_buf()))
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {
            // O_NOFOLLOW on a symlink to a directory also ends here on some
            // kernels; say which it is.
            let link = std::fs::symlink_metadata(dir).is_ok_and(|m| m.file_type().is_symlink());
            return Err(if link {
                DirError::Symlink(dir.to_path_buf())
            } else {
                DirError::NotADirectory(dir.to_path_buf())
            });
        }
        Err(e) => return Err(DirError::Check(dir.to_path_buf(), e)),
    };
    let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes one `struct stat` into the buffer it is given,
    // which is that size; the descriptor is open for as long as `handle`.
    if unsafe { libc::fstat(handle.as_raw_fd(), stat.as_mut_ptr()) } != 0 {
        return Err(DirError::Check(
            dir.to_path_buf(),
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: fstat returned 0, so it filled the whole struct.
    let stat = unsafe { stat.assume_init() };
    // SAFETY: getuid cannot fail and touches no memory.
    let uid = unsafe { libc::getuid() };
    if stat.st_mode & libc::S_IFMT != libc::S_IFDIR {
        return Err(DirError::NotADirectory(dir.to_path_buf()));
    }
    if stat.st_uid != uid {
        return Err(DirError::NotOurs {
            path: dir.to_path_buf(),
            owner: stat.st_uid,
            uid,
        });
    }
    if stat.st_mode & 0o022 != 0 {
        return Err(DirError::OpenToOthers {
            path: dir.to_path_buf(),
            mode: stat.st_mode & 0o7777,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ctl-dir-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_file(&dir);
        dir
    }

    #[test]
    fn a_new_directory_is_made_private_and_accepted() {
        let dir = scratch("new");
        ours(&dir).expect("ours");
        let mode = std::fs::metadata(&dir).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        ours(&dir).expect("again");
        let _ = std::fs::remove_dir(&dir);
    }

    #[test]
    fn a_directory_open_to_others_or_a_symlink_is_refused() {
        let dir = scratch("wide");
        std::fs::create_dir(&dir).expect("mkdir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        assert!(matches!(
            ours(&dir),
            Err(DirError::OpenToOthers { mode: 0o777, .. })
        ));
        let link = scratch("link");
        std::os::unix::fs::symlink(&dir, &link).expect("symlink");
        assert!(matches!(ours(&link), Err(DirError::Symlink(_))));
        let _ = std::fs::remove_file(&link);
        let _ = std::fs::remove_dir(&dir);
    }
}
