//! Opening a plugin library and calling into it: the only unsafe code in mailprobe.
//!
//! What the unsafe code relies on, and why it holds:
//! - **Loading runs foreign code** (the library's initialisers, then its entry point). That is
//!   the nature of a dynamic plugin; the operator chose the directory. Under `isolation:
//!   process` this happens in a child process only.
//! - **The entry point's type.** A library that exports `mailprobe_plugin_entry` is taken to
//!   follow [`abi`]: `extern "C" fn() -> *const PluginTable`. Nothing can check a symbol's type;
//!   the name is the contract.
//! - **The table's layout.** The ABI version is the first field of every version of the table,
//!   so it is read alone (a `u32` at the pointer) before anything else, and a library built for
//!   another version is refused without reading further.
//! - **Lifetimes.** The table and its strings stay valid while the library is loaded, and a
//!   library is never unloaded: [`Library`] values are leaked. Unloading is unsafe anyway once a
//!   plugin ran a tokio runtime (its thread-locals and threads outlive the call), and a call that
//!   overran its deadline may still be running on an abandoned thread.
//! - **Strings.** Arguments are `CString`s that outlive the call; the result is copied, then
//!   handed back to the plugin's own `free_string`, never to mailprobe's allocator.
//! - **Panics** do not cross the boundary: the SDK catches them inside the plugin.
#![allow(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]

use std::ffi::{CStr, CString, c_char};
use std::path::Path;

use libloading::Library;
use mailprobe_plugin_sdk::abi::{
    ABI_VERSION, ENTRY_POINT, ENTRY_POINT_C, EntryPoint, FreeFn, PluginTable, RequirementDecl,
    RunFn,
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

/// Opens `path`, reads its table and checks the ABI version. The library stays loaded for the
/// life of the process.
pub(crate) fn open(path: &Path) -> Result<(Manifest, Functions), LoadError> {
    let shown = path.display().to_string();
    let table = load_table(path, &shown)?;
    let text = |p: *const c_char, what: &str| table_text(p, what, &shown);
    let name = text(table.name, "name")?;
    let version = text(table.version, "version")?;
    let mut requirements = Vec::new();
    for d in requirement_decls(table, &shown)? {
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
    Ok((
        manifest,
        Functions {
            run: table.run,
            free_string: table.free_string,
        },
    ))
}

/// Loads the library (for good), calls its entry point and checks the table's ABI version
/// before reading anything else of it.
fn load_table(path: &Path, shown: &str) -> Result<&'static PluginTable, LoadError> {
    // SAFETY: see the module documentation ("Loading runs foreign code").
    let library = unsafe { Library::new(path) }.map_err(|e| LoadError::Open {
        path: shown.to_string(),
        reason: e.to_string(),
    })?;
    let library: &'static Library = Box::leak(Box::new(library));
    // SAFETY: the symbol's type is the ABI's contract ("The entry point's type").
    let entry: EntryPoint = match unsafe { library.get::<EntryPoint>(ENTRY_POINT_C) } {
        Ok(symbol) => *symbol,
        Err(_) => {
            return Err(LoadError::NoEntryPoint {
                path: shown.to_string(),
                symbol: ENTRY_POINT,
            });
        }
    };
    // SAFETY: calling the entry point the library exports for this purpose; the SDK catches
    // panics in it and returns null instead.
    let table: *const PluginTable = unsafe { entry() };
    if table.is_null() {
        return Err(LoadError::Invalid {
            path: shown.to_string(),
            reason: "its entry point returned no plugin table (the plugin failed to start; see its messages above)".into(),
        });
    }
    // SAFETY: every version of the table starts with the ABI version as a u32 ("The table's
    // layout"); the pointer is non-null and the SDK's table is suitably aligned.
    let abi_version = unsafe { std::ptr::read(table.cast::<u32>()) };
    if abi_version != ABI_VERSION {
        return Err(LoadError::AbiMismatch {
            path: shown.to_string(),
            found: abi_version,
            expected: ABI_VERSION,
        });
    }
    // SAFETY: same version, hence this layout; valid for the life of the library, which is
    // never unloaded ("Lifetimes").
    Ok(unsafe { &*table })
}

/// One of the table's strings, copied; a missing or non-UTF-8 one names which it was.
fn table_text(p: *const c_char, what: &str, shown: &str) -> Result<String, LoadError> {
    if p.is_null() {
        return Err(LoadError::Invalid {
            path: shown.to_string(),
            reason: format!("its table has no {what}"),
        });
    }
    // SAFETY: non-null, NUL-terminated and static per the ABI.
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str()
        .map(str::to_string)
        .map_err(|_| LoadError::Invalid {
            path: shown.to_string(),
            reason: format!("its {what} is not UTF-8"),
        })
}

/// The table's requirement declarations, as a slice.
fn requirement_decls(
    table: &'static PluginTable,
    shown: &str,
) -> Result<&'static [RequirementDecl], LoadError> {
    if table.requirements_len == 0 {
        Ok(&[][..])
    } else if table.requirements.is_null() {
        Err(LoadError::Invalid {
            path: shown.to_string(),
            reason: "its table lists requirements but gives no array".into(),
        })
    } else {
        // SAFETY: a non-null array of `requirements_len` declarations, static per the ABI.
        Ok(unsafe { std::slice::from_raw_parts(table.requirements, table.requirements_len) })
    }
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
        // `free_string`.
        let text = unsafe { CStr::from_ptr(out) }
            .to_string_lossy()
            .into_owned();
        // SAFETY: `out` came from this library's `run` and is freed exactly once, by the
        // library's own function.
        unsafe { (self.free_string)(out) };
        Ok(text)
    }
}
