//! The C ABI between mailprobe and a plugin library. Both sides compile this very file, so the
//! layout cannot drift; [`ABI_VERSION`] changes whenever it does.
//!
//! A plugin library exports two symbols:
//! - [`ABI_SYMBOL`], a plain `u32` holding the [`ABI_VERSION`] it was built with. The host reads
//!   it (data, not code) before it calls anything in the library, so a library built for another
//!   version is refused without any of its functions running. (Its static constructors, if it
//!   has any, have run by then: loading a library runs them. That is what `isolation: process`
//!   is for.)
//! - [`ENTRY_POINT`], a function of type [`EntryPoint`]. It returns a pointer to a
//!   [`PluginTable`] that stays valid, unchanged, for as long as the library is loaded.
//!
//! All strings are NUL-terminated UTF-8. A plugin need not be written in Rust: the host makes no
//! assumption a C compiler would not honour. It reads the table and the requirement array with
//! unaligned reads, treats a NULL function pointer as a load error, and bounds every length it
//! reads ([`MAX_REQUIREMENTS`], [`MAX_TABLE_STRING`]).
//!
//! In C, the same ABI reads:
//!
//! ```c
//! typedef struct { const char *id; const char *description; } mailprobe_requirement;
//! typedef struct {
//!     uint32_t abi_version;                 /* == mailprobe_plugin_abi */
//!     const char *name, *version;
//!     const mailprobe_requirement *requirements;
//!     size_t requirements_len;
//!     char *(*run)(const char *config_json, const char *context_json);
//!     void (*free_string)(char *s);
//! } mailprobe_plugin_table;
//! const uint32_t mailprobe_plugin_abi = 2;
//! const mailprobe_plugin_table *mailprobe_plugin_entry(void);
//! ```

use std::ffi::c_char;

/// The version of this table, of the symbols above and of the JSON documents that `run` takes
/// and returns.
///
/// - 1: the version was the table's first field only (the host called the entry point to read
///   it).
/// - 2: the version is also the data symbol [`ABI_SYMBOL`], read before any plugin code runs;
///   `run` and `free_string` are nullable pointers the host checks.
pub const ABI_VERSION: u32 = 2;

/// The exported data symbol holding the ABI version, a `u32` (without the trailing NUL).
pub const ABI_SYMBOL: &str = "mailprobe_plugin_abi";

/// [`ABI_SYMBOL`], NUL-terminated, for `dlsym`.
pub const ABI_SYMBOL_C: &[u8] = b"mailprobe_plugin_abi\0";

/// The exported entry function (without the trailing NUL).
pub const ENTRY_POINT: &str = "mailprobe_plugin_entry";

/// The exported entry function, NUL-terminated, for `dlsym`.
pub const ENTRY_POINT_C: &[u8] = b"mailprobe_plugin_entry\0";

/// The most requirements one plugin may declare; a larger `requirements_len` is refused.
pub const MAX_REQUIREMENTS: usize = 1024;

/// The longest string of the table (name, version, a requirement's ID or description), in
/// bytes without the NUL; a string with no NUL within it is refused.
pub const MAX_TABLE_STRING: usize = 4096;

/// The longest result `run` may return, in bytes without the NUL.
pub const MAX_RESULT: usize = 16 * 1024 * 1024;

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
#[derive(Clone, Copy, Debug)]
pub struct RequirementDecl {
    pub id: *const c_char,
    pub description: *const c_char,
}

/// What the entry point returns.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PluginTable {
    /// [`ABI_VERSION`] of the SDK the plugin was built with, the same as [`ABI_SYMBOL`]'s value.
    pub abi_version: u32,
    pub name: *const c_char,
    pub version: *const c_char,
    pub requirements: *const RequirementDecl,
    pub requirements_len: usize,
    /// NULL (`None`) is refused when the library loads.
    pub run: Option<RunFn>,
    /// NULL (`None`) is refused when the library loads.
    pub free_string: Option<FreeFn>,
}

/// The version of this SDK crate (`mailprobe-plugin-sdk`), for the message that asks for a
/// rebuild.
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");
