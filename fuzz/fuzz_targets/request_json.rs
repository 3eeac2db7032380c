#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| verdict_fuzz::harness::request_json(data));
