//! Test fixture: a library built for a plugin ABI version mailprobe does not speak. Only the
//! first field (the version) is common to every version of the table.
#![allow(unsafe_code)]

#[repr(C)]
pub struct FutureTable {
    abi_version: u32,
}

static TABLE: FutureTable = FutureTable { abi_version: 999 };

#[unsafe(no_mangle)]
pub extern "C" fn mailprobe_plugin_entry() -> *const FutureTable {
    &TABLE
}
