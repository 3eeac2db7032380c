#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| verdict_fuzz::harness::bundle_dir(data));
