#![no_main]
//! Fuzz target `entry_header`: the body and its properties are in `magnetar_fuzz` (crates/magnetar-fuzz).

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    magnetar_fuzz::run("entry_header", data);
});
