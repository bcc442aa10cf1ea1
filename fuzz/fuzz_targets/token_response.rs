//! A token endpoint answer: the first two bytes pick the status and the
//! content type, the rest is the body.
#![no_main]

use libfuzzer_sys::fuzz_target;

const CONTENT_TYPES: [&[u8]; 4] = [
    b"application/json",
    b"application/json; charset=utf-8",
    b"application/x-www-form-urlencoded",
    b"text/html",
];

fuzz_target!(|data: &[u8]| {
    let [a, b, body @ ..] = data else { return };
    let status = [200, 201, 400, 401, 429, 500, 502, 503][usize::from(*a % 8)];
    let content_type = CONTENT_TYPES[usize::from(*b % 4)];
    let _ = tower_alf::fuzzing::token_response(status, content_type, body);
});
