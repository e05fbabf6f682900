//! Test fixture: a shared library that is not a mailprobe plugin (no entry point).
#![allow(unsafe_code)]

#[unsafe(no_mangle)]
pub extern "C" fn some_other_entry() -> u32 {
    42
}
