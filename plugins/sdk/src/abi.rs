//! The C ABI between mailprobe and a plugin library. Both sides compile this very file, so the
//! layout cannot drift; [`ABI_VERSION`] changes whenever it does.
//!
//! A plugin library exports one function, [`ENTRY_POINT`], of type [`EntryPoint`]. It returns a
//! pointer to a [`PluginTable`] that stays valid, unchanged, for as long as the library is
//! loaded. All strings are NUL-terminated UTF-8.
//!
//! The host reads `abi_version` (the first field, a `u32`) before it trusts anything else in the
//! table, so a library built against another version is refused rather than misread.

use std::ffi::c_char;

/// The version of this table and of the JSON documents that `run` takes and returns.
pub const ABI_VERSION: u32 = 1;

/// The exported symbol (without the trailing NUL).
pub const ENTRY_POINT: &str = "mailprobe_plugin_entry";

/// The exported symbol, NUL-terminated, for `dlsym`.
pub const ENTRY_POINT_C: &[u8] = b"mailprobe_plugin_entry\0";

/// The entry point: returns the plugin's table, or null when the plugin could not start.
pub type EntryPoint = unsafe extern "C" fn() -> *const PluginTable;

/// `run(config_json, context_json) -> result_json`. Both arguments are borrowed for the call
/// only. The result is owned by the plugin and goes back through `free_string`; it is never
/// null unless the plugin is out of memory.
pub type RunFn =
    unsafe extern "C" fn(config_json: *const c_char, context_json: *const c_char) -> *mut c_char;

/// Frees a string that `run` returned.
pub type FreeFn = unsafe extern "C" fn(s: *mut c_char);

/// One requirement the plugin reports.
#[repr(C)]
pub struct RequirementDecl {
    pub id: *const c_char,
    pub description: *const c_char,
}

/// What the entry point returns.
#[repr(C)]
pub struct PluginTable {
    /// Must be the first field: [`ABI_VERSION`] of the SDK the plugin was built with.
    pub abi_version: u32,
    pub name: *const c_char,
    pub version: *const c_char,
    pub requirements: *const RequirementDecl,
    pub requirements_len: usize,
    pub run: RunFn,
    pub free_string: FreeFn,
}
