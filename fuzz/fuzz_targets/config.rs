//! The proxy's configuration loader (`Config::parse`, the same conversion as `weft proxy
//! -c`, `weft check` and a live reload) and the control plane's (`ControlConfig::parse`):
//! any text. A configuration that loads serialises (as `/config.json` does) to YAML that
//! loads back to the same configuration.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_config::{Config, ControlConfig};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = Config::parse(text, "fuzz.yaml") {
        let yaml = serde_yaml_ng::to_string(&config).expect("a Config serialises");
        let back = Config::parse(&yaml, "fuzz.yaml");
        assert_eq!(back.as_ref().ok(), Some(&config), "{yaml}\n{back:?}");
    }
    let _ = ControlConfig::parse(text, "fuzz.yaml");
});
