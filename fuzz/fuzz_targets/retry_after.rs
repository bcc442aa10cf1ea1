//! A `Retry-After` header value.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = tower_alf::fuzzing::retry_after(data);
});
