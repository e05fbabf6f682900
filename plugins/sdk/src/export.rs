//! The plugin side of the C ABI, called by the code [`export_plugin!`](crate::export_plugin)
//! generates. This module is the only unsafe code a plugin carries; every `unsafe` states what it
//! relies on.
//!
//! Every function the host calls catches panics: unwinding across `extern "C"` would abort the
//! host process.

use std::ffi::{CStr, CString, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;

use crate::abi::{ABI_VERSION, PluginTable, RequirementDecl};
use crate::wire::{ContextJson, Requirement, ResultJson};
use crate::{Context, Output, Plugin};

/// A plugin with its `Config` type erased, so that one non-generic `run` can reach it.
trait ErasedPlugin: Send + Sync {
    fn run_json(&self, config: &str, context: &str) -> ResultJson;
}

impl<P: Plugin> ErasedPlugin for P {
    fn run_json(&self, config: &str, context: &str) -> ResultJson {
        let config: P::Config = match serde_json::from_str::<serde_json::Value>(config) {
            Ok(serde_json::Value::Null) => P::Config::default(),
            Ok(v) => match serde_json::from_value(v) {
                Ok(c) => c,
                Err(e) => {
                    return ResultJson::error(format!(
                        "invalid configuration for plugin {}: {e}",
                        P::NAME
                    ));
                }
            },
            Err(e) => return ResultJson::error(format!("unreadable configuration JSON: {e}")),
        };
        if is_validation(context) {
            return match self.validate(&config) {
                Ok(()) => ResultJson::default(),
                Err(e) => {
                    ResultJson::error(format!("invalid configuration for plugin {}: {e}", P::NAME))
                }
            };
        }
        let context: ContextJson = match serde_json::from_str(context) {
            Ok(c) => c,
            Err(e) => {
                return ResultJson::error(format!("the host sent an unreadable context: {e}"));
            }
        };
        let cx = Context::from_wire(context);
        let mut out = Output::new(P::NAME);
        let error = self.run(config, &cx, &mut out).err();
        out.into_wire(error)
    }
}

/// Whether the host only asks the plugin to check its configuration (when it loads the
/// library), with the context `{"validate_only": true}`.
fn is_validation(context: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(context)
        .ok()
        .and_then(|v| v.get(crate::wire::VALIDATE_ONLY)?.as_bool())
        == Some(true)
}

/// The plugin instance and the table that points into the strings below. Built once, on the
/// first call of the entry point, and never dropped: the pointers in `table` stay valid for as
/// long as the library is loaded.
struct Exported {
    plugin: Box<dyn ErasedPlugin>,
    table: PluginTable,
    _strings: Vec<CString>,
    _decls: Vec<RequirementDecl>,
}

// SAFETY: the raw pointers in `table` and `_decls` point into `_strings` and `_decls`, heap
// buffers owned by this value that are never mutated or freed after construction (the value
// lives in a `static`). Sharing read-only pointers between threads is sound.
unsafe impl Send for Exported {}
unsafe impl Sync for Exported {}

static EXPORTED: OnceLock<Option<Exported>> = OnceLock::new();

fn build<P: Plugin + Default>(version: &str) -> Option<Exported> {
    let plugin = P::default();
    let requirements: Vec<Requirement> = plugin.requirements();
    let mut strings = Vec::new();
    let mut cstr = |s: &str| -> Option<*const c_char> {
        let c = CString::new(s).ok()?;
        // The CString's heap buffer does not move when the CString is moved into the Vec.
        let p = c.as_ptr();
        strings.push(c);
        Some(p)
    };
    let name = cstr(P::NAME)?;
    let version = cstr(version)?;
    let mut decls = Vec::with_capacity(requirements.len());
    for r in &requirements {
        decls.push(RequirementDecl {
            id: cstr(&r.id)?,
            description: cstr(&r.description)?,
        });
    }
    let table = PluginTable {
        abi_version: ABI_VERSION,
        name,
        version,
        requirements: decls.as_ptr(),
        requirements_len: decls.len(),
        run: Some(run),
        free_string: Some(free_string),
    };
    Some(Exported {
        plugin: Box::new(plugin),
        table,
        _strings: strings,
        _decls: decls,
    })
}

/// The body of the exported entry point: the table, or null if the plugin could not be built
/// (it panicked in `Default` or `requirements`, or a string holds a NUL byte).
pub fn entry<P: Plugin + Default>(version: &'static str) -> *const PluginTable {
    let built = catch_unwind(|| EXPORTED.get_or_init(|| build::<P>(version)).as_ref());
    match built {
        Ok(Some(e)) => &e.table,
        _ => std::ptr::null(),
    }
}

/// Reads a borrowed C string from the host.
///
/// # Safety
/// `p` is null or points to a NUL-terminated string that stays valid during the call (the
/// host's contract for `run`).
unsafe fn borrowed<'a>(p: *const c_char, what: &str) -> Result<&'a str, String> {
    if p.is_null() {
        return Err(format!("the host passed no {what}"));
    }
    // SAFETY: non-null, and NUL-terminated and live for the call by the caller's contract.
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str().map_err(|_| format!("the {what} is not UTF-8"))
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_string()
    }
}

/// `PluginTable::run`.
///
/// # Safety
/// Both arguments are null or NUL-terminated strings valid for the duration of the call.
unsafe extern "C" fn run(config: *const c_char, context: *const c_char) -> *mut c_char {
    let result = catch_unwind(AssertUnwindSafe(|| {
        let Some(exported) = EXPORTED.get().and_then(Option::as_ref) else {
            return ResultJson::error("run was called before the entry point");
        };
        // SAFETY: forwarded from this function's own contract.
        let (config, context) = match unsafe {
            (
                borrowed(config, "configuration"),
                borrowed(context, "context"),
            )
        } {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) | (_, Err(e)) => return ResultJson::error(e),
        };
        exported.plugin.run_json(config, context)
    }))
    .unwrap_or_else(|payload| ResultJson::panicked(panic_message(&*payload)));
    let json = serde_json::to_string(&result).unwrap_or_else(|e| {
        serde_json::json!({ "error": format!("the plugin's result cannot be serialized: {e}") })
            .to_string()
    });
    // serde_json escapes NUL inside strings, so the JSON text holds none.
    CString::new(json).map_or(std::ptr::null_mut(), CString::into_raw)
}

/// `PluginTable::free_string`.
///
/// # Safety
/// `s` is null or a pointer that `run` of this library returned and that was not freed yet.
unsafe extern "C" fn free_string(s: *mut c_char) {
    if !s.is_null() {
        // SAFETY: `s` came from `CString::into_raw` in `run`, by the caller's contract.
        drop(unsafe { CString::from_raw(s) });
    }
}
