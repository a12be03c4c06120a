//! Directories of the local provider that the database user must reach (the volumes
//! themselves are `crate::local::volume`'s).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::local::LocalError;

/// Creates `dir` as 0711: reachable by the database user, not listable.
pub fn traversable_dir(dir: &Path) -> Result<(), LocalError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| LocalError::io(&format!("create {}", dir.display()), e))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711))
        .map_err(|e| LocalError::io(&format!("chmod {}", dir.display()), e))
}
