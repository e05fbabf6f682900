//! Test fixture: a library built for a plugin ABI version mailprobe does not speak. Its entry
//! point aborts the process: mailprobe must refuse the library from its `mailprobe_plugin_abi`
//! symbol alone, without calling any of its functions.
#![allow(unsafe_code)]

#[unsafe(no_mangle)]
pub static mailprobe_plugin_abi: u32 = 999;

#[unsafe(no_mangle)]
pub extern "C" fn mailprobe_plugin_entry() -> *const u8 {
    eprintln!("mailprobe-test-abi: the entry point was called");
    std::process::abort()
}
