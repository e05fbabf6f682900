//! Opening a plugin library and calling into it: the only unsafe code in mailprobe.
//!
//! A plugin may be written in C as well as with the Rust SDK, so nothing the library hands back
//! is trusted beyond what the C ABI of [`abi`](mailprobe_plugin_sdk::abi) promises. What the
//! unsafe code relies on, and why it holds:
//! - **Loading runs foreign code**: the library's static constructors run when it is mapped.
//!   That is the nature of a dynamic plugin; the operator chose the directory. Under
//!   `isolation: process` this happens in a child process only. No *function* of the library is
//!   called before its ABI version is known to match: the version is a data symbol
//!   (`mailprobe_plugin_abi`), read, not called.
//! - **Symbol types.** A library that exports `mailprobe_plugin_abi` and
//!   `mailprobe_plugin_entry` is taken to follow the ABI: a `u32`, and
//!   `extern "C" fn() -> *const PluginTable`. Nothing can check a symbol's type; the names and
//!   the version are the contract.
//! - **Any pointer the library returns** (the table, the requirement array) is checked for null
//!   and read with `read_unaligned`: a C plugin may hand back an address of any alignment.
//!   Function pointers are `Option`s, so a NULL `run` or `free_string` is a load error rather
//!   than a call through NULL.
//! - **Lengths are bounded**: at most [`MAX_REQUIREMENTS`] requirements, table strings scanned
//!   for their NUL over at most [`MAX_TABLE_STRING`] bytes, a result over at most
//!   [`MAX_RESULT`] bytes. A string that is not UTF-8 is refused, naming the file.
//! - **Lifetimes.** The table and its strings stay valid while the library is loaded, and a
//!   library is never unloaded: [`Library`] values are leaked. Unloading is unsafe anyway once a
//!   plugin ran a tokio runtime (its thread-locals and threads outlive the call), and a call that
//!   overran its deadline may still be running on an abandoned thread.
//! - **Strings.** Arguments are `CString`s that outlive the call; the result is copied, then
//!   handed back to the plugin's own `free_string`, never to mailprobe's allocator.
//! - **Panics** do not cross the boundary: the SDK catches them inside the plugin.
#![allow(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]

use std::ffi::{CString, c_char};
use std::path::Path;

use libloading::Library;
use mailprobe_plugin_sdk::abi::{
    ABI_SYMBOL, ABI_SYMBOL_C, ABI_VERSION, ENTRY_POINT, ENTRY_POINT_C, EntryPoint, FreeFn,
    MAX_REQUIREMENTS, MAX_RESULT, MAX_TABLE_STRING, PluginTable, RequirementDecl, RunFn,
    SDK_VERSION,
};
use mailprobe_plugin_sdk::wire::Requirement;

use crate::{LoadError, Manifest};

/// The two functions of a loaded library. Plain function pointers into a library that is never
/// unloaded, so they can be copied to any thread.
#[derive(Clone, Copy)]
pub(crate) struct Functions {
    run: RunFn,
    free_string: FreeFn,
}

impl std::fmt::Debug for Functions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Functions")
    }
}

fn invalid(shown: &str, reason: impl Into<String>) -> LoadError {
    LoadError::Invalid {
        path: shown.to_string(),
        reason: reason.into(),
    }
}

/// Opens `path`, checks its ABI version, then reads its table. The library stays loaded for
/// the life of the process.
pub(crate) fn open(path: &Path) -> Result<(Manifest, Functions), LoadError> {
    let shown = path.display().to_string();
    let table = load_table(path, &shown)?;
    let run = table
        .run
        .ok_or_else(|| invalid(&shown, "its table's `run` function pointer is NULL"))?;
    let free_string = table
        .free_string
        .ok_or_else(|| invalid(&shown, "its table's `free_string` function pointer is NULL"))?;
    let text = |p: *const c_char, what: &str| table_text(p, what, &shown);
    let name = text(table.name, "name")?;
    let version = text(table.version, "version")?;
    let mut requirements = Vec::new();
    for d in requirement_decls(&table, &shown)? {
        requirements.push(Requirement {
            id: text(d.id, "requirement ID")?,
            description: text(d.description, "requirement description")?,
        });
    }
    let manifest = Manifest {
        name,
        version,
        requirements,
        path: path.to_path_buf(),
    };
    Ok((manifest, Functions { run, free_string }))
}

/// Loads the library (for good), checks its ABI version symbol, and only then calls its entry
/// point and copies the table it returns.
fn load_table(path: &Path, shown: &str) -> Result<PluginTable, LoadError> {
    // SAFETY: see the module documentation ("Loading runs foreign code").
    let library = unsafe { Library::new(path) }.map_err(|e| LoadError::Open {
        path: shown.to_string(),
        reason: e.to_string(),
    })?;
    let library: &'static Library = Box::leak(Box::new(library));
    // SAFETY: looking a symbol up runs no code of the library; the type is the ABI's contract
    // ("Symbol types"), and the pointer is not called before the version matched.
    let entry: EntryPoint = match unsafe { library.get::<EntryPoint>(ENTRY_POINT_C) } {
        Ok(symbol) => *symbol,
        Err(_) => {
            return Err(LoadError::NoEntryPoint {
                path: shown.to_string(),
                symbol: ENTRY_POINT,
            });
        }
    };
    let abi_version = abi_symbol(library, shown)?;
    if abi_version != ABI_VERSION {
        return Err(LoadError::AbiMismatch {
            path: shown.to_string(),
            found: abi_version,
            expected: ABI_VERSION,
            sdk: SDK_VERSION,
        });
    }
    // SAFETY: the library declared this ABI version, whose entry point has this type; the SDK
    // catches panics in it and returns null instead.
    let table: *const PluginTable = unsafe { entry() };
    if table.is_null() {
        return Err(invalid(
            shown,
            "its entry point returned no plugin table (the plugin failed to start; see its messages above)",
        ));
    }
    // SAFETY: non-null, and per the ABI a table of this version's layout that stays valid while
    // the library is loaded; read unaligned because a C plugin may return any address. Every
    // bit pattern is a valid `PluginTable` (integers, raw pointers, nullable fn pointers).
    let table = unsafe { std::ptr::read_unaligned(table) };
    if table.abi_version != abi_version {
        return Err(invalid(
            shown,
            format!(
                "its table says ABI version {}, but its `{ABI_SYMBOL}` symbol says {abi_version}",
                table.abi_version
            ),
        ));
    }
    Ok(table)
}

/// The value of the library's ABI version symbol: data, read without running any of its code.
fn abi_symbol(library: &Library, shown: &str) -> Result<u32, LoadError> {
    let missing = || LoadError::NoAbiVersion {
        path: shown.to_string(),
        symbol: ABI_SYMBOL,
        expected: ABI_VERSION,
        sdk: SDK_VERSION,
    };
    // SAFETY: the symbol's address is taken, not called; the ABI says it is a `u32`.
    let address: *const u32 = match unsafe { library.get::<*const u32>(ABI_SYMBOL_C) } {
        Ok(symbol) => *symbol,
        Err(_) => return Err(missing()),
    };
    if address.is_null() {
        return Err(missing());
    }
    // SAFETY: a non-null address of an exported `u32` of a library that stays loaded; unaligned
    // in case a C plugin placed it oddly.
    Ok(unsafe { std::ptr::read_unaligned(address) })
}

/// The length of the NUL-terminated string at `p`, when its NUL is within `max` bytes.
///
/// # Safety
/// `p` is non-null and readable up to its NUL or `max + 1` bytes, whichever comes first.
unsafe fn bounded_len(p: *const c_char, max: usize) -> Option<usize> {
    // SAFETY: strnlen reads at most `max + 1` bytes and stops at the first NUL (the contract).
    let len = unsafe { libc::strnlen(p, max.saturating_add(1)) };
    (len <= max).then_some(len)
}

/// One of the table's strings, copied; a missing, unterminated, over-long or non-UTF-8 one is
/// refused, naming which it was.
fn table_text(p: *const c_char, what: &str, shown: &str) -> Result<String, LoadError> {
    if p.is_null() {
        return Err(invalid(shown, format!("its table has no {what} (NULL)")));
    }
    // SAFETY: non-null, and per the ABI a NUL-terminated static string: read up to its NUL,
    // never more than MAX_TABLE_STRING + 1 bytes.
    let Some(len) = (unsafe { bounded_len(p, MAX_TABLE_STRING) }) else {
        return Err(invalid(
            shown,
            format!(
                "its {what} has no NUL terminator within {MAX_TABLE_STRING} bytes (too long, or not a C string)"
            ),
        ));
    };
    // SAFETY: `len` bytes before the NUL were just read by strnlen; u8 has no alignment.
    let bytes = unsafe { std::slice::from_raw_parts(p.cast::<u8>(), len) };
    std::str::from_utf8(bytes)
        .map(str::to_string)
        .map_err(|_| invalid(shown, format!("its {what} is not UTF-8")))
}

/// The table's requirement declarations, copied out of the library's array.
fn requirement_decls(table: &PluginTable, shown: &str) -> Result<Vec<RequirementDecl>, LoadError> {
    let len = table.requirements_len;
    if len == 0 {
        return Ok(Vec::new());
    }
    if len > MAX_REQUIREMENTS {
        return Err(invalid(
            shown,
            format!(
                "its table declares {len} requirements; at most {MAX_REQUIREMENTS} are accepted"
            ),
        ));
    }
    if table.requirements.is_null() {
        return Err(invalid(
            shown,
            "its table lists requirements but gives no array (NULL)",
        ));
    }
    Ok((0..len)
        .map(|i| {
            // SAFETY: per the ABI, `requirements` is an array of `requirements_len` (checked
            // above to be sane) declarations, static while the library is loaded. Read
            // unaligned: a C plugin may place the array at any address.
            unsafe { std::ptr::read_unaligned(table.requirements.wrapping_add(i)) }
        })
        .collect())
}

impl Functions {
    /// Calls `run(config, context)` and returns the plugin's JSON. Blocks for as long as the
    /// plugin runs: call it from a blocking thread.
    pub(crate) fn call(&self, config: &str, context: &str) -> Result<String, String> {
        let config = CString::new(config).map_err(|_| "the configuration holds a NUL byte")?;
        let context = CString::new(context).map_err(|_| "the context holds a NUL byte")?;
        // SAFETY: both arguments are NUL-terminated and outlive the call ("Strings").
        let out = unsafe { (self.run)(config.as_ptr(), context.as_ptr()) };
        if out.is_null() {
            return Err("the plugin returned no result".into());
        }
        // SAFETY: a non-null result of `run` is a NUL-terminated string the plugin owns until
        // `free_string`; read up to its NUL, never more than MAX_RESULT + 1 bytes.
        let text = match unsafe { bounded_len(out, MAX_RESULT) } {
            Some(len) => {
                // SAFETY: `len` bytes before the NUL were just read; u8 has no alignment.
                let bytes = unsafe { std::slice::from_raw_parts(out.cast::<u8>(), len) };
                Ok(String::from_utf8_lossy(bytes).into_owned())
            }
            None => Err(format!(
                "the plugin's result is longer than {} MiB",
                MAX_RESULT / (1024 * 1024)
            )),
        };
        // SAFETY: `out` came from this library's `run` and is freed exactly once, by the
        // library's own function.
        unsafe { (self.free_string)(out) };
        text
    }
}
